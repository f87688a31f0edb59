"""bench/bench_speed.py: its FLOP count against torch's own counter, and a toy run whose speed-ups follow from its times."""
import json, subprocess, sys
import pytest, torch
from pd_nb.core import repo_root, student_config
from pd_nb.bert import BertForSequenceClassification
sys.path.insert(0, str(repo_root() / 'bench'))
from bench_speed import forward_flops, GRID, PAPER_TPU_SPEEDUP

@pytest.mark.parametrize('size', ['2/128', '4/256', '3/96'])
def test_forward_flops_matches_torch_flop_counter(size):
    "The analytic count equals what torch.utils.flop_counter counts on a real forward pass (matmuls, attention included)."
    from torch.utils.flop_counter import FlopCounterMode
    cfg = student_config(size, n_labels=2, strict_grid=False)
    m = BertForSequenceClassification(cfg).eval()
    x = torch.randint(1000, 30522, (1, 64))
    with FlopCounterMode(display=False) as fc, torch.no_grad(): m(x, torch.ones_like(x))
    assert forward_flops(cfg.n_layers, cfg.hidden, seq_len=64) == fc.get_total_flops()

def test_paper_table_covers_the_grid():
    assert list(PAPER_TPU_SPEEDUP) == GRID and len(GRID) == 24

def test_bench_speed_smoke(tmp_path):
    out = tmp_path / 'speed.json'
    args = ['--threads', '1', '--sizes', '2/128', '24/1024', '--batch', '2', '--steps', '1', '--latency-steps', '2', '--warmup', '0',
            '--repeats', '2', '--seq-len', '16', '--out', str(out)]
    r = subprocess.run([sys.executable, 'bench/bench_speed.py', *args], cwd=repo_root(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert len(d['rows']) == 4 and [s['size'] for s in d['speedups']] == ['2/128', '24/1024']
    tiny, large = d['speedups']
    lat = lambda s: sorted(x['latency_ms_p50'] for x in d['rows'] if x['size'] == s)
    assert tiny['speedup_latency'] == round(sum(lat('24/1024')) / 2 / (sum(lat('2/128')) / 2), 2)   # medians of two repeats
    assert large['speedup_latency'] == large['flop_ratio'] == 1.0 and tiny['paper_tpu_speedup'] == 65.24
    assert tiny['flop_ratio'] == round(forward_flops(24, 1024, 16) / forward_flops(2, 128, 16), 2)
    assert '| 2/128 | 4.4 | no |' in out.with_suffix('.md').read_text()
    bad = subprocess.run([sys.executable, 'bench/bench_speed.py', '--sizes', '2/128'], cwd=repo_root(), capture_output=True, text=True)
    assert bad.returncode == 2 and 'must include 24/1024' in bad.stderr and 'Traceback' not in bad.stderr
