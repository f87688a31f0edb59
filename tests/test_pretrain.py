"""Step 1 (masked-LM pre-training): masking statistics, the sparse head against Hugging Face's dense loss,
and `pd_nb pretrain` end to end, checked through Hugging Face."""
import json, subprocess, sys
from pathlib import Path
import numpy as np, pytest, torch
import torch.nn.functional as F
from pd_nb.core import student_config
from pd_nb.data import get_tokenizer
from pd_nb.bert import BertForMaskedLM
from pd_nb.hub import to_hf_config, to_hf_state_dict
from pd_nb.pretrain import mask_tokens, masked_eval_set, evaluate_mlm, pretrain_config, pretrain

tok = get_tokenizer()
SPECIAL = sorted(tok.all_special_ids)

def test_masking_statistics_over_many_tokens():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1000, 30000, (2000, 128))
    x[:, 0], x[:, -1] = tok.cls_token_id, tok.sep_token_id
    x[:100, 64:] = tok.pad_token_id
    y, labels = mask_tokens(x, tok.mask_token_id, len(tok), SPECIAL, generator=g)
    picked = labels != -100
    normal = ~torch.isin(x, torch.tensor(SPECIAL))
    n = int(picked.sum())
    assert abs(picked[normal].float().mean().item() - 0.15) < 0.003          # ~250k candidate positions
    assert int(picked[~normal].sum()) == 0                                     # [CLS]/[SEP]/[PAD] never picked
    assert torch.equal(labels[picked], x[picked]) and (y[~picked] == x[~picked]).all()
    frac_mask = (y[picked] == tok.mask_token_id).float().mean().item()
    frac_kept = (y[picked] == x[picked]).float().mean().item()
    frac_rand = 1 - frac_mask - frac_kept
    # binomial std for n≈37k is ~0.002 (80%) / 0.0016 (10%)
    assert abs(frac_mask - 0.8) < 0.01 and abs(frac_kept - 0.1) < 0.01 and abs(frac_rand - 0.1) < 0.01, (n, frac_mask, frac_kept)

def test_masking_is_reproducible_and_leaves_input_alone():
    x = torch.randint(1000, 30000, (4, 32)); x0 = x.clone()
    a = mask_tokens(x, 103, 30522, SPECIAL, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(x, 103, 30522, SPECIAL, generator=torch.Generator().manual_seed(5))
    assert torch.equal(x, x0) and all(torch.equal(u, v) for u, v in zip(a, b))

def test_sparse_head_loss_equals_hugging_face_dense_loss():
    "Our sparse-head MLM loss vs HF BertForMaskedLM (dense head, ignore_index) with the same weights and batch."
    from transformers import BertForMaskedLM as HF
    cfg = student_config('tiny', dropout=0.0, attn_dropout=0.0, init_range=0.2)
    ours = BertForMaskedLM(cfg).eval()
    hf = HF(to_hf_config(cfg)).eval()
    missing, unexpected = hf.load_state_dict(to_hf_state_dict(ours), strict=False)
    # HF's masked-LM class has no pooler, and its decoder weight/bias are tied to the embeddings / head bias
    assert set(unexpected) <= {'bert.pooler.dense.weight', 'bert.pooler.dense.bias'}, unexpected
    assert set(missing) <= {'cls.predictions.decoder.weight', 'cls.predictions.decoder.bias', 'bert.embeddings.position_ids'}, missing
    hf.tie_weights()
    assert torch.equal(hf.cls.predictions.decoder.weight, ours.bert.embeddings.word.weight)
    x = torch.randint(1000, 30000, (6, 40)); x[:, 0] = tok.cls_token_id
    am = torch.ones_like(x); am[:2, 30:] = 0; x[:2, 30:] = tok.pad_token_id
    xb, yb = mask_tokens(x, tok.mask_token_id, len(tok), SPECIAL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = ours(xb, attention_mask=am, labels=yb)
        b = hf(input_ids=xb, attention_mask=am, labels=yb)
    assert a.logits.shape == (int((yb != -100).sum()), cfg.vocab_size)
    assert abs(a.loss.item() - b.loss.item()) < 1e-5, (a.loss.item(), b.loss.item())
    assert torch.allclose(a.logits, b.logits[yb != -100], atol=1e-4)

def test_pretrain_config_rejects_unknown_fields_and_presets():
    with pytest.raises(ValueError, match=r"pre-training preset 'test': unknown field\(s\) \['learning_rate'\]"): pretrain_config('test', learning_rate=1)
    with pytest.raises(ValueError, match='unknown pretraining preset'): pretrain_config('huge')

def test_cli_pretrain_writes_hf_folder_that_learned(tmp_path):
    "pd_nb pretrain -> an HF folder; its held-out MLM loss, computed by HF, is below the loss at initialisation."
    out = tmp_path / 'tiny'
    r = subprocess.run([str(Path(sys.executable).parent / 'pd_nb'), 'pretrain', '--preset', 'test', '--size', 'tiny', '--corpus', 'sample',
                        '--max-steps', '12', '--lr', '2e-3', '--out', str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    from transformers import AutoModelForMaskedLM
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    summary = json.loads((out / 'pretrain_metrics.json').read_text())
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['config']['size'] == 'tiny' and manifest['versions']['torch'] and summary['steps'] == 12
    from pd_nb.data import build_lm_memmap
    cfg = pretrain_config('test')
    mm = build_lm_memmap(['sample'], tok, 128, cfg.max_tokens)
    ev = masked_eval_set(mm[-cfg.valid_rows:], tok.mask_token_id, len(tok), SPECIAL)
    torch.manual_seed(0)
    fresh = AutoModelForMaskedLM.from_config(hf.config).eval()
    after, before = evaluate_mlm(hf, ev, batch_size=8), evaluate_mlm(fresh, ev, batch_size=8)
    assert after['mlm_loss'] < before['mlm_loss'] - 0.5, (before, after)
    assert abs(after['mlm_loss'] - summary['final_mlm_loss']) < 1e-3

def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    (tmp_path / 'run' / 'checkpoints' / 'step_00000010').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='resume'):
        pretrain(pretrain_config('test'), tmp_path)

def test_milestones_and_compact_resume_state_continue_a_run_elsewhere(tmp_path):
    """A run stopped at step 8 and continued in another folder from its compact `resume/` copy (bf16 AdamW moments)
    ends close to the uninterrupted run; its milestone folders hold half-precision weights that Hugging Face loads
    as fp32 and that give the milestone's recorded held-out loss within fp16 rounding."""
    from safetensors import safe_open
    from transformers import AutoModelForMaskedLM
    from pd_nb.data import build_lm_memmap
    cfg = pretrain_config('test', max_steps=14, ckpt_every=100, eval_every=100, dropout=0.0, milestones=(4 * 1024, 8 * 1024))
    full = pretrain(cfg, tmp_path / 'full', progress=False)
    part = pretrain(pretrain_config('test', max_steps=14, ckpt_every=100, eval_every=100, dropout=0.0, milestones=(4 * 1024, 8 * 1024)),
                    tmp_path / 'a', progress=False)
    assert part['final_mlm_loss'] == full['final_mlm_loss']                      # same run twice: deterministic
    ms = sorted((tmp_path / 'full' / 'milestones').iterdir())
    assert [m.name for m in ms] == ['tokens_0000004096', 'tokens_0000008192']
    rec = json.loads((ms[1] / 'milestone.json').read_text())
    assert rec['step'] == 8 and rec['tokens_seen'] == 8192
    with safe_open(ms[1] / 'model.safetensors', 'pt') as f: assert f.get_tensor(f.keys()[0]).dtype == torch.float16
    hf = AutoModelForMaskedLM.from_pretrained(ms[1]).eval()
    assert next(hf.parameters()).dtype == torch.float32
    mm = build_lm_memmap(['sample'], tok, 128, cfg.max_tokens)
    ev = masked_eval_set(mm[-cfg.valid_rows:], tok.mask_token_id, len(tok), SPECIAL)
    assert abs(evaluate_mlm(hf, ev, batch_size=8)['mlm_loss'] - rec['mlm_loss']) < 0.02
    # stop a run at step 8 (as Ctrl-C would), then continue it in another folder from its compact resume/ copy
    from pd_nb.learner import Callback
    class StopAt8(Callback):
        def after_step(self, learn):
            if learn.step == 8: learn.stop_signal = 2; learn.stopping = True
    b_cfg = pretrain_config('test', max_steps=14, ckpt_every=100, eval_every=100, dropout=0.0)
    with pytest.raises(KeyboardInterrupt): pretrain(b_cfg, tmp_path / 'b', progress=False, cbs=[StopAt8()])
    resume = tmp_path / 'b' / 'resume'
    assert [p.name for p in resume.glob('step_*')] == ['step_00000008'] and (resume / 'log.jsonl').exists()
    ts = torch.load(resume / 'step_00000008' / 'training_state.pt', weights_only=True)
    assert all(v.dtype == torch.bfloat16 for st in ts['optimizer']['state'].values() for k, v in st.items() if k.startswith('exp_avg'))
    cont = pretrain(b_cfg, tmp_path / 'c', progress=False, resume_from=resume)   # another folder, seeded from resume/
    assert cont['steps'] == 14
    assert abs(cont['final_mlm_loss'] - full['final_mlm_loss']) < 0.02, (cont['final_mlm_loss'], full['final_mlm_loss'])
    logs = [json.loads(l) for l in (tmp_path / 'c' / 'run' / 'log.jsonl').read_text().splitlines()]
    assert logs[0]['step'] == 0 and logs[-1]['step'] == 14                      # the metrics log carried over

def test_a_run_goes_on_from_a_milestone_alone_with_fresh_moments_and_a_rewarmed_rate(tmp_path):
    """`resume_from` a milestone folder (weights only, fp16): the run goes on at the milestone's step with the milestone's
    weights (the logged held-out loss is the milestone's, within fp16 rounding), fresh AdamW moments and the learning rate
    warmed up again over `warmup` steps (checked against the schedule by hand), and ends close to the uninterrupted run.
    A milestone of another size is refused in one line; a second call with the same folder resumes, not restarts."""
    from dataclasses import replace
    from pd_nb.learner import warmup_linear, Callback
    cfg = pretrain_config('test', max_steps=14, ckpt_every=100, eval_every=100, dropout=0.0, milestones=(8 * 1024,))
    full = pretrain(cfg, tmp_path / 'full', progress=False)
    ms = tmp_path / 'full' / 'milestones' / 'tokens_0000008192'
    rec = json.loads((ms / 'milestone.json').read_text())
    seen = {}
    class Probe(Callback):
        def before_fit(self, learn): seen['state'] = len(learn.opt.state); seen['rewarm'] = learn.rewarm_from
        def after_step(self, learn): seen.setdefault('lr', {})[learn.step - 1] = learn.lr_now
    w = pretrain(replace(cfg, milestones=()), tmp_path / 'w', progress=False, resume_from=ms, cbs=[Probe()])
    assert w['steps'] == 14 and seen['state'] == 0 and seen['rewarm'] == 8
    by_hand = {t: 1e-3 * warmup_linear(t, 14, 2) * min(1.0, (t - 8 + 1) / 2) for t in range(8, 14)}
    assert seen['lr'].keys() == by_hand.keys() and all(abs(seen['lr'][t] - by_hand[t]) < 1e-12 for t in by_hand), seen['lr']
    assert seen['lr'][8] < 1e-3 * warmup_linear(8, 14, 2)                   # the first step after the restart: half the rate
    logs = [json.loads(l) for l in (tmp_path / 'w' / 'run' / 'log.jsonl').read_text().splitlines()]
    start = [r for r in logs if 'warm_start_from' in r]
    assert len(start) == 1 and start[0]['step'] == 8 and abs(start[0]['valid_mlm_loss'] - rec['mlm_loss']) < 0.02
    assert logs[0]['step'] == 0 and abs(logs[0]['valid_mlm_loss'] - full['init_mlm_loss']) < 1e-6   # the same initial weights
    assert abs(w['final_mlm_loss'] - full['final_mlm_loss']) < 0.1, (w['final_mlm_loss'], full['final_mlm_loss'])
    again = pretrain(replace(cfg, milestones=(), max_steps=16), tmp_path / 'w', progress=False, resume_from=ms)
    assert again['steps'] == 16
    assert sum('warm_start_from' in json.loads(l) for l in (tmp_path / 'w' / 'run' / 'log.jsonl').read_text().splitlines()) == 1
    with pytest.raises(ValueError, match=r"tokens_0000008192: a milestone of a run with size='tiny', but this run has size='2/128'"):
        pretrain(replace(cfg, size='2/128', milestones=()), tmp_path / 'x', progress=False, resume_from=ms)

def test_dropout_option_reaches_the_model_but_the_saved_config_states_berts(tmp_path):
    """PretrainConfig.dropout is the student's dropout while it pre-trains; the written HF config states BERT's 0.1 either
    way (fine-tuning reads dropout from the checkpoint), and the manifest keeps the pre-training value."""
    seen = {}
    class Probe:
        order = 0
        def __init__(self, name): self.name = name
        def before_fit(self, learn): seen[self.name] = sorted({m.p for m in learn.model.modules() if isinstance(m, torch.nn.Dropout)})
    pretrain(pretrain_config('test', max_steps=1, dropout=0.0, milestones=(1024,)), tmp_path / 'off', progress=False, cbs=[Probe('off')])
    pretrain(pretrain_config('test', max_steps=1), tmp_path / 'on', progress=False, cbs=[Probe('on')])
    assert seen == {'off': [0.0], 'on': [0.1]}
    for f in (tmp_path / 'off' / 'config.json', tmp_path / 'on' / 'config.json', tmp_path / 'off' / 'milestones' / 'tokens_0000001024' / 'config.json'):
        c = json.loads(f.read_text())
        assert c['hidden_dropout_prob'] == c['attention_probs_dropout_prob'] == 0.1, f
    assert json.loads((tmp_path / 'off' / 'manifest.json').read_text())['config']['dropout'] == 0.0

def test_exact_masking_picks_the_same_count_in_every_full_row():
    g = torch.Generator().manual_seed(3)
    x = torch.randint(1000, 30000, (64, 128)); x[:, 0], x[:, -1] = tok.cls_token_id, tok.sep_token_id
    x[:, 50] = tok.sep_token_id                                         # a document boundary inside the row
    x[:4, 90:] = tok.pad_token_id
    y, labels = mask_tokens(x, tok.mask_token_id, len(tok), SPECIAL, generator=g, exact=True, pad_id=tok.pad_token_id)
    n_row = (labels != -100).sum(1)
    assert n_row[:4].tolist() == [round(0.15 * 90)] * 4 and (n_row[4:] == round(0.15 * 128)).all()
    assert not (labels != -100)[torch.isin(x, torch.tensor(SPECIAL))].any()
    picked = labels != -100
    assert abs((y[picked] == tok.mask_token_id).float().mean().item() - 0.8) < 0.03

def test_committed_milestones_load_as_fp32_and_improve_with_tokens():
    "Every committed milestone of the long Tiny run: an HF folder loadable as fp32 masked LM; held-out loss falls as tokens grow."
    from transformers import AutoModelForMaskedLM
    root = Path(__file__).resolve().parents[1] / 'data' / 'checkpoints' / 'tiny_wiki_gutenberg_long'
    ms = sorted(((json.loads((d / 'milestone.json').read_text()), d) for d in root.glob('tokens_*')), key=lambda t: t[0]['tokens_seen'])
    if not ms: pytest.skip('no milestones committed')
    from pd_nb.pretrain import milestone_name
    assert all(d.name == milestone_name(m['milestone_tokens']) and m['tokens_seen'] >= m['milestone_tokens'] for m, d in ms)
    losses = [m['mlm_loss'] for m, _ in ms]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    m, d = ms[-1]
    hf = AutoModelForMaskedLM.from_pretrained(d)
    assert next(hf.parameters()).dtype == torch.float32 and hf.config.num_hidden_layers == 2 and hf.config.hidden_size == 128

def test_cpu_preset_uses_bf16_exactly_when_the_cpu_has_native_bf16():
    from pd_nb.core import cpu_has_bf16
    from pd_nb.pretrain import PRETRAIN_PRESETS
    p = Path('/proc/cpuinfo')
    flags = set()
    if p.exists():
        for line in p.read_text(errors='ignore').splitlines():
            if line.startswith('flags'): flags |= set(line.split(':', 1)[1].split())
    assert cpu_has_bf16() == bool(flags & {'avx512_bf16', 'amx_bf16'})
    assert PRETRAIN_PRESETS['cpu'].precision == ('bf16' if cpu_has_bf16() else 'auto')
    from pd_nb.core import cpu_name, device_info           # what timings and manifests call this CPU
    import os
    name = cpu_name()
    assert f"{os.cpu_count()} cores" in name and device_info('cpu')['cpu'] == name
    assert {f for f in ('avx512_bf16', 'amx_bf16') if f in name} == flags & {'avx512_bf16', 'amx_bf16'}


def test_rows_batch_reads_the_same_rows_as_row_by_row():
    "One fancy index per batch (`__getitems__`) gives the rows the sampler chose, with `rows_batch` and with the default collate."
    import numpy as np, torch
    from torch.utils.data import DataLoader
    from pd_nb.data import Rows, rows_batch
    a = np.random.default_rng(0).integers(0, 30522, (100, 16)).astype(np.uint16)
    class PerRow(Rows): __getitems__ = None
    got = []
    for cls, coll in ((Rows, rows_batch), (Rows, None), (PerRow, None)):
        torch.manual_seed(3)
        b = next(iter(DataLoader(cls(a), batch_size=7, shuffle=True, collate_fn=coll)))['input_ids']
        assert b.shape == (7, 16) and b.dtype == torch.int64
        got.append(sorted(map(tuple, b.tolist())))
    assert got[0] == got[1] == got[2]
    assert all(np.any((a == np.array(r)).all(1)) for r in got[0])           # real rows of the array


def test_mask_cb_static_bound_covers_every_row():
    "MLMMaskCB(static=True) passes a bound the exact-count masking never exceeds; static needs exact masking."
    import types
    from pd_nb.pretrain import MLMMaskCB
    x = torch.randint(1000, 30000, (16, 128)); x[:, 0], x[:, -1] = tok.cls_token_id, tok.sep_token_id; x[:3, 70:] = tok.pad_token_id
    learn = types.SimpleNamespace(batch={'input_ids': x})
    MLMMaskCB(tok.mask_token_id, len(tok), SPECIAL, static=True, pad_id=tok.pad_token_id).before_batch(learn)
    k = learn.batch['max_predictions']
    assert k == 20 and ((learn.batch['labels'] != -100).sum(1) <= k).all()
    learn = types.SimpleNamespace(batch={'input_ids': x})
    MLMMaskCB(tok.mask_token_id, len(tok), SPECIAL).before_batch(learn)
    assert 'max_predictions' not in learn.batch                            # CPU default: the fused head
    with pytest.raises(ValueError, match='exact=True'): MLMMaskCB(tok.mask_token_id, len(tok), SPECIAL, exact=False, static=True)
