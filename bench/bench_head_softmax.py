"""The masked-LM head's elementwise work per chunk, eager against a `torch.compile`-fused kernel, on one CPU thread.

For a chunk of bf16 logits z [n, 30,522] and targets, `vocab_cross_entropy` (pd_nb.bert, `cross_entropy_and_grad`) forms the fp32 softmax, the loss
read off it, softmax - onehot, the bias gradient (column sums) and the bf16 gradient that its two matmuls take. This times
that part alone — as pd_nb writes it (eager), and as one function handed to `torch.compile` (Inductor's fused C++ loops)
— after checking that both give the same gradient and loss. Median of 7 calls.

Run (data/results/bench/head_softmax_fusion_cpu_1thread.json):
    .venv/bin/python bench/bench_head_softmax.py --rows 256 608 --out data/results/bench/head_softmax_fusion_cpu_1thread.json
"""
import argparse, statistics, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pd_nb.bert import cross_entropy_and_grad
V = 30522


def eager(z, ti):
    "What vocab_cross_entropy does per chunk between its matmuls: the library's own `cross_entropy_and_grad`, then the sums and cast."
    loss, p = cross_entropy_and_grad(z, ti)
    return p.to(torch.bfloat16), p.sum(0), loss


def fusable(z, ti):
    "The same, written for Inductor: no in-place indexing."
    zf = z.float()
    e = torch.exp(zf - zf.amax(1, keepdim=True))
    p = e / e.sum(1, keepdim=True)
    loss = -torch.log(p.gather(1, ti[:, None])).sum()
    g = torch.where(torch.arange(z.shape[1])[None, :] == ti[:, None], p - 1, p)
    return g.to(torch.bfloat16), g.sum(0), loss


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, nargs='+', default=[256, 608])
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from pd_nb.learner import reuse_freed_memory
    from pd_nb.core import save_json, run_manifest
    reuse_freed_memory()
    compiled = torch.compile(fusable, dynamic=False)
    results = []
    for n in a.rows:
        torch.manual_seed(0)
        z, ti = (torch.randn(n, V) * 3).bfloat16(), torch.randint(0, V, (n,))
        (ga, ba, la), (gc, bc, lc) = eager(z, ti), compiled(z, ti)
        assert (ga.float() - gc.float()).abs().max() < 1e-6 and (ba - bc).abs().max() < 1e-4 and abs(la - lc) < 1e-3 * abs(la)
        row = dict(rows=n)
        for name, f in (('eager_ms', eager), ('compiled_ms', compiled)):
            ts = []
            for _ in range(7):
                t = time.perf_counter(); f(z, ti); ts.append(time.perf_counter() - t)
            row[name] = round(1e3 * statistics.median(ts), 2)
        results.append(row); print(row, flush=True)
    if a.out: save_json(dict(results=results, vocab=V, threads=a.threads, manifest=run_manifest(seed=0, bench='head_softmax')), a.out)


if __name__ == '__main__':
    main()
