"""bench/bench_head_blocked.py: the vocabulary-blocked head gives F.cross_entropy's loss and gradients, and the bench writes its table."""
import json, subprocess, sys
import torch
import torch.nn.functional as F
from pd_nb.core import repo_root

def test_blocked_head_matches_autograd_in_fp32():
    sys.path.insert(0, str(repo_root() / 'bench'))
    from bench_head_blocked import blocked
    torch.manual_seed(0)
    n, H, V = 13, 8, 30522
    W = (torch.randn(V, H) * 0.5).requires_grad_(); b = torch.randn(V).requires_grad_(); x = torch.randn(n, H).requires_grad_()
    t = torch.randint(0, V, (n,)); t[0] = V - 1                         # a target in the last, short block
    ref = F.cross_entropy(F.linear(x, W, b), t); ref.backward()
    want = [g.clone() for g in (x.grad, W.grad, b.grad)]
    x.grad = W.grad = b.grad = None
    got = blocked(x, W, b, t, block=1000); got.backward()
    assert abs(got.item() - ref.item()) < 1e-5
    for g, w in zip((x.grad, W.grad, b.grad), want): assert torch.allclose(g, w, atol=1e-6, rtol=1e-4)

def test_bench_head_blocked_smoke(tmp_path):
    out = tmp_path / 'head.json'
    r = subprocess.run([sys.executable, 'bench/bench_head_blocked.py', '--rows', '8', '--hidden', '16', '--blocks', '4096',
                        '--reps', '1', '--out', str(out)], cwd=repo_root(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(out.read_text())['results'][0]
    assert row['hidden'] == 16 and row['rows'] == 8 and row['pd_nb']['ms'] > 0 and row['blocked_4096']['ms'] > 0
    assert row['blocked_4096']['gradient_rel_diff_vs_pd_nb'] < 2e-2
