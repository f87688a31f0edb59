"""Tests of pd_nb.learner: optimiser groups, schedule, data order, the loop against a hand-written one,
callbacks, checkpoint contents and safety, exact resume after SIGKILL / SIGTERM, and DDP (gloo, 2 processes)."""
import os, pickle, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import learner_toy as toy
from pd_nb.core import load_json, set_seed
from pd_nb.learner import (Callback, CancelFitException, CancelStepException, CheckpointCB, DataLoaders, Learner,
                           ResumableSampler, adamw, latest_checkpoint, param_groups, read_log, warmup_linear)
from torch.utils.data import DataLoader

SCRIPT = Path(__file__).parent / 'learner_toy.py'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONUNBUFFERED': '1'}


def weights(path) -> dict: return load_file(str(Path(path) / 'model.safetensors'))
def max_diff(a: dict, b: dict) -> float: return max((a[k].float() - b[k].float()).abs().max().item() for k in a)
def curve(run_dir) -> list: return [(r['step'], round(r['loss'], 6)) for r in read_log(run_dir) if 'loss' in r]


# ---------------------------------------------------------------- optimiser and schedule

def test_param_groups_decay_matrices_only():
    m = toy.BagOfTokens()
    names = {id(p): n for n, p in m.named_parameters()}
    decay, no_decay = param_groups(m, wd=0.01)
    assert {names[id(p)] for p in decay['params']} == {'emb.weight', 'head.weight'} and decay['weight_decay'] == 0.01
    assert {names[id(p)] for p in no_decay['params']} == {'norm.weight', 'norm.bias', 'head.bias'} and no_decay['weight_decay'] == 0
    opt = adamw(param_groups(m), lr=1e-3)
    assert opt.defaults['eps'] == 1e-6 and opt.defaults['fused']           # the fused kernel on the CPU too


def test_fused_adamw_steps_like_the_reference_loop():
    "Three steps of `adamw` (fused) = three steps of torch's per-parameter AdamW with the same groups and settings."
    import copy
    torch.manual_seed(0)
    a = toy.BagOfTokens(); b = copy.deepcopy(a)
    oa = adamw(param_groups(a), lr=1e-2)
    ob = torch.optim.AdamW(param_groups(b), lr=1e-2, betas=(0.9, 0.999), eps=1e-6, foreach=False)
    for _ in range(3):
        g = [torch.randn_like(p) for p in a.parameters()]
        for m, o in ((a, oa), (b, ob)):
            for p, gi in zip(m.parameters(), g): p.grad = gi.clone()
            o.step()
    for pa, pb in zip(a.parameters(), b.parameters()): assert torch.allclose(pa, pb, atol=1e-6)


def test_warmup_linear_hand_values():
    # total 10, warmup 2: (s+1)/2 while warming up, then (10 - s)/8
    assert [warmup_linear(s, 10, 2) for s in range(10)] == [0.5, 1, 1, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8]
    assert [warmup_linear(s, 4, 0) for s in range(4)] == [1, 0.75, 0.5, 0.25]
    assert warmup_linear(10, 10, 2) == 0.0


# ---------------------------------------------------------------- data order

def test_resumable_sampler():
    s = ResumableSampler(50, seed=3)
    e0 = list(s)
    assert e0 == np.random.default_rng([3, 0]).permutation(50).tolist()
    s.set_epoch(0, start=20); assert list(s) == e0[20:] and len(s) == 30
    s.set_epoch(1); e1 = list(s); assert sorted(e1) == list(range(50)) and e1 != e0
    # two ranks with batch 4 == one process with batch 8, batch by batch; 50 is padded to 2 x 25
    ranks = [ResumableSampler(50, seed=3, rank=r, world_size=2) for r in range(2)]
    r0, r1 = list(ranks[0]), list(ranks[1])
    assert len(r0) == len(r1) == 25 and set(r0 + r1) == set(range(50))
    for j in range(6): assert sorted(r0[4 * j:4 * j + 4] + r1[4 * j:4 * j + 4]) == sorted(e0[8 * j:8 * j + 8])
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- the loop

def test_learner_matches_hand_written_loop():
    "Same data order, AdamW groups, schedule and clipping written out by hand: same weights and losses."
    steps, bs, lr, warm = 12, 16, 1e-2, 3
    learn = toy.make_learner(bs=bs, accum=1, dropout=0.0, warmup=warm, clip=0.5, lr=lr)
    learn.fit(max_steps=steps)

    set_seed(0); m = toy.BagOfTokens(dropout=0.0)
    data = toy.toy_data(toy.N_TRAIN, 0)
    dec = [p for n, p in m.named_parameters() if n in ('emb.weight', 'head.weight')]
    opt = torch.optim.AdamW([{'params': dec, 'weight_decay': 0.01},
                             {'params': [p for p in m.parameters() if all(p is not q for q in dec)], 'weight_decay': 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-6)
    order = np.random.default_rng([0, 0]).permutation(toy.N_TRAIN)
    losses = []
    for s in range(steps):
        idx = torch.as_tensor(order[s * bs:(s + 1) * bs])
        loss = m(**{k: v[idx] for k, v in data.items()}).loss
        loss.backward()
        for g in opt.param_groups: g['lr'] = lr * min((s + 1) / warm, (steps - s) / (steps - warm), 1.0)
        torch.nn.utils.clip_grad_norm_(m.parameters(), 0.5)
        opt.step(); opt.zero_grad(); losses.append(loss.item())
    for (n, p), q in zip(m.named_parameters(), learn.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6), (n, (p - q).abs().max().item())
    assert np.allclose([r['loss'] for r in learn.history], losses, atol=1e-6)


def test_grad_accumulation_equals_big_batch():
    a = toy.make_learner(bs=32, accum=1, dropout=0.0); a.fit(max_steps=10)
    b = toy.make_learner(bs=16, accum=2, dropout=0.0); b.fit(max_steps=10)
    diff = max((p - q).abs().max().item() for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert diff < 1e-5, diff
    assert np.allclose([r['loss'] for r in a.history], [r['loss'] for r in b.history], atol=1e-6)


def test_extra_batch_keys_go_to_the_loss_only():
    "A distillation-style batch: `teacher_probs` reaches loss_func, not the model (whose forward would reject it)."
    class WithTeacher(toy.DictDataset):
        def __getitem__(self, i):
            r = super().__getitem__(i); r['teacher_probs'] = torch.tensor([0.7, 0.3]); return r
    seen = []
    def soft_ce(pred, batch):
        seen.append(sorted(batch))
        return -(batch['teacher_probs'] * pred.logits.log_softmax(-1)).sum(-1).mean()
    set_seed(0)
    learn = Learner(toy.BagOfTokens(dropout=0.0), toy.toy_dls(8, WithTeacher(toy.toy_data(64, 0))), loss_func=soft_ce,
                    lr=1e-3, log_every=1, progress=False)
    set_seed(0); ref = toy.BagOfTokens(dropout=0.0)                 # the same initial weights
    learn.fit(max_steps=1)
    first = torch.as_tensor(np.random.default_rng([0, 0]).permutation(64)[:8])
    b = toy.toy_data(64, 0)
    expected = -(torch.tensor([0.7, 0.3]) * ref(b['input_ids'][first], b['attention_mask'][first]).logits.log_softmax(-1)).sum(-1).mean()
    assert seen[0] == ['attention_mask', 'input_ids', 'labels', 'teacher_probs']
    assert abs(learn.history[0]['loss'] - expected.item()) < 1e-6


def test_missing_loss_is_a_clear_error():
    ds = toy.DictDataset({k: v for k, v in toy.toy_data(32, 0).items() if k != 'labels'})
    learn = Learner(toy.BagOfTokens(), DataLoaders(DataLoader(ds, batch_size=8)), progress=False)
    with pytest.raises(ValueError, match='labels'): learn.fit(max_steps=1)


def test_callback_events_and_cancel():
    class Record(Callback):
        def __init__(self): self.events = []
        def __getattr__(self, name):
            if name.startswith(('before_', 'after_', 'cleanup_')): return lambda learn: self.events.append(name)
            raise AttributeError(name)
    rec = Record()
    learn = toy.make_learner(bs=16, accum=2)
    learn.fit(max_steps=1, cbs=[rec])
    batch = ['before_batch', 'after_pred', 'after_loss']
    assert rec.events == ['before_fit', 'before_epoch', *batch, 'after_batch', 'cleanup_batch',
                          *batch, 'before_step', 'after_step', 'cleanup_step', 'after_batch', 'cleanup_batch',
                          'after_epoch', 'cleanup_epoch', 'after_fit', 'cleanup_fit']

    class SkipFirstStep(Callback):
        def before_step(self, learn):
            if not hasattr(self, 'w0'): self.w0 = [p.detach().clone() for p in learn.model.parameters()]; raise CancelStepException()
        def cleanup_step(self, learn):
            if not hasattr(self, 'unchanged'): self.unchanged = all(torch.equal(p, q) for p, q in zip(self.w0, learn.model.parameters()))
    class StopAt3(Callback):
        def after_step(self, learn):
            if learn.step == 3: raise CancelFitException()
    learn, skip = toy.make_learner(bs=16, accum=1), SkipFirstStep()
    learn.fit(max_steps=1, cbs=[skip])                              # the first step is skipped: one more batch
    assert skip.unchanged and learn.step == 1 and learn.iter == 2
    rec = Record()
    learn.fit(max_steps=10, cbs=[StopAt3(), rec])
    assert learn.step == 3 and 'after_fit' not in rec.events and rec.events[-1] == 'cleanup_fit'


# ---------------------------------------------------------------- checkpoints

def test_checkpoint_contents_unwrapped_and_atomic(tmp_path):
    learn = toy.make_learner(tmp_path / 'run', compile=True)       # compiled lazily: no forward, no compile cost
    assert type(learn.fwd_model).__name__ == 'OptimizedModule'
    learn.fit(max_steps=0)                                          # CheckpointCB saves step 0 at the end
    ck = latest_checkpoint(tmp_path / 'run')
    assert ck.name == 'step_00000000' and sorted(p.name for p in ck.iterdir()) == ['model.safetensors', 'state.json', 'training_state.pt']
    assert sorted(weights(ck)) == sorted(learn.model.state_dict())  # no '_orig_mod.' prefix
    ts = torch.load(ck / 'training_state.pt', weights_only=True)
    assert set(ts) == {'optimizer', 'rng'} and len(ts['rng']) == 1
    st = load_json(ck / 'state.json')
    assert (st['step'], st['epoch'], st['iter'], st['world_size']) == (0, 0, 0, 1)
    # a folder left by a kill during a save is not a checkpoint; only the last `keep` are kept
    (ck.parent / '.tmp-step_00000099-1').mkdir()
    assert latest_checkpoint(tmp_path / 'run') == ck
    learn = toy.make_learner(tmp_path / 'run', ckpt_every=2)
    learn.fit(max_steps=7)
    assert [p.name for p in sorted((tmp_path / 'run' / 'checkpoints').glob('step_*'))] == ['step_00000006', 'step_00000007']


class _Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (Path.touch, (self.marker,))


def test_loading_never_unpickles_objects(tmp_path):
    learn = toy.make_learner(tmp_path / 'run'); learn.fit(max_steps=1)
    ck, marker = latest_checkpoint(tmp_path / 'run'), tmp_path / 'pwned'
    torch.save({'optimizer': _Evil(marker), 'rng': []}, ck / 'training_state.pt')
    with pytest.raises(pickle.UnpicklingError): toy.make_learner(tmp_path / 'run').load_checkpoint()
    assert not marker.exists()


# ---------------------------------------------------------------- exact resume (subprocesses)

STEPS = 48  # 3 epochs of 16 steps (512 rows, micro-batches of 16, grad_accum 2); checkpoints every 5 steps


def _run(run_dir, *args, wait=True):
    p = subprocess.Popen([sys.executable, str(SCRIPT), '--run-dir', str(run_dir), '--steps', str(STEPS), *args],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait: return p
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-3000:]
    return out


def _wait_until(p, cond, what, timeout=60):
    t0 = time.time()
    while not cond():
        assert p.poll() is None, f"the run ended before {what}: {p.communicate()[1][-2000:]}"
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)


def _logged_step(run_dir): return max((r['step'] for r in read_log(run_dir)), default=0)
def _ckpt_step(run_dir): c = latest_checkpoint(run_dir); return int(c.name[5:]) if c else -1


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    "The uninterrupted run."
    d = tmp_path_factory.mktemp('ref') / 'run'
    _run(d)
    return d


def _check_same_as_reference(ref, run, resumed_from):
    a, b = weights(ref / 'checkpoints' / f'step_{STEPS:08d}'), weights(run / 'checkpoints' / f'step_{STEPS:08d}')
    diff = max_diff(a, b)
    print(f"resumed from step {resumed_from}: max |weight diff| vs uninterrupted = {diff}")
    assert all(torch.equal(a[k], b[k]) for k in a), f"max |weight diff| {diff}"
    assert curve(ref) == curve(run), f"loss curves differ:\nref    {curve(ref)}\nresumed {curve(run)}"


def test_resume_after_sigkill_is_bit_identical(reference_run, tmp_path):
    run = tmp_path / 'run'
    p = _run(run, '--sleep', '0.05', wait=False)
    # kill it once a checkpoint beyond the first epoch exists and it has trained 3 more steps past it
    _wait_until(p, lambda: _ckpt_step(run) >= 20 and _logged_step(run) >= _ckpt_step(run) + 3, 'a checkpoint at step >= 20')
    p.send_signal(signal.SIGKILL); p.communicate()
    killed_at, ck = _logged_step(run), _ckpt_step(run)
    assert p.returncode == -signal.SIGKILL and ck < killed_at < STEPS, (ck, killed_at)
    print(f"SIGKILL at step {killed_at}, last checkpoint step {ck}")
    out = _run(run, '--resume')
    assert f'step {ck},' in out and f'done at step {STEPS}' in out, out
    _check_same_as_reference(reference_run, run, ck)


def test_sigterm_checkpoints_the_current_step_and_resumes(reference_run, tmp_path):
    run = tmp_path / 'run'
    p = _run(run, '--sleep', '0.05', wait=False)
    _wait_until(p, lambda: _logged_step(run) >= 12, 'step 12')
    p.send_signal(signal.SIGTERM); out, err = p.communicate(timeout=60)
    stopped = _logged_step(run)
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert _ckpt_step(run) == stopped and 12 <= stopped < STEPS     # saved the step it stopped at
    out = _run(run, '--resume')
    assert f'step {stopped},' in out, out
    _check_same_as_reference(reference_run, run, stopped)


# ---------------------------------------------------------------- DDP on CPU (gloo)

def test_ddp_two_processes_match_one_process(tmp_path):
    steps = 16
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(SCRIPT),
           '--run-dir', str(tmp_path / 'ddp'), '--steps', str(steps), '--bs', '8', '--accum', '1', '--dropout', '0', '--dump-rng']
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-4000:]
    one = toy.make_learner(tmp_path / 'one', bs=16, accum=1, dropout=0.0)
    one.fit(max_steps=steps)
    c2, c1 = curve(tmp_path / 'ddp'), curve(tmp_path / 'one')
    msg = "loss curves (step, loss):\n2 procs x 8: " + str(c2) + "\n1 proc x 16: " + str(c1)
    print(msg)
    assert [s for s, _ in c2] == [s for s, _ in c1] == list(range(1, steps + 1)), msg
    assert np.allclose([l for _, l in c2], [l for _, l in c1], atol=1e-5), msg
    w2, w1 = weights(tmp_path / 'ddp' / 'checkpoints' / f'step_{steps:08d}'), weights(tmp_path / 'one' / 'checkpoints' / f'step_{steps:08d}')
    assert sorted(w2) == sorted(w1) == sorted(one.model.state_dict())  # no 'module.' prefix
    diff = max_diff(w1, w2)
    print(f"DDP vs one process: max |weight diff| = {diff}")
    assert diff < 1e-5, diff
    st = load_json(tmp_path / 'ddp' / 'checkpoints' / f'step_{steps:08d}' / 'state.json')
    assert st['world_size'] == 2 and len(torch.load(tmp_path / 'ddp' / 'checkpoints' / f'step_{steps:08d}' / 'training_state.pt',
                                                    weights_only=True)['rng']) == 2
    r0, r1 = (torch.load(tmp_path / 'ddp' / f'rng_rank{r}.pt') for r in (0, 1))
    assert not torch.equal(r0, r1)                     # each rank draws its own dropout and masks

def test_count_items_counts_tokens_of_unpadded_rows_and_items_otherwise():
    from pd_nb.learner import count_items
    assert count_items({'input_ids': torch.zeros(4, 16, dtype=torch.long)}) == (64, 'tokens')
    assert count_items({'input_ids': torch.zeros(4, 16, dtype=torch.long), 'attention_mask': torch.ones(4, 16)[:, :10]}) == (40, 'tokens')
    assert count_items({'x': torch.zeros(5, 3)}) == (5, 'items')

def test_reuse_freed_memory_is_accepted_by_glibc():
    import sys
    from pd_nb.learner import reuse_freed_memory
    assert reuse_freed_memory() == sys.platform.startswith('linux')

def test_plot_log_draws_every_logged_validation_metric(tmp_path):
    import json as _json
    import matplotlib; matplotlib.use('Agg')
    from pd_nb.learner import plot_log
    recs = [{'step': 1, 'loss': 3.0, 'lr': 1e-3}, {'step': 2, 'loss': 2.5, 'lr': 1e-3},
            {'step': 2, 'valid_mlm_loss': 2.7, 'valid_mlm_accuracy': 0.1}, {'step': 2, 'valid_loss': 2.8}]
    (tmp_path / 'log.jsonl').write_text(''.join(_json.dumps(r) + '\n' for r in recs))
    fig = plot_log(tmp_path)
    labels = {l.get_label() for ax in fig.axes for l in ax.get_lines()}
    assert {'train loss', 'valid_mlm_loss', 'valid_loss', 'valid_mlm_accuracy'} <= labels


def test_batch_outputs_do_not_outlive_the_batch():
    "Callbacks see `pred` and `loss` during the batch; between batches the Learner holds neither (no logits kept into the next forward)."
    seen = []
    class Probe:
        order = 50
        def after_batch(self, learn): seen.append(learn.pred is not None and learn.loss is not None)
        def before_batch(self, learn): seen.append(learn.pred is None and learn.loss is None)
    learn = toy.make_learner(None, bs=16, accum=1)
    learn.fit(max_steps=3, cbs=[Probe()])
    assert seen == [True] * 6 and learn.pred is None
