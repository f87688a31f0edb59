"""bench/bench_mlm.py's model-FLOP formula against torch's own FLOP counter on pd_nb's masked-LM training step."""
import sys
from pathlib import Path
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench'))
from bench_mlm import flops_per_token
from pd_nb.core import student_config
from pd_nb.bert import BertForMaskedLM


@pytest.mark.parametrize('size', ['tiny', 'mini'])
def test_model_flops_formula_counts_what_the_training_step_multiplies(size):
    "Exact-count masking (19 of 128 per row): the formula at f = 19/128 equals the matmul FLOPs of forward + backward."
    cfg = student_config(size, dropout=0.0, attn_dropout=0.0)
    torch.manual_seed(0)
    m = BertForMaskedLM(cfg)
    B, T = 2, 128
    ids = torch.randint(1000, 30000, (B, T)); y = torch.full_like(ids, -100)
    for b in range(B):
        idx = torch.randperm(T)[:19]; y[b, idx] = ids[b, idx]
    with FlopCounterMode(display=False) as fc:
        m(ids, labels=y).loss.backward()
    assert fc.get_total_flops() / (B * T) == pytest.approx(flops_per_token(cfg, T, 19 / 128), rel=1e-9)
    # and the dense alternative (head and top layer at every position) is what f = 1 counts
    with FlopCounterMode(display=False) as fc:
        h = m.bert.embeddings(ids)
        for layer in m.bert.layers: h = layer(h)                    # every layer at every position (no pooler)
        torch.nn.functional.linear(m.mlm.states(h), m.bert.embeddings.word.weight, m.mlm.bias).float().logsumexp(-1).sum().backward()
    assert fc.get_total_flops() / (B * T) == pytest.approx(flops_per_token(cfg, T, 1.0), rel=1e-9)
