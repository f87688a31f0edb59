"""bench/bench_adamw.py at Tiny size: the three AdamW variants are timed and written."""
import json, subprocess, sys
from pd_nb.core import repo_root

def test_bench_adamw_smoke(tmp_path):
    out = tmp_path / 'adamw.json'
    r = subprocess.run([sys.executable, 'bench/bench_adamw.py', '--size', 'tiny', '--steps', '2', '--out', str(out)],
                       cwd=repo_root(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    from pd_nb.core import student_config
    from pd_nb.bert import BertForMaskedLM
    assert [x['variant'] for x in d['results']] == ['loop', 'foreach', 'fused']
    assert d['params'] == sum(p.numel() for p in BertForMaskedLM(student_config('tiny')).parameters())
    assert all(x['step_ms_p50'] > 0 for x in d['results'])
