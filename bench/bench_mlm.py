"""Benchmark one masked-LM training step: pd_nb against Hugging Face, at the same precision, with the machine's
own matmul peak measured in the same run.

Contenders (same student size, same batch of packed 128-token rows from chapter 01's D_LM memmap, same AdamW,
gradient clipping, median step time after warm-up steps):

- `pd_nb`: the Learner with on-device exact-count masking and the fused sparse MLM head (`vocab_cross_entropy`);
- `pd_nb+compile`: the same Learner with `compile=True`;
- `hf`: Hugging Face `BertForMaskedLM` in a plain PyTorch loop (eager), on batches masked beforehand by
  `DataCollatorForLanguageModeling` and already on the device: its figure is model-only (no data path, no masking),
  ours is end to end. Where HF's dense head does not fit the batch (4096 x 128 x 30,522 logits on a GPU), the step
  accumulates gradients over micro-batches (the same global batch; `accum` in the JSON);
- `hf+compile`: the same with `torch.compile(model)`;
- `hf+malloc`, `hf+compile+malloc`: `hf`, `hf+compile` with the process-wide glibc setting pd_nb's Learner makes on
  the CPU (`pd_nb.learner.reuse_freed_memory`: keep freed memory instead of handing it back and faulting it in again).
  Hugging Face's dense head allocates logits of batch x 128 x 30,522 floats every step, so this setting alone can
  change its speed; a speed-up claimed against `hf` should hold against `hf+malloc` too.

Each contender runs in its own fresh process, so nothing one of them sets (pd_nb's Learner asks glibc to keep freed
memory, `pd_nb.learner.reuse_freed_memory`) reaches another. With `--rounds R` the contenders of a row run R times in
turn (pd_nb, hf, ..., pd_nb, hf, ...), so that a drift of the machine's speed (other jobs, clocks) reaches every
contender alike; a contender's figure is then the median of its R runs (each run's own figure in `tokens_per_s_runs`),
and the speed-ups are ratios of those medians, with the smallest and largest ratio of two runs of the same round
beside them (`speedup_vs_hf_range`).

FLOPs. Model FLOPs of one training token, forward + backward (PaLM, Chowdhery et al. 2022, App. B), counting only
the work the loss needs:

    6 * ((L - 1) * (4H^2 + 2HF) + 2H^2 + f * (2H^2 + 2HF) + f * (H^2 + HV))  +  12 * H * T * (L - 1 + f)

where f is the share of positions the masked-LM loss reads (the masked ones: 19 of 128 with exact-count masking).
The head runs at those positions only, and so does the top layer apart from its key and value projections (every
position is still attended to). MFU = model FLOP/s / peak. Hugging Face computes the head and the top layer at all T
positions (f = 1 there): that extra work is hardware FLOPs, reported as HFU, and does not count as model FLOPs. pd_nb
computes the top layer and the head at the masked positions (`BertForMaskedLM`), so its HFU is its MFU. The peaks
are measured here: the best of several [2048 x 2048] @ [2048 x 2048] matmuls in bf16 and in fp32 at the same thread
count (on CUDA, the datasheet's dense bf16 peak is used as well).

Run (the committed table, data/results/bench/mlm_cpu_1thread.json):
    .venv/bin/python bench/bench_mlm.py --size tiny mini --precision bf16 fp32 --threads 1 --batch 32 --steps 10 --rounds 3 \
        --contenders pd_nb pd_nb+compile hf hf+compile --out data/results/bench/mlm_cpu_1thread.json
"""
import argparse, json, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONTENDERS = ('pd_nb', 'pd_nb+compile', 'hf', 'hf+compile', 'hf+malloc', 'hf+compile+malloc')
DEFAULT_CONTENDERS = ('pd_nb', 'hf', 'hf+compile')


def datasheet_bf16_peak(name: str) -> float | None:
    "Dense bf16 tensor-core peak of a known GPU by name (FLOP/s): H100 SXM/H200 989T, H100 PCIe 756T, A100 312T."
    n = name.upper()
    if 'H100' in n and 'PCIE' in n: return 756e12
    if 'H100' in n or 'H200' in n or 'GH200' in n: return 989e12
    if 'A100' in n: return 312e12
    return None


def flops_per_token(cfg, T: int = 128, head_share: float = 1.0) -> float:
    """Training FLOPs of one token (see the module docstring); `head_share` = f, the share of positions at which the
    head and the top layer's queries, attention output and feed-forward block run."""
    H, F, L, V, f = cfg.hidden, cfg.ffn, cfg.n_layers, cfg.vocab_size, head_share
    return 6 * ((L - 1) * (4 * H * H + 2 * H * F) + 2 * H * H + f * (2 * H * H + 2 * H * F) + f * (H * H + H * V)) \
        + 12 * H * T * (L - 1 + f)


def matmul_peak(dtype, device, n: int = 2048, reps: int = 5) -> float:
    "Best FLOP/s of an n^3 matmul in `dtype` on `device` (after one warm-up)."
    import torch
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    a @ b
    best = float('inf')
    for _ in range(reps):
        if device.type == 'cuda': torch.cuda.synchronize(device)
        t = time.perf_counter(); a @ b
        if device.type == 'cuda': torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def run_one(kind: str, size: str, precision: str, batch: int, steps: int, warmup: int, corpus, device_name, threads):
    "One contender in this process: median tokens/s over `steps` timed steps (returned as a dict)."
    import numpy as np, torch
    from torch.utils.data import DataLoader
    if threads: torch.set_num_threads(threads)
    from pd_nb.core import student_config, set_seed, get_device
    from pd_nb.data import get_tokenizer, build_lm_memmap
    device = get_device(device_name)
    tok, rows = get_tokenizer(), build_lm_memmap(corpus, get_tokenizer(), 128)
    cfg, bf16 = student_config(size), precision == 'bf16'
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' else (lambda: None)
    set_seed(0)
    times = []
    if kind.startswith('pd_nb'):
        from pd_nb.bert import BertForMaskedLM
        from pd_nb.learner import Learner, DataLoaders, Callback
        from pd_nb.pretrain import MLMMaskCB
        from pd_nb.data import Rows, rows_batch
        class StepTimer(Callback):
            order = 100
            def before_fit(self, learn): sync(); self.t = time.perf_counter()
            def after_step(self, learn):
                sync(); now = time.perf_counter(); times.append(now - self.t); self.t = now
        model = BertForMaskedLM(student_config(size, dropout=0.0, attn_dropout=0.0))
        model.bert.pooler.requires_grad_(False)
        dl = DataLoader(Rows(rows), batch_size=batch, shuffle=True, drop_last=True, collate_fn=rows_batch, pin_memory=device.type == "cuda")
        learn = Learner(model, DataLoaders(dl), lr=1e-4, warmup=0, precision=precision, device=device, progress=False,
                        compile=kind == 'pd_nb+compile',
                        log_every=10 ** 9, cbs=[MLMMaskCB(tok.mask_token_id, len(tok), sorted(tok.all_special_ids), pad_id=tok.pad_token_id)])
        learn.fit(max_steps=warmup)
        learn.fit(max_steps=warmup + steps, cbs=[StepTimer()])
        head_share = 19 / 128                                        # exact-count masking: round(0.15 * 128) per row;
                                                                     # head and top layer run there (BertForMaskedLM)
    else:
        from transformers import BertForMaskedLM as HF, DataCollatorForLanguageModeling
        from pd_nb.hub import to_hf_config
        if kind.endswith('+malloc') and device.type == 'cpu':
            from pd_nb.learner import reuse_freed_memory
            reuse_freed_memory()
        hfc = to_hf_config(cfg); hfc.hidden_dropout_prob = hfc.attention_probs_dropout_prob = 0.0
        hf = HF(hfc).to(device).train()
        fwd = torch.compile(hf) if '+compile' in kind else hf
        collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
        n_batches = 4                                                # masked once, on the device, cycled: model-only timing
        pick = lambda i: rows[np.arange(i * batch, (i + 1) * batch) % len(rows)]   # wraps round a small corpus
        batches = [{k: v.to(device) for k, v in collator([{'input_ids': torch.from_numpy(r.astype('int64'))}
                                                          for r in pick(i)]).items()} for i in range(n_batches)]
        opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=True)   # the same kernel as pd_nb's `adamw`
        accum, n = 1, 0
        def step():
            nonlocal n
            b = batches[n % n_batches]; n += 1; m = batch // accum
            for j in range(accum):
                mb = {k: v[j * m:(j + 1) * m] for k, v in b.items()}
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16): loss = fwd(**mb).loss / accum
                loss.backward()
            torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
            opt.step(); opt.zero_grad(set_to_none=True)
        while True:                                                  # the largest micro-batch that fits
            try: step(); sync(); break
            except torch.OutOfMemoryError:
                opt.zero_grad(set_to_none=True); torch.cuda.empty_cache()
                if accum >= batch: raise
                accum *= 2
        for _ in range(warmup): step()
        for _ in range(steps):
            sync(); t = time.perf_counter(); step(); sync(); times.append(time.perf_counter() - t)
        head_share = 1.0
    out = dict(tokens_per_s=batch * 128 / statistics.median(times), head_share=head_share, threads=torch.get_num_threads(),
               step_ms_p10_p50_p90=[round(1e3 * statistics.quantiles(times, n=10)[i], 2) for i in (0, 4, 8)] if len(times) > 1 else None)
    if not kind.startswith('pd_nb'): out['accum'] = accum
    if device.type == 'cuda': out['max_memory_gib'] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--size', nargs='+', default=['tiny', 'mini'])
    p.add_argument('--precision', nargs='+', default=None, choices=['bf16', 'fp32'], help='default: bf16 and fp32 on CPU, bf16 on CUDA')
    p.add_argument('--contenders', nargs='+', default=list(DEFAULT_CONTENDERS), choices=CONTENDERS)
    p.add_argument('--batch', type=int, default=None, help='batch (default 128 on CPU, 4096 on CUDA)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 8 on CPU, 30 on CUDA)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 3; 6 with compile)')
    p.add_argument('--corpus', nargs='+', default=['sample'])
    p.add_argument('--device', default=None)
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: all cores)')
    p.add_argument('--rounds', type=int, default=1, help='runs of every contender, taken in turn; the median counts')
    p.add_argument('--out', default=None, help='write the figures as JSON here')
    p.add_argument('--one', help=argparse.SUPPRESS)                  # internal: run one contender, print JSON
    a = p.parse_args(argv)
    if a.rounds < 1: p.error(f'--rounds must be at least 1, got {a.rounds}')
    import torch
    from pd_nb.core import get_device, save_json, run_manifest, student_config, cpu_name
    if a.threads: torch.set_num_threads(a.threads)
    device = get_device(a.device); cuda = device.type == 'cuda'
    batch, steps = a.batch or (4096 if cuda else 128), a.steps or (30 if cuda else 8)
    if a.one:
        kind, size, prec = a.one.split(':')
        warm = a.warmup if a.warmup is not None else (6 if '+compile' in kind else 3)
        print('RESULT ' + json.dumps(run_one(kind, size, prec, batch, steps, warm, a.corpus, a.device, a.threads)), flush=True)
        return None
    precisions = a.precision or (['bf16'] if cuda else ['bf16', 'fp32'])
    n = 8192 if cuda else 2048                                       # a GPU needs big products to reach its peak
    peaks = {'bf16': matmul_peak(torch.bfloat16, device, n), 'fp32': matmul_peak(torch.float32, device, n)}
    name = torch.cuda.get_device_name(device) if cuda else cpu_name()
    sheet = datasheet_bf16_peak(name) if cuda else None
    print(f"device={device} ({name}), torch threads={torch.get_num_threads()}, batch={batch}x128, {steps} timed steps; "
          f"measured matmul peak: bf16 {peaks['bf16'] / 1e9:,.0f} GFLOP/s, fp32 {peaks['fp32'] / 1e9:,.0f} GFLOP/s"
          + (f", {a.rounds} rounds" if a.rounds > 1 else ""), flush=True)
    results = []
    out = {'results': results, 'rounds': a.rounds, 'matmul_peak_gflops': {k: round(v / 1e9, 1) for k, v in peaks.items()}, 'matmul_n': n,
           'datasheet_bf16_peak_tflops': sheet and sheet / 1e12,
           'device_name': name, 'flops_note': 'model FLOPs count the MLM head and the top layer (but its key/value projections) at the 19/128 masked positions for every contender; HFU counts what each computes',
           'manifest': run_manifest(seed=0, device=device, bench='mlm', steps=steps, batch=batch)}
    for size in a.size:
        cfg = student_config(size)
        for prec in precisions:
            row = dict(size=size, L=cfg.n_layers, H=cfg.hidden, precision=prec, batch=batch)
            runs = {kind: [] for kind in a.contenders}
            for rnd in range(a.rounds):
                for kind in a.contenders:
                    cmd = [sys.executable, __file__, '--one', f'{kind}:{size}:{prec}', '--batch', str(batch), '--steps', str(steps),
                           '--corpus', *a.corpus] + (['--threads', str(a.threads)] if a.threads else []) + \
                          (['--device', a.device] if a.device else []) + (['--warmup', str(a.warmup)] if a.warmup is not None else [])
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    line = [l for l in r.stdout.splitlines() if l.startswith('RESULT ')]
                    if r.returncode != 0 or not line:
                        print(f"{size} {prec} {kind}: failed\n{r.stderr[-1500:]}", flush=True); runs[kind].append(None); continue
                    res = json.loads(line[0][7:]); runs[kind].append(res)
                    if a.rounds > 1: print(f"{size:>5} {prec}: {kind:<13} round {rnd + 1}: {res['tokens_per_s']:>9,.0f} tok/s", flush=True)
            for kind, rs in runs.items():
                done = [r for r in rs if r is not None]
                if not done: continue
                tps = statistics.median(r['tokens_per_s'] for r in done)
                model_flops = tps * flops_per_token(cfg, head_share=19 / 128)     # the useful work, the same for all
                mid = min(done, key=lambda r: abs(r['tokens_per_s'] - tps))      # the run nearest the median: its step times
                hw_flops = tps * flops_per_token(cfg, head_share=mid['head_share'])
                row[kind] = dict(tokens_per_s=round(tps), model_gflops=round(model_flops / 1e9, 1),
                                 mfu=round(model_flops / peaks[prec], 4), hfu=round(hw_flops / peaks[prec], 4),
                                 **{k: v for k, v in mid.items() if k in ('accum', 'step_ms_p10_p50_p90', 'max_memory_gib')})
                if a.rounds > 1: row[kind]['tokens_per_s_runs'] = [r and round(r['tokens_per_s']) for r in rs]
                if sheet and prec == 'bf16': row[kind]['mfu_datasheet'] = round(model_flops / sheet, 4)
                print(f"{size:>5} {prec}: {kind:<13} {tps:>9,.0f} tok/s  {model_flops / 1e9:7.1f} model GFLOP/s  "
                      f"MFU {model_flops / peaks[prec]:6.1%}  HFU {hw_flops / peaks[prec]:6.1%}", flush=True)
            for base in ('hf', 'hf+malloc', 'hf+compile', 'hf+compile+malloc'):
                for ours, key in (('pd_nb', f'speedup_vs_{base}'), ('pd_nb+compile', f'compiled_speedup_vs_{base}')):
                    if ours in row and base in row:
                        row[key] = round(row[ours]['tokens_per_s'] / row[base]['tokens_per_s'], 2)
                        pairs = [u['tokens_per_s'] / v['tokens_per_s'] for u, v in zip(runs[ours], runs[base]) if u and v]
                        if a.rounds > 1 and pairs: row[key + '_range'] = [round(min(pairs), 2), round(max(pairs), 2)]
            print(f"{size:>5} {prec}: pd_nb / hf {row.get('speedup_vs_hf', '-')}x, pd_nb / hf+compile {row.get('speedup_vs_hf+compile', '-')}x", flush=True)
            results.append(row)
            if a.out: save_json(out, a.out)                             # row by row: an interrupted run keeps its rows
    return out


if __name__ == '__main__':
    main()
