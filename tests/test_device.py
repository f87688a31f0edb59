"""Checks that only mean something on the accelerator: run on CUDA by `bench/device_check.sh`, skipped elsewhere;
`PD_NB_TEST_DEVICE=cpu` (the script's --smoke mode, in CI) runs the same code on CPU."""
import os, signal
import pytest, torch, transformers
from pd_nb.core import BertConfig, set_seed
from pd_nb.bert import BertForMaskedLM
from pd_nb.hub import to_hf_config, load_hf_state_dict, from_hf
from pd_nb.pretrain import pretrain, pretrain_config, mask_tokens

DEVICE = os.environ.get('PD_NB_TEST_DEVICE') or ('cuda' if torch.cuda.is_available() else None)
pytestmark = pytest.mark.skipif(DEVICE is None, reason='no CUDA device (PD_NB_TEST_DEVICE=cpu runs these on CPU)')
transformers.logging.set_verbosity_error()

def test_bf16_parity_with_hf_on_device():
    "Our MLM and HF's, same weights, bf16 autocast on the device: the same logits within bf16 rounding, and the same loss."
    cfg = BertConfig(n_layers=4, hidden=256, n_heads=4)
    conf = to_hf_config(cfg); conf._attn_implementation = 'sdpa'
    set_seed(0); hf = transformers.BertForMaskedLM(conf).eval().to(DEVICE)
    ours = BertForMaskedLM(cfg); load_hf_state_dict(ours, hf.state_dict(), allow_new=('bert.pooler.',)); ours = ours.eval().to(DEVICE)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, cfg.vocab_size, (8, 128), generator=g)
    am = torch.ones_like(ids); am[1, 70:] = 0; ids = ids.masked_fill(am == 0, 0)
    x, y = mask_tokens(ids, 103, cfg.vocab_size, [0, 101, 102, 103], generator=g)
    x, y, am = x.to(DEVICE), y.to(DEVICE), am.to(DEVICE)
    with torch.no_grad(), torch.autocast(torch.device(DEVICE).type, dtype=torch.bfloat16):
        h, o = hf(input_ids=x, attention_mask=am, labels=y), ours(x, am, labels=y)
        dense = ours(x, am).logits
    sel, real = y != -100, am.bool()
    scale = h.logits[real].float().abs().max()
    assert (h.logits[real].float() - dense[real].float()).abs().max() <= 0.05 * scale      # bf16: ~3 significant digits
    assert abs(h.loss.float() - o.loss.float()) <= 0.02 * h.loss.float()

from learner_toy import StopAt          # stop as SIGTERM would, after step n

def test_pretraining_resumes_on_device(tmp_path, monkeypatch):
    "Stopped at step 3 and resumed, pre-training ends where the uninterrupted run does (RNG of the device restored)."
    monkeypatch.setenv('PD_NB_CACHE', str(tmp_path / 'cache'))
    if DEVICE == 'cuda':
        monkeypatch.setenv('CUBLAS_WORKSPACE_CONFIG', ':4096:8'); torch.use_deterministic_algorithms(True, warn_only=True)
    cfg = pretrain_config('test', max_steps=6, ckpt_every=3, eval_every=100, precision='fp32')
    pretrain(cfg, tmp_path / 'a', progress=False)
    with pytest.raises((SystemExit, KeyboardInterrupt)): pretrain(cfg, tmp_path / 'b', progress=False, cbs=[StopAt(3)])
    pretrain(cfg, tmp_path / 'b', progress=False, resume=True)
    wa, wb = from_hf(tmp_path / 'a').state_dict(), from_hf(tmp_path / 'b').state_dict()
    diff = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    assert diff <= (0 if DEVICE == 'cpu' else 1e-6), diff     # CUDA: atomics in the embedding backward may reorder sums
