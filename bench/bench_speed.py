"""Inference speed of the paper's 24 students against BERT-Large (24/1024), the paper's speed table at this machine's
scale (issue 11, analysis 7; chapter 30 draws it): random weights, sequences of T = 128 tokens, a classifier head.

For every size: batch-1 latency (median and p90 of --latency-steps calls) and batch throughput (--batch sequences a
call, --steps calls), each after --warmup untimed calls, --repeats times; the speed-up over BERT-Large of the same run;
and the forward FLOPs per sequence (`forward_flops`: 2 x multiply-adds of the matmuls, attention included), whose ratio
to Large is the speed-up an ideal machine would show. On CUDA also with `torch.compile` (--compile).

Run:  .venv/bin/python bench/bench_speed.py --threads 2 --out data/results/speed/cpu_2threads.json
"""
import argparse, os, statistics, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))
from bench_stages import timed                   # the same timing loop as the stage benchmarks
LARGE = '24/1024'
GRID = [f'{L}/{H}' for L in (2, 4, 6, 8, 10, 12) for H in (128, 256, 512, 768)]
# the paper's relative inference speed-up vs BERT-Large on TPU v2 (../shared/reference/paper.md §1.5, table (b), verbatim)
PAPER_TPU_SPEEDUP = {'2/128': 65.24, '2/256': 31.25, '2/512': 14.44, '2/768': 7.46, '4/128': 32.37, '4/256': 15.96, '4/512': 7.27,
                     '4/768': 3.75, '6/128': 21.87, '6/256': 10.67, '6/512': 4.85, '6/768': 2.50, '8/128': 16.42, '8/256': 8.01,
                     '8/512': 3.64, '8/768': 1.88, '10/128': 13.05, '10/256': 6.37, '10/512': 2.90, '10/768': 1.50,
                     '12/128': 11.02, '12/256': 5.35, '12/512': 2.43, '12/768': 1.25}


def forward_flops(n_layers: int, hidden: int, seq_len: int = 128, n_labels: int = 2) -> int:
    """FLOPs (2 x multiply-adds) of one sequence's forward pass through BERT with a classifier: per layer the Q, K, V and
    output projections (4 T H^2), the feed-forward block (2 T H 4H), the attention scores and the weighted sum (2 T^2 H);
    then the pooler (H^2) and the classifier (H n_labels). Embedding lookups, softmax and layer norms are not matmuls."""
    T, H = seq_len, hidden
    per_layer = 4 * T * H * H + 2 * T * H * 4 * H + 2 * T * T * H
    return 2 * (n_layers * per_layer + H * H + H * n_labels)


def bench_size(size: str, device, bf16: bool, compile_: bool, a, sync) -> list[dict]:
    import torch
    from pd_nb.core import student_config
    from pd_nb.bert import BertForSequenceClassification
    cfg = student_config(size, n_labels=2, strict_grid=False)
    m = BertForSequenceClassification(cfg).to(device).eval()
    if bf16: m = m.to(torch.bfloat16)
    f = torch.compile(m) if compile_ else m
    one = torch.randint(1000, 30522, (1, a.seq_len), device=device)
    many = torch.randint(1000, 30522, (a.batch, a.seq_len), device=device)
    def run(x):
        with torch.no_grad(): f(x, torch.ones_like(x))
    rows = []
    for rep in range(a.repeats):
        lat = timed(lambda: run(one), a.latency_steps, a.warmup, sync)
        thr = timed(lambda: run(many), a.steps, 1, sync)
        q = statistics.quantiles(lat, n=10)[8] if len(lat) > 1 else lat[0]
        rows.append(dict(size=size, L=cfg.n_layers, H=cfg.hidden, params=sum(p.numel() for p in m.parameters()), repeat=rep,
                         compiled=compile_, latency_ms_p50=round(1e3 * statistics.median(lat), 3), latency_ms_p90=round(1e3 * q, 3),
                         batch=a.batch, throughput_per_s=round(a.batch * len(thr) / sum(thr), 2),
                         flops_per_seq=forward_flops(cfg.n_layers, cfg.hidden, a.seq_len)))
        print(f"{size:>7}{' compiled' if compile_ else ''}: batch-1 p50 {rows[-1]['latency_ms_p50']:8.2f} ms; "
              f"batch {a.batch}: {rows[-1]['throughput_per_s']:9.1f} seq/s", flush=True)
    return rows


def speedups(rows: list[dict]) -> list[dict]:
    """Per size (and compiled or not): the median over repeats of latency and throughput, and the speed-ups over Large
    measured the same way, beside the FLOP ratio and the paper's TPU speed-up."""
    out = []
    for comp in sorted({r['compiled'] for r in rows}):
        rs = [r for r in rows if r['compiled'] == comp]
        med = lambda s, k: statistics.median(r[k] for r in rs if r['size'] == s)
        base_lat, base_thr = med(LARGE, 'latency_ms_p50'), med(LARGE, 'throughput_per_s')
        large_flops = next(r['flops_per_seq'] for r in rs if r['size'] == LARGE)
        for s in dict.fromkeys(r['size'] for r in rs):
            r0 = next(r for r in rs if r['size'] == s)
            out.append(dict(size=s, L=r0['L'], H=r0['H'], params=r0['params'], compiled=comp, latency_ms=med(s, 'latency_ms_p50'),
                            throughput_per_s=med(s, 'throughput_per_s'), speedup_latency=round(base_lat / med(s, 'latency_ms_p50'), 2),
                            speedup_throughput=round(med(s, 'throughput_per_s') / base_thr, 2),
                            flop_ratio=round(large_flops / r0['flops_per_seq'], 2), paper_tpu_speedup=PAPER_TPU_SPEEDUP.get(s)))
    return out


def markdown(out: dict) -> str:
    lines = [f"device: {out['device_name']}, precision {out['precision']}, torch threads {out['threads']}, T = {out['seq_len']}, "
             f"throughput batch {out['batch']}", '',
             '| size | params (M) | compiled | batch-1 ms | seq/s | speed-up (latency) | speed-up (throughput) | FLOP ratio | paper TPU |',
             '|---|---|---|---|---|---|---|---|---|']
    lines += [f"| {r['size']} | {r['params'] / 1e6:.1f} | {'yes' if r['compiled'] else 'no'} | {r['latency_ms']:.2f} | {r['throughput_per_s']:,.1f} | "
              f"{r['speedup_latency']}x | {r['speedup_throughput']}x | {r['flop_ratio']}x | {r['paper_tpu_speedup'] or '—'} |"
              for r in out['speedups']]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sizes', nargs='+', default=GRID + [LARGE], help='student sizes (default: the 24 of the grid, then 24/1024)')
    p.add_argument('--device', default=None); p.add_argument('--threads', type=int, default=None)
    p.add_argument('--precision', choices=['bf16', 'fp32'], default=None, help='default: bf16 on CUDA and on CPUs with native bf16')
    p.add_argument('--seq-len', type=int, default=128)
    p.add_argument('--batch', type=int, default=None, help='throughput batch (default 256 on CUDA, 32 on CPU: what fits the time)')
    p.add_argument('--steps', type=int, default=None, help='timed throughput calls (default 20 on CUDA, 2 on CPU)')
    p.add_argument('--latency-steps', type=int, default=None, help='timed batch-1 calls (default 50 on CUDA, 10 on CPU)')
    p.add_argument('--warmup', type=int, default=2); p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--compile', action='store_true', help='also time every size under torch.compile')
    p.add_argument('--out', default=None, help='JSON file (a .md table is written beside it)')
    a = p.parse_args(argv)
    if LARGE not in a.sizes: p.error(f"--sizes must include {LARGE} (BERT-Large), the reference of the speed-ups")
    import torch
    from pd_nb.core import get_device, save_json, run_manifest, cpu_has_bf16, student_config
    for s in a.sizes:
        try: student_config(s, strict_grid=False)
        except ValueError as e: p.error(str(e))
    if a.threads: torch.set_num_threads(a.threads)
    device = get_device(a.device); cuda = device.type == 'cuda'
    a.batch = a.batch or (256 if cuda else 32); a.steps = a.steps or (20 if cuda else 2); a.latency_steps = a.latency_steps or (50 if cuda else 10)
    prec = a.precision or ('bf16' if cuda or cpu_has_bf16() else 'fp32')
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    name = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()}-core CPU"
    rows = [r for comp in ([False, True] if a.compile else [False]) for s in a.sizes for r in bench_size(s, device, prec == 'bf16', comp, a, sync)]
    out = dict(device_name=name, precision=prec, threads=torch.get_num_threads(), seq_len=a.seq_len, batch=a.batch, steps=a.steps,
               latency_steps=a.latency_steps, warmup=a.warmup, repeats=a.repeats, rows=rows, speedups=speedups(rows),
               manifest=run_manifest(seed=0, device=device, bench='speed', args=vars(a)))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        save_json(out, a.out); Path(a.out).with_suffix('.md').write_text(markdown(out))
    print(markdown(out))
    return out


if __name__ == '__main__':
    main()
