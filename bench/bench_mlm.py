"""Benchmark one masked-LM training step: pd_nb (Learner + on-device masking + sparse MLM head) against
Hugging Face `BertForMaskedLM` + `DataCollatorForLanguageModeling` in a plain PyTorch loop.

Same student size, same batch, same packed 128-token rows (chapter 01's D_LM memmap of the embedded
sample, or PD_NB_DATA's corpora with --corpus), same AdamW, after warm-up steps. Prints tokens/s (median step time) for
both and the ratio. Run:  .venv/bin/python bench/bench_mlm.py --size tiny mini

MFU (printed on CUDA): achieved model FLOP/s divided by the device's peak dense bf16 FLOP/s, where the
model FLOPs of one training token are counted as in PaLM (Chowdhery et al. 2022, App. B):
    6 * N_matmul  +  12 * L * H * T          (forward + backward, attention scores and values)
with N_matmul the encoder's matrix parameters (4H^2 + 2*H*F per layer) plus, for the MLM head, the
H^2 transform and the H*V decoder counted only at the positions where each implementation computes
them (all T positions for HF's dense head, the 15% masked ones for our sparse head). We report MFU
with the FLOPs of the *dense* computation (the useful work HF does) for both, so the sparse head's
saving shows up as higher MFU rather than being hidden by a smaller FLOP count.
"""
import argparse, time, json, os, sys
from pathlib import Path
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pd_nb.core import student_config, set_seed, get_device, save_json, run_manifest
from pd_nb.data import get_tokenizer, build_lm_memmap
from pd_nb.bert import BertForMaskedLM
from pd_nb.hub import to_hf_config, to_hf_state_dict
from pd_nb.learner import Learner, DataLoaders, Callback
import statistics
from pd_nb.pretrain import MLMMaskCB, Rows

PEAK_BF16 = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12}

def flops_per_token(cfg, T=128, mlm_positions=1.0):
    H, F, L, V = cfg.hidden, cfg.ffn, cfg.n_layers, cfg.vocab_size
    n_matmul = L * (4 * H * H + 2 * H * F) + mlm_positions * (H * H + H * V)
    return 6 * n_matmul + 12 * L * H * T

def peak_flops(device):
    if device.type != 'cuda': return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)

def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)

class StepTimer(Callback):
    "Wall time of every optimiser step (synchronised on CUDA)."
    order = 100
    def __init__(self, device): self.device, self.times, self.t = device, [], None
    def before_fit(self, learn): sync(self.device); self.t = time.perf_counter()
    def after_step(self, learn):
        sync(self.device); now = time.perf_counter(); self.times.append(now - self.t); self.t = now

def tokens_per_s(times, batch, T=128):
    "Tokens/s from the median step time (robust to a busy machine's outliers)."
    return batch * T / statistics.median(times)

def bench_ours(cfg, rows, batch, steps, warmup, device, precision, compile, accum):
    tok = get_tokenizer()
    set_seed(0)
    model = BertForMaskedLM(cfg)
    dl = DataLoader(Rows(rows), batch_size=batch // accum, shuffle=True, drop_last=True, pin_memory=device.type == 'cuda')
    learn = Learner(model, DataLoaders(dl), lr=1e-4, warmup=0, grad_accum=accum, precision=precision, compile=compile,
                    device=device, progress=False, log_every=10**9,
                    cbs=[MLMMaskCB(tok.mask_token_id, len(tok), sorted(tok.all_special_ids))])
    learn.fit(max_steps=warmup)
    timer = StepTimer(device)
    learn.fit(max_steps=warmup + steps, cbs=[timer])
    return tokens_per_s(timer.times, batch, rows.shape[1])

def bench_hf(cfg, rows, batch, steps, warmup, device, precision, accum):
    from transformers import BertForMaskedLM as HFBertForMaskedLM, DataCollatorForLanguageModeling
    tok = get_tokenizer()
    set_seed(0)
    hf = HFBertForMaskedLM(to_hf_config(cfg)).to(device).train()
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=0.15)
    dl = DataLoader([{'input_ids': torch.from_numpy(r.astype('int64'))} for r in rows], batch_size=batch // accum,
                    shuffle=True, drop_last=True, collate_fn=collator, pin_memory=device.type == 'cuda')
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4, fused=device.type == 'cuda' or None)
    bf16 = precision == 'bf16'
    it = iter(dl)
    def step():
        nonlocal it
        for _ in range(accum):
            try: b = next(it)
            except StopIteration: it = iter(dl); b = next(it)
            b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = hf(**b).loss
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(warmup): step()
    times = []
    for _ in range(steps):
        sync(device); t0 = time.perf_counter(); step(); sync(device); times.append(time.perf_counter() - t0)
    return tokens_per_s(times, batch, rows.shape[1])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--size', nargs='+', default=['tiny', 'mini'])
    p.add_argument('--batch', type=int, default=None, help='global batch (default 32 on CPU, 4096 on CUDA)')
    p.add_argument('--accum', type=int, default=1, help='gradient accumulation micro-batches per step')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 20 on CPU, 30 on CUDA)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--corpus', nargs='+', default=['sample'])
    p.add_argument('--device', default=None)
    p.add_argument('--compile', action='store_true')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: all cores)')
    p.add_argument('--out', default=None, help='write the figures as JSON here')
    a = p.parse_args(argv)
    device = get_device(a.device)
    if a.threads: torch.set_num_threads(a.threads)
    cuda = device.type == 'cuda'
    batch, steps = a.batch or (4096 if cuda else 32), a.steps or (30 if cuda else 20)
    precision = 'bf16' if cuda else 'fp32'
    if cuda: torch.backends.cuda.matmul.allow_tf32 = True
    rows = build_lm_memmap(a.corpus, get_tokenizer(), 128)
    need = batch * (steps + a.warmup + 1)
    print(f"device={device} ({torch.cuda.get_device_name(device) if cuda else os.cpu_count()} {'' if cuda else 'cores'}), "
          f"torch threads={torch.get_num_threads()}, batch={batch}, seq=128, steps={steps} after {a.warmup} warm-up, "
          f"{len(rows):,} rows{' (reused: fewer rows than the run needs)' if len(rows) < need else ''}")
    results, peak = [], peak_flops(device)
    for size in a.size:
        cfg = student_config(size)
        hf = bench_hf(cfg, rows, batch, steps, a.warmup, device, precision, a.accum)
        ours = bench_ours(cfg, rows, batch, steps, a.warmup, device, precision, a.compile, a.accum)
        r = dict(size=size, L=cfg.n_layers, H=cfg.hidden, batch=batch, hf_tokens_per_s=round(hf), ours_tokens_per_s=round(ours),
                 speedup=round(ours / hf, 2))
        if peak:
            f = flops_per_token(cfg)
            r.update(hf_mfu=round(hf * f / peak, 4), ours_mfu=round(ours * f / peak, 4))
        results.append(r)
        print(f"{size:>8} L{cfg.n_layers}/H{cfg.hidden}: HF {hf:>10,.0f} tok/s | pd_nb {ours:>10,.0f} tok/s | x{ours / hf:.2f}"
              + (f" | MFU HF {r['hf_mfu']:.1%} pd_nb {r['ours_mfu']:.1%}" if peak else ''), flush=True)
    if a.out: save_json({'results': results, 'manifest': run_manifest(seed=0, device=device, bench='mlm', steps=steps)}, a.out)
    return results

if __name__ == '__main__':
    main()
