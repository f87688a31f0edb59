"""The global batch is split over processes the same way in every stage (issue 13: `distill` did not divide by the
world size). `per_process_batch` against hand-worked values; then `finetune` and `distill` run with `WORLD_SIZE` set
and a stand-in Learner that records the training loader's batches, so the per-process batch each stage builds is
measured from the batches themselves."""
import numpy as np
import pytest
from pd_nb.core import per_process_batch
import pd_nb.finetune as ft
import pd_nb.distill as ds
from pd_nb.distill import DistillConfig, init_student


@pytest.mark.parametrize('batch,accum,world,want', [(32, 1, 1, 32), (32, 1, 4, 8), (256, 2, 8, 16), (48, 3, 2, 8), (1, 1, 1, 1)])
def test_per_process_batch_hand_values(batch, accum, world, want):
    assert per_process_batch(batch, accum, world_size=world) == want == batch / (accum * world)


@pytest.mark.parametrize('batch,accum,world', [(32, 3, 1), (30, 1, 4), (4, 1, 8), (0, 1, 1)])
def test_per_process_batch_refuses_inexact_splits(batch, accum, world):
    with pytest.raises(ValueError, match=f"batch_size={batch} is not divisible by world size {world} x grad_accum {accum}"):
        per_process_batch(batch, accum, world_size=world)


def test_world_size_from_env(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '4'); assert per_process_batch(32) == 8
    monkeypatch.delenv('WORLD_SIZE'); assert per_process_batch(32) == 32


class _Stop(Exception): pass

def _recording_learner(seen):
    def fake(model, dls, *args, **kwargs):
        seen.extend(len(b['input_ids']) for b in dls.train); raise _Stop
    return fake

SENTS = [f'sentence number {i} is fine .' for i in range(32)]
NAMES = ['negative', 'positive']


@pytest.mark.parametrize('world', [1, 2, 4])
def test_distill_divides_the_global_batch(monkeypatch, world):
    seen = []
    monkeypatch.setenv('WORLD_SIZE', str(world)); monkeypatch.setattr(ds, 'Learner', _recording_learner(seen))
    student = init_student('random', (2, 64), label_names=NAMES, n_heads=1, ffn=128, max_positions=64)
    probs = np.tile(np.array([[0.3, 0.7]], np.float32), (len(SENTS), 1))
    dev = {'text_a': SENTS[:8], 'label': [0, 1] * 4}
    with pytest.raises(_Stop):
        ds.distill(student, probs, SENTS, 'sst2', DistillConfig(batch_size=16, max_steps=2, max_len=32), dev=dev, progress=False)
    assert max(seen) == 16 // world and sum(seen) == len(SENTS)


@pytest.mark.parametrize('world,accum', [(1, 1), (2, 1), (2, 2)])
def test_finetune_divides_the_global_batch(monkeypatch, world, accum):
    seen = []
    monkeypatch.setenv('WORLD_SIZE', str(world)); monkeypatch.setattr(ft, 'Learner', _recording_learner(seen))
    student = init_student('random', (2, 64), label_names=NAMES, n_heads=1, ffn=128, max_positions=64)
    data = {'text_a': SENTS, 'label': [0, 1] * 16}
    with pytest.raises(_Stop):
        ft.finetune(student, 'sst2', ft.FinetuneConfig(batch_size=16, grad_accum=accum, max_steps=2, max_len=32), None,
                    train=data, dev=data, progress=False)
    assert max(seen) == 16 // (world * accum) and sum(seen) == len(SENTS)
