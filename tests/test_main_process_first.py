"""`main_process_first` under torchrun (gloo, 2 processes): rank 0 runs first and alone, the other rank after it; one process just runs."""
import os, subprocess, sys, textwrap
from pathlib import Path

SCRIPT = textwrap.dedent('''
    import os, sys, time, torch
    from pd_nb.learner import main_process_first
    log = sys.argv[1]
    def fn():
        r = os.environ.get('RANK', '0')
        with open(log, 'a') as f: f.write(f'start {r}\\n')
        time.sleep(1.0)
        with open(log, 'a') as f: f.write(f'end {r}\\n')
        return r
    assert main_process_first(fn) == os.environ.get('RANK', '0')
''')

def test_rank_zero_runs_first_and_alone(tmp_path):
    script, log = tmp_path / 'mpf.py', tmp_path / 'log.txt'
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script), str(log)],
                       env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert log.read_text().split('\n')[:4] == ['start 0', 'end 0', 'start 1', 'end 1']

def test_one_process_just_runs(tmp_path):
    from pd_nb.learner import main_process_first
    assert main_process_first(lambda: 42) == 42
