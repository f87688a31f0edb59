"""The masked-LM head, forward and backward, as pd_nb computes it against a vocabulary-blocked two-pass rewrite, on one CPU thread.

`vocab_cross_entropy` (pd_nb.bert) forms the [n, 30,522] logits of a chunk of rows in one matmul, then its fp32 softmax,
loss and gradient in full-size passes over memory. On a CPU whose bf16 matmuls are fast (AMX) those passes, not the
matmuls, decide the head's time. The contender cuts the vocabulary into blocks of `block` columns small enough to stay in
cache: pass 1 computes each block's logits (kept in bf16) and an online log-sum-exp; pass 2 turns each block into its
softmax, gradient, bias gradient, weight-gradient rows and share of the input gradient while it is still in cache.
Same math (fp32 softmax and loss, bf16 matmuls); it is checked against pd_nb's loss and gradients first.
Median of `--reps` calls, both taken in turn.

Tried and not adopted: alone, the blocked head is faster (608 rows: Tiny 97.6 -> 86.0 ms, Mini 118.4 -> 108.1 ms; this
bench's JSON); put into `BertForMaskedLM` (block 512) the
whole pre-training step was not (bench_mlm, 3 alternating rounds, one thread: Tiny bf16 1.005x, Mini bf16 0.98x, Tiny fp32
0.98x, Mini fp32 0.95x; data/results/bench/head_blocked_step_ab_cpu_1thread.json).

Run (data/results/bench/head_blocked_cpu_1thread.json):
    .venv/bin/python bench/bench_head_blocked.py --out data/results/bench/head_blocked_cpu_1thread.json
"""
import argparse, statistics, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pd_nb.bert import vocab_cross_entropy, VocabCrossEntropy
from pd_nb.core import save_json, cpu_name, run_manifest
from pd_nb.learner import reuse_freed_memory
V = 30522


class BlockedVocabCrossEntropy(VocabCrossEntropy):
    "pd_nb's `VocabCrossEntropy` with another forward: vocabulary block by vocabulary block (see the module docstring)."
    @staticmethod
    def forward(ctx, x, W, b, target, block):
        kind = x.device.type
        cdt = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
        n, nv = len(x), W.shape[0]
        with torch.autocast(kind, enabled=False):
            xc, Wc, bf = x.to(cdt), W.to(cdt), b.float()
            starts = range(0, nv, block)
            zs = [torch.mm(xc, Wc[j:j + block].t()) for j in starts]          # pass 1: bf16 logits, block by block,
            m = torch.full((n,), float('-inf')); s = torch.zeros(n)            # and an online log-sum-exp in fp32
            zt = torch.empty(n)
            for j, z in zip(starts, zs):
                zf = z.to(torch.float32, copy=True).add_(bf[j:j + block])
                hit = (target >= j) & (target < j + block)
                zt[hit] = zf[hit, target[hit] - j]
                mj = torch.maximum(m, zf.amax(1))
                s.mul_(torch.exp(m - mj)).add_(zf.sub_(mj[:, None]).exp_().sum(1)); m = mj
            lse = m + s.log()
            loss = (lse - zt).sum()
            gb, gW, gx = torch.empty(nv), torch.empty(nv, W.shape[1], dtype=cdt), torch.zeros(n, W.shape[1])
            rows = torch.arange(n)
            for j, z in zip(starts, zs):                                       # pass 2: gradient blocks while in cache
                p = z.to(torch.float32, copy=True).add_(bf[j:j + block]).sub_(lse[:, None]).exp_()
                hit = (target >= j) & (target < j + block)
                p[rows[hit], target[hit] - j] -= 1
                torch.sum(p, 0, out=gb[j:j + block])
                z.copy_(p)
                torch.mm(z.t(), xc, out=gW[j:j + block])
                gx += torch.mm(z, Wc[j:j + block])
        ctx.save_for_backward(gx, gW.float(), gb)                           # what VocabCrossEntropy.backward scales
        ctx.dtypes, ctx.n = (x.dtype, W.dtype, b.dtype), max(n, 1)
        return loss / ctx.n


def blocked(x, W, b, target, block=512): return BlockedVocabCrossEntropy.apply(x, W, b, target, block)


def call(f, x, W, b, t):
    "One forward + backward under bf16 autocast; (seconds, loss, grads)."
    x.grad = W.grad = b.grad = None
    t0 = time.perf_counter()
    with torch.autocast('cpu', dtype=torch.bfloat16): loss = f(x, W, b, t)
    loss.backward()
    return time.perf_counter() - t0, loss.item(), (x.grad, W.grad, b.grad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rows', type=int, nargs='+', default=[608], help='masked rows (608 = batch 32 x 19 masked positions)')
    ap.add_argument('--hidden', type=int, nargs='+', default=[128, 256], help='H (Tiny 128, Mini 256)')
    ap.add_argument('--blocks', type=int, nargs='+', default=[512, 2048])
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--out')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads); reuse_freed_memory()            # as pd_nb's Learner does
    out = {'device_name': cpu_name(), 'threads': a.threads, 'reps': a.reps, 'results': [],
           'manifest': run_manifest(seed=0, device=torch.device('cpu'), bench='head_blocked')}
    for H in a.hidden:
        for n in a.rows:
            torch.manual_seed(0)
            W = (torch.randn(V, H) * 0.02).requires_grad_(); b = (torch.randn(V) * 0.02).requires_grad_()
            x = torch.randn(n, H).requires_grad_(); t = torch.randint(0, V, (n,))
            contenders = {'pd_nb': vocab_cross_entropy, **{f'blocked_{k}': (lambda k: lambda *z: blocked(*z, block=k))(k) for k in a.blocks}}
            _, ref_loss, ref = call(contenders['pd_nb'], x, W, b, t)
            row = dict(hidden=H, rows=n)
            for name, f in contenders.items():
                _, loss, g = call(f, x, W, b, t)
                rel = max(((u - v).norm() / v.norm()).item() for u, v in zip(g, ref))
                if abs(loss - ref_loss) > 1e-3 or rel > 2e-2:
                    raise SystemExit(f"{name}: loss {loss} vs {ref_loss}, gradient relative difference {rel:.3g}: not the same head")
                row[name] = dict(gradient_rel_diff_vs_pd_nb=round(rel, 5))
            times = {name: [] for name in contenders}
            for _ in range(a.reps):
                for name, f in contenders.items(): times[name].append(call(f, x, W, b, t)[0])
            for name in contenders:
                row[name]['ms'] = round(1e3 * statistics.median(times[name]), 2)
                row[name]['speedup'] = round(statistics.median(times['pd_nb']) / statistics.median(times[name]), 3)
                print(f"H={H} rows={n} {name:>14}: {row[name]['ms']:8.2f} ms  ({row[name]['speedup']:.2f}x)", flush=True)
            out['results'].append(row)
    if a.out: save_json(out, a.out)
    return out


if __name__ == '__main__':
    main()
