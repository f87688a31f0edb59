"""Ctrl-C under torchrun (gloo, 2 CPU processes): every rank stops at the same step, rank 0 writes the folder of the
weights so far, and no rank leaves `pretrain` before rank 0 has written (torchrun tears the group down as soon as one
rank exits with an error, which would kill rank 0 half-way)."""
import json, os, subprocess, sys
from pathlib import Path

WORKER = '''
import json, os, signal, sys
from pathlib import Path
from pd_nb.learner import Callback
from pd_nb.pretrain import pretrain, pretrain_config
out = Path(sys.argv[1])
class CtrlC(Callback):
    "Ctrl-C reaches rank 1 only, after its third step: the stop must still be collective."
    def after_step(self, learn):
        if learn.step == 3 and learn.rank == 1: os.kill(os.getpid(), signal.SIGINT)
rank = int(os.environ['RANK'])
try:
    pretrain(pretrain_config('test', max_steps=200, batch_size=8, ckpt_every=1000), out, progress=False, cbs=[CtrlC()])
    left = 'returned'
except KeyboardInterrupt: left = 'interrupted'
(out.parent / f'rank{rank}.json').write_text(json.dumps({'rank': rank, 'left': left, 'written': (out / 'pretrain_metrics.json').exists()}))
sys.exit(130 if left == 'interrupted' else 0)
'''

def test_ctrl_c_on_one_rank_waits_for_rank_0(tmp_path):
    root = Path(__file__).resolve().parents[1]
    (tmp_path / 'worker.py').write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(root), PD_NB_CACHE=str(tmp_path / 'cache'))
    env.pop('PD_NB_DATA', None)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(tmp_path / 'worker.py'), str(tmp_path / 'mlm')], env=env, capture_output=True, text=True, timeout=300)
    lines = {d['rank']: d for d in (json.loads(p.read_text()) for p in tmp_path.glob('rank*.json'))}   # one file per rank: their stdout interleaves
    assert lines.get(1, {}).get('left') == 'interrupted', (r.stdout[-2000:], r.stderr[-3000:])
    assert lines[1]['written'], "rank 1 left before rank 0 had written the folder"
    assert lines.get(0, {}).get('written'), (r.stdout[-2000:], r.stderr[-3000:])
    m = json.loads((tmp_path / 'mlm' / 'pretrain_metrics.json').read_text())
    assert not m['completed'] and 3 <= m['steps'] < 200                      # both ranks stopped together, early
    assert (tmp_path / 'mlm' / 'model.safetensors').exists()
