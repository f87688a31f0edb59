"""bench/bench_stages.py at toy size: every stage runs, the JSON and its markdown table are written, ratios follow from times."""
import json, subprocess, sys
from pathlib import Path
from pd_nb.core import repo_root

def test_bench_stages_smoke(tmp_path, monkeypatch):
    out = tmp_path / 'stages.json'
    args = ['--threads', '1', '--steps', '2', '--warmup', '0', '--repeats', '1', '--distill-batch', '2', '--label-batch', '2',
            '--ft-batch', '4', '--infer-sizes', 'tiny', '--infer-batch', '2', '--latency-steps', '2', '--out', str(out)]
    r = subprocess.run([sys.executable, 'bench/bench_stages.py', *args], cwd=repo_root(), capture_output=True, text=True, timeout=600,
                       env={**__import__('os').environ, 'OMP_NUM_THREADS': '1', 'PD_NB_CACHE': str(tmp_path / 'cache')})
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert [x['teacher'] for x in d['distill']] == ['base', '24/1024']
    for x in d['distill']:
        assert x['speedup_cached_vs_online'] == round(x['online']['step_ms_p50'] / x['cached']['step_ms_p50'], 2)
    ft = d['finetune'][0]
    assert ft['batch'] == 4 and all(ft[k]['items_per_s'] > 0 for k in ('pd_nb', 'hf_trainer_pad128', 'hf_trainer_dynamic'))
    assert d['inference'][0]['size'] == 'tiny' and d['inference'][0]['params'] == 4_386_178
    assert '| tiny (rep 0) |' in out.with_suffix('.md').read_text()
