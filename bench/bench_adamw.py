"""Time one AdamW step over a student's parameters on this machine: torch's per-parameter loop (the CPU default before
`fused`), `foreach=True`, and `fused=True` (what `pd_nb.learner.adamw` asks for on CUDA and CPU).

Run:  .venv/bin/python bench/bench_adamw.py --size mini --threads 1 --out data/results/bench/adamw_cpu_1thread.json
"""
import argparse, statistics, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--size', default='mini'); p.add_argument('--threads', type=int, default=1)
    p.add_argument('--steps', type=int, default=10); p.add_argument('--out')
    a = p.parse_args(argv)
    import torch
    from pd_nb.core import student_config, save_json, run_manifest
    from pd_nb.bert import BertForMaskedLM
    from pd_nb.learner import param_groups
    torch.set_num_threads(a.threads)
    model = BertForMaskedLM(student_config(a.size))
    for q in model.parameters(): q.grad = torch.randn_like(q)
    rows = []
    for name, kw in (('loop', dict(foreach=False)), ('foreach', dict(foreach=True)), ('fused', dict(fused=True))):
        opt = torch.optim.AdamW(param_groups(model), lr=1e-4, betas=(0.9, 0.999), eps=1e-6, **kw); opt.step()
        times = []
        for _ in range(a.steps):
            t = time.perf_counter(); opt.step(); times.append(time.perf_counter() - t)
        rows.append(dict(variant=name, step_ms_p50=round(1e3 * statistics.median(times), 2)))
        print(f"{a.size} AdamW {name:8s} {rows[-1]['step_ms_p50']:8.2f} ms per step", flush=True)
    out = dict(size=a.size, params=sum(q.numel() for q in model.parameters()), threads=a.threads, results=rows,
               manifest=run_manifest(seed=0, bench='adamw', steps=a.steps))
    if a.out: save_json(out, a.out)
    return out


if __name__ == '__main__':
    main()
