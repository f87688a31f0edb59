"""A toy training run of `pd_nb.learner`, shared by tests/test_learner.py and run by it as a script
(plain `python` for the kill/resume tests, `torchrun --nproc_per_node 2` for the DDP test).

    python tests/learner_toy.py --run-dir RUN [--steps 48] [--bs 16] [--accum 2] [--dropout 0.1]
                                [--ckpt-every 5] [--sleep 0.05] [--resume] [--dump-rng]
"""
import argparse, signal, time
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from pd_nb.core import set_seed
from pd_nb.learner import Callback, CheckpointCB, DataLoaders, EvalCB, Learner

VOCAB, SEQ, N_TRAIN, N_VALID = 64, 16, 512, 128


def toy_data(n: int, seed: int) -> dict:
    "Padded token sequences; label 1 when more than half of the real tokens are 'small' ids (< 32)."
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, SEQ), generator=g)
    mask = (torch.arange(SEQ) < torch.randint(4, SEQ + 1, (n, 1), generator=g)).long()
    ids = ids * mask
    small = ((ids > 0) & (ids < VOCAB // 2)).sum(1)
    return {'input_ids': ids, 'attention_mask': mask, 'labels': (2 * small > mask.sum(1)).long()}


class DictDataset(Dataset):
    def __init__(self, d): self.d = d
    def __len__(self): return len(next(iter(self.d.values())))
    def __getitem__(self, i): return {k: v[i] for k, v in self.d.items()}


@dataclass
class Output:
    logits: torch.Tensor
    loss: torch.Tensor | None = None


class BagOfTokens(nn.Module):
    "Mean of token embeddings -> dropout -> LayerNorm -> linear; HF-style output (logits, loss with labels)."
    def __init__(self, dim=32, n_labels=2, dropout=0.1):
        super().__init__()
        self.emb, self.drop = nn.Embedding(VOCAB, dim, padding_idx=0), nn.Dropout(dropout)
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, n_labels)

    def forward(self, input_ids, attention_mask, labels=None):
        m = attention_mask.unsqueeze(-1).float()
        logits = self.head(self.norm(self.drop((self.emb(input_ids) * m).sum(1) / m.sum(1))))
        return Output(logits, F.cross_entropy(logits, labels) if labels is not None else None)


def toy_dls(bs: int, train=None) -> DataLoaders:
    return DataLoaders(DataLoader(train or DictDataset(toy_data(N_TRAIN, 0)), batch_size=bs, shuffle=True),
                       DataLoader(DictDataset(toy_data(N_VALID, 1)), batch_size=64))


class StopAt(Callback):
    "Ask the Learner to stop (as SIGTERM would) after optimiser step `n` (shared by the resume tests)."
    order = 30
    def __init__(self, n): self.n = n
    def after_step(self, learn):
        if learn.step == self.n: learn.stop_signal = signal.SIGTERM


class Sleep(Callback):
    "Slow each step down, so that a test can kill the run in the middle."
    def __init__(self, secs): self.secs = secs
    def after_step(self, learn): time.sleep(self.secs)


def make_learner(run_dir=None, bs=16, accum=2, dropout=0.1, ckpt_every=5, **kw) -> Learner:
    set_seed(0)
    cbs = [CheckpointCB(every=ckpt_every, keep=2), EvalCB(every=10)] if run_dir else []
    kw = {'lr': 1e-2, 'warmup': 0.1, 'log_every': 1, 'progress': False, **kw}
    return Learner(BagOfTokens(dropout=dropout), toy_dls(bs), grad_accum=accum, run_dir=run_dir, cbs=cbs, **kw)


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('--run-dir', required=True)
    p.add_argument('--steps', type=int, default=48)
    p.add_argument('--bs', type=int, default=16)
    p.add_argument('--accum', type=int, default=2)
    p.add_argument('--dropout', type=float, default=0.1)
    p.add_argument('--ckpt-every', type=int, default=5)
    p.add_argument('--sleep', type=float, default=0.0)
    p.add_argument('--resume', action='store_true')
    p.add_argument('--dump-rng', action='store_true', help='write the first draws of torch.rand after the Learner is built')
    a = p.parse_args()
    torch.set_num_threads(1)
    learn = make_learner(a.run_dir, a.bs, a.accum, a.dropout, a.ckpt_every)
    if a.dump_rng:
        from pathlib import Path
        Path(a.run_dir).mkdir(parents=True, exist_ok=True); torch.save(torch.rand(8), Path(a.run_dir) / f'rng_rank{learn.rank}.pt')
    learn.fit(max_steps=a.steps, resume=a.resume, cbs=[Sleep(a.sleep)] if a.sleep else [])
    if learn.rank == 0: print(f'done at step {learn.step}', flush=True)
