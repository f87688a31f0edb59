"""`pd_nb pretrain` under torchrun (gloo, 2 CPU processes): the packed D_LM is built once (rank 0 first), both ranks
train, rank 0 writes the Hugging Face folder, and the command leaves the process group cleanly (exit 0 on both)."""
import json, os, subprocess, sys
from pathlib import Path

def test_pretrain_two_processes(tmp_path):
    root = Path(__file__).resolve().parents[1]
    script = tmp_path / 'run_cli.py'
    script.write_text("import sys\nfrom pd_nb.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(root), PD_NB_CACHE=str(tmp_path / 'cache'))
    env.pop('PD_NB_DATA', None)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script),
                        'pretrain', '--preset', 'test', '--out', str(tmp_path / 'mlm'), '--max-steps', '4', '--batch-size', '8'],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / 'mlm' / 'pretrain_metrics.json').read_text())
    assert m['steps'] == 4 and m['tokens_seen'] == 4 * 8 * 128
    assert len(list((tmp_path / 'cache' / 'lm').glob('*.memmap'))) == 1
    assert json.loads((tmp_path / 'mlm' / 'run' / 'checkpoints' / 'step_00000004' / 'state.json').read_text())['world_size'] == 2
