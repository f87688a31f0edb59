"""`bench/device_check.sh --smoke`: the prepared GPU check runs its steps at toy size on CPU, writes its files, and
refuses an unknown option in one line."""
import json, os, subprocess, sys
from pathlib import Path
from pd_nb.core import repo_root

def run(args, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PD_NB_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1')
    env.pop('PD_NB_DATA', None)
    return subprocess.run(['bash', 'bench/device_check.sh', *args], cwd=repo_root(), env=env, capture_output=True, text=True, timeout=900)

def test_device_check_smoke(tmp_path):
    out = tmp_path / 'out'
    r = run([str(out), '--smoke'], tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert {'env.txt', 'tests.txt', 'bench_mlm.json', 'bench_mlm.txt', 'bench_stages.json', 'bench_stages.md', 'summary.txt'} <= {p.name for p in out.iterdir()}
    assert ' passed' in (out / 'tests.txt').read_text() and ' failed' not in (out / 'tests.txt').read_text()
    row = json.loads((out / 'bench_mlm.json').read_text())['results'][0]
    assert row['pd_nb']['tokens_per_s'] > 0 and row['hf']['tokens_per_s'] > 0 and row['hf']['accum'] == 1
    assert 'done, status 0' in (out / 'summary.txt').read_text()

def test_device_check_refuses_unknown_option(tmp_path):
    r = run([str(tmp_path / 'o'), '--smok'], tmp_path)
    assert r.returncode == 2 and "unknown option '--smok'" in r.stderr and 'Traceback' not in r.stderr
