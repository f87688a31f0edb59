"""Benchmarks of the stages after pre-training (bench_mlm.py times the MLM step), side by side in one run, on the CPU
by default and on CUDA when present, written as JSON (and a markdown table) under data/results/bench/.

- distill: one distillation step of a Mini student with cached soft labels (what `pd_nb distill` does: the teacher
  labels D_T once) against the same step with the teacher run online every step, for a Base-size (12/768) and a
  Large-size (24/1024) teacher (random weights: timing only); and the one-off labelling pass in examples/s.
- finetune: Mini on SST-2 training sentences. Ours: length-bucketed, dynamically padded batches through the Learner.
  Hugging Face `Trainer` (the baseline most people run): run_glue's default padding to 128, and dynamic padding
  (`DataCollatorWithPadding`). Examples/s over the timed steps, and the epoch time they imply for SST-2's 67,349
  sentences (a projection from the measured rate, labelled as such).
- inference: batch-1 latency (p50/p90) and batch throughput at T = 128 for Tiny, Mini, Small, Medium, Base and Large.

Times: --steps timed steps after --warmup untimed ones (CUDA: synchronised around each step), each configuration
--repeats times; the JSON keeps every repeat, and a difference smaller than the spread between repeats is noise.

Run:  .venv/bin/python bench/bench_stages.py --threads 1 --out data/results/bench/stages_cpu_1thread.json
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SST2_TRAIN = 67_349
INFER_SIZES = ('tiny', 'mini', 'small', 'medium', 'base', '24/1024')


def timed(fn, steps: int, warmup: int, sync) -> list[float]:
    "Seconds of each of `steps` calls of `fn` after `warmup` untimed ones."
    for _ in range(warmup): fn()
    sync(); out = []
    for _ in range(steps):
        t = time.perf_counter(); fn(); sync(); out.append(time.perf_counter() - t)
    return out


def summary(times: list[float], items: int) -> dict:
    "Median and p90 step time (ms) and items per second over the timed steps (mean rate: steps differ in length)."
    q = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return dict(step_ms_p50=round(1e3 * statistics.median(times), 2), step_ms_p90=round(1e3 * q[8], 2),
                items_per_s=round(items * len(times) / sum(times), 1))


def bench_distill(device, bf16, a, sync) -> list[dict]:
    import torch
    from pd_nb.core import student_config, set_seed
    from pd_nb.bert import BertForSequenceClassification
    from pd_nb.distill import soft_cross_entropy
    from pd_nb.learner import adamw, param_groups
    set_seed(0); B, T = a.distill_batch, 64
    ids = torch.randint(1000, 30522, (B, T), device=device); am = torch.ones_like(ids)
    student = BertForSequenceClassification(student_config('mini', n_labels=2)).to(device).train()
    opt = adamw(param_groups(student), lr=1e-4)
    cached_probs = torch.softmax(torch.randn(B, 2, device=device), -1)
    auto = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    def student_step(p):
        with auto(): loss = soft_cross_entropy(student(ids, am).logits, p)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    rows = []
    for name in ('base', '24/1024'):
        teacher = BertForSequenceClassification(student_config(name, n_labels=2, strict_grid=False)).to(device).eval()
        if bf16: teacher = teacher.to(torch.bfloat16)
        def teacher_probs(x):
            with torch.no_grad(), auto(): return torch.softmax(teacher(x, torch.ones_like(x)).logits.float(), -1)
        for rep in range(a.repeats):
            cached = summary(timed(lambda: student_step(cached_probs), a.steps, a.warmup, sync), B)
            online = summary(timed(lambda: student_step(teacher_probs(ids)), a.steps, a.warmup, sync), B)
            lab_ids = torch.randint(1000, 30522, (a.label_batch, T), device=device)
            label = summary(timed(lambda: teacher_probs(lab_ids), max(2, a.steps // 2), 1, sync), a.label_batch)
            rows.append(dict(teacher=name, repeat=rep, batch=B, seq_len=T, cached=cached, online=online, labelling=label,
                             speedup_cached_vs_online=round(online['step_ms_p50'] / cached['step_ms_p50'], 2)))
            print(f"distill  teacher {name:>7}: cached {cached['step_ms_p50']:8.1f} ms/step, online {online['step_ms_p50']:8.1f} "
                  f"ms/step ({rows[-1]['speedup_cached_vs_online']}x); labelling {label['items_per_s']:,.0f} examples/s", flush=True)
        del teacher
    return rows


def bench_finetune(device, bf16, a, sync) -> list[dict]:
    import numpy as np, torch
    from pd_nb.core import student_config, set_seed
    from pd_nb.bert import BertForSequenceClassification
    from pd_nb.data import load_task, get_tokenizer
    from pd_nb.classifier import tokenize_examples, classification_loader
    from pd_nb.learner import Learner, DataLoaders, Callback
    from pd_nb.hub import to_hf_config
    import transformers
    transformers.logging.set_verbosity_error()
    tok = get_tokenizer(); train = load_task('sst2', 'train', a.data_dir)
    texts, labels = list(train['text_a']), list(train['label'])
    rows = []
    for B in a.ft_batch:
        for rep in range(a.repeats):
            res = dict(batch=B, repeat=rep, n_train=len(texts))
            # ours: the Learner on length-bucketed, dynamically padded batches
            set_seed(rep); times = []; seen = []
            class Timer(Callback):
                order = 100
                def before_batch(self, learn): sync(); self.t = time.perf_counter(); seen.append(learn.batch['input_ids'].shape[0])
                def after_step(self, learn): sync(); times.append(time.perf_counter() - self.t)
            data = tokenize_examples({'text_a': texts, 'label': labels}, tok, 128)
            dl = classification_loader(data, B, shuffle=True, seed=rep)
            m = BertForSequenceClassification(student_config('mini', n_labels=2))
            learn = Learner(m, DataLoaders(dl), lr=1e-4, warmup=0, precision='bf16' if bf16 else 'fp32', device=device,
                            progress=False, log_every=10 ** 9)
            learn.fit(max_steps=a.warmup + a.steps, cbs=[Timer()])
            times, seen = times[a.warmup:], seen[a.warmup:]
            res['pd_nb'] = dict(summary(times, B), items_per_s=round(sum(seen) / sum(times), 1))
            # Hugging Face Trainer, padded to 128 (run_glue's default) and with dynamic padding
            for mode in ('hf_trainer_pad128', 'hf_trainer_dynamic'):
                import datasets
                pad = mode.endswith('pad128')
                enc = tok(texts, truncation=True, max_length=128, padding='max_length' if pad else False)
                ds = datasets.Dataset.from_dict({'input_ids': enc['input_ids'], 'attention_mask': enc['attention_mask'], 'labels': labels})
                hf = transformers.BertForSequenceClassification(to_hf_config(student_config('mini', n_labels=2)))
                ht = []
                class HFTimer(transformers.TrainerCallback):
                    def on_step_begin(self, args, state, control, **kw): sync(); self.t = time.perf_counter()
                    def on_step_end(self, args, state, control, **kw): sync(); ht.append(time.perf_counter() - self.t)
                with tempfile.TemporaryDirectory() as td:
                    targs = transformers.TrainingArguments(output_dir=td, per_device_train_batch_size=B, max_steps=a.warmup + a.steps,
                                                           learning_rate=1e-4, logging_strategy='no', save_strategy='no', report_to=[],
                                                           bf16=bf16, use_cpu=device.type == 'cpu', disable_tqdm=True, seed=rep,
                                                           dataloader_num_workers=0)
                    tr = transformers.Trainer(model=hf, args=targs, train_dataset=ds, callbacks=[HFTimer()],
                                              data_collator=None if pad else transformers.DataCollatorWithPadding(tok))
                    tr.train()
                res[mode] = summary(ht[a.warmup:], B)
            for mode in ('hf_trainer_pad128', 'hf_trainer_dynamic'):
                res[f'speedup_vs_{mode}'] = round(res['pd_nb']['items_per_s'] / res[mode]['items_per_s'], 2)
            res['projected_epoch_s'] = {k: round(SST2_TRAIN / res[k]['items_per_s'], 1) for k in ('pd_nb', 'hf_trainer_pad128', 'hf_trainer_dynamic')}
            rows.append(res)
            print(f"finetune batch {B:>3}: ours {res['pd_nb']['items_per_s']:,.0f} ex/s, Trainer pad-128 "
                  f"{res['hf_trainer_pad128']['items_per_s']:,.0f} ({res['speedup_vs_hf_trainer_pad128']}x), dynamic "
                  f"{res['hf_trainer_dynamic']['items_per_s']:,.0f} ({res['speedup_vs_hf_trainer_dynamic']}x)", flush=True)
    return rows


def bench_inference(device, bf16, a, sync) -> list[dict]:
    import torch
    from pd_nb.core import student_config, set_seed, bert_param_count
    from pd_nb.bert import BertForSequenceClassification
    rows = []
    for size in a.infer_sizes:
        cfg = student_config(size, n_labels=2, strict_grid=False)
        m = BertForSequenceClassification(cfg).to(device).eval()
        if bf16: m = m.to(torch.bfloat16)
        one, many = torch.randint(1000, 30522, (1, 128), device=device), torch.randint(1000, 30522, (a.infer_batch, 128), device=device)
        def run(x):
            with torch.no_grad(): m(x, torch.ones_like(x))
        for rep in range(a.repeats):
            lat = summary(timed(lambda: run(one), a.latency_steps, a.warmup, sync), 1)
            thr = summary(timed(lambda: run(many), a.steps, 1, sync), a.infer_batch)
            rows.append(dict(size=size, L=cfg.n_layers, H=cfg.hidden, params=sum(p.numel() for p in m.parameters()), repeat=rep,
                             latency_ms_p50=lat['step_ms_p50'], latency_ms_p90=lat['step_ms_p90'],
                             throughput_batch=a.infer_batch, throughput_per_s=thr['items_per_s']))
            print(f"inference {size:>7}: batch-1 p50 {lat['step_ms_p50']:7.1f} ms, p90 {lat['step_ms_p90']:7.1f} ms; "
                  f"batch {a.infer_batch}: {thr['items_per_s']:,.1f} sequences/s", flush=True)
        del m
    return rows


def markdown(out: dict) -> str:
    lines = [f"device: {out['device_name']}, precision {out['precision']}, torch threads {out['threads']}", '']
    if out.get('distill'):
        lines += ['| teacher | cached ms/step | online ms/step | cached speedup | labelling ex/s |', '|---|---|---|---|---|']
        lines += [f"| {r['teacher']} (rep {r['repeat']}) | {r['cached']['step_ms_p50']} | {r['online']['step_ms_p50']} | "
                  f"{r['speedup_cached_vs_online']}x | {r['labelling']['items_per_s']:,.0f} |" for r in out['distill']] + ['']
    if out.get('finetune'):
        lines += ['| batch | ours ex/s | Trainer pad-128 ex/s | Trainer dynamic ex/s | vs pad-128 | vs dynamic | projected epoch (s): ours / pad-128 / dynamic |',
                  '|---|---|---|---|---|---|---|']
        lines += [f"| {r['batch']} (rep {r['repeat']}) | {r['pd_nb']['items_per_s']:,.0f} | {r['hf_trainer_pad128']['items_per_s']:,.0f} | "
                  f"{r['hf_trainer_dynamic']['items_per_s']:,.0f} | {r['speedup_vs_hf_trainer_pad128']}x | {r['speedup_vs_hf_trainer_dynamic']}x | "
                  f"{' / '.join(str(v) for v in r['projected_epoch_s'].values())} |" for r in out['finetune']] + ['']
    if out.get('inference'):
        lines += ['| model | params (M) | batch-1 p50 ms | p90 ms | throughput seq/s (batch) |', '|---|---|---|---|---|']
        lines += [f"| {r['size']} (rep {r['repeat']}) | {r['params'] / 1e6:.1f} | {r['latency_ms_p50']} | {r['latency_ms_p90']} | "
                  f"{r['throughput_per_s']:,.1f} ({r['throughput_batch']}) |" for r in out['inference']]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--stages', nargs='+', default=['distill', 'finetune', 'inference'], choices=['distill', 'finetune', 'inference'])
    p.add_argument('--device', default=None); p.add_argument('--threads', type=int, default=None)
    p.add_argument('--precision', choices=['bf16', 'fp32'], default=None, help='default: bf16 on CUDA and on CPUs with native bf16')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 8 on CPU, 30 on CUDA)')
    p.add_argument('--warmup', type=int, default=2); p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--distill-batch', type=int, default=32); p.add_argument('--label-batch', type=int, default=None)
    p.add_argument('--ft-batch', type=int, nargs='+', default=[32, 128])
    p.add_argument('--infer-sizes', nargs='+', default=list(INFER_SIZES)); p.add_argument('--infer-batch', type=int, default=None)
    p.add_argument('--latency-steps', type=int, default=None)
    p.add_argument('--data-dir', default=None, help='for SST-2 (default $PD_NB_DATA, else the embedded sample)')
    p.add_argument('--out', default=None, help='JSON file (a .md table is written beside it)')
    a = p.parse_args(argv)
    import torch
    from pd_nb.core import get_device, save_json, run_manifest, cpu_has_bf16
    if a.threads: torch.set_num_threads(a.threads)
    device = get_device(a.device); cuda = device.type == 'cuda'
    a.steps = a.steps or (30 if cuda else 8); a.label_batch = a.label_batch or (1024 if cuda else 128)
    a.infer_batch = a.infer_batch or (256 if cuda else 32); a.latency_steps = a.latency_steps or (50 if cuda else 10)
    prec = a.precision or ('bf16' if cuda or cpu_has_bf16() else 'fp32'); bf16 = prec == 'bf16'
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    name = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()}-core CPU"
    out = dict(device_name=name, precision=prec, threads=torch.get_num_threads(), steps=a.steps, warmup=a.warmup, repeats=a.repeats)
    for st in a.stages: out[st] = {'distill': bench_distill, 'finetune': bench_finetune, 'inference': bench_inference}[st](device, bf16, a, sync)
    out['manifest'] = run_manifest(seed=0, device=device, bench='stages', args=vars(a))
    if a.out:
        save_json(out, a.out); Path(a.out).with_suffix('.md').write_text(markdown(out))
    print(markdown(out))
    return out


if __name__ == '__main__':
    main()
