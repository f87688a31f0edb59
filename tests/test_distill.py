"""pd_nb.distill: the soft cross-entropy against hand-worked values, the KL gradient and its closed form,
temperature / T² / hard-label mixing, the four student initialisations (copied tensors equal the source,
the others differ), and `distill`: a run end to end and its refusals."""
import math
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from pd_nb.core import BertConfig, set_seed, load_json
from pd_nb.bert import BertModel, BertForMaskedLM, BertForSequenceClassification
from pd_nb.hub import save_hf, from_hf
from pd_nb.data import DataError, get_tokenizer
from pd_nb.classifier import tokenize_examples, LabelMismatchError, checkpoint_label_names
from pd_nb.distill import soft_cross_entropy, distill_loss, init_student, distill, DistillConfig, check_teacher_probs

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

SMALL = dict(n_heads=1, ffn=128, max_positions=64)
NAMES = ['negative', 'positive']

class Pred:
    def __init__(self, logits): self.logits = logits

# --- the loss -------------------------------------------------------------------------------------

def test_hand_worked_two_classes():
    # student logits (0, ln 3): P = (1/4, 3/4). Teacher (1/2, 1/2): L = -(1/2 ln 1/4 + 1/2 ln 3/4) = 1/2 ln(16/3)
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert soft_cross_entropy(z, torch.tensor([[0.5, 0.5]])).item() == pytest.approx(0.5 * math.log(16 / 3), abs=1e-6)
    # teacher one-hot (0, 1): L = -ln 3/4; teacher (0.2, 0.8): -(0.2 ln 1/4 + 0.8 ln 3/4)
    assert soft_cross_entropy(z, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-math.log(0.75), abs=1e-6)
    two = soft_cross_entropy(torch.cat([z, z]), torch.tensor([[0.5, 0.5], [0.2, 0.8]]))
    assert two.item() == pytest.approx((0.5 * math.log(16 / 3) - 0.2 * math.log(0.25) - 0.8 * math.log(0.75)) / 2, abs=1e-6)

def test_hand_worked_temperature():
    # T = 2: student softmax((0, ln 3)/2) = (1, √3)/(1+√3); teacher (0.1, 0.9) re-tempered: (√0.1, √0.9)/(√0.1+√0.9)
    z, p = torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.1, 0.9]])
    q = np.array([1, math.sqrt(3)]) / (1 + math.sqrt(3))
    pt = np.array([math.sqrt(0.1), math.sqrt(0.9)]) / (math.sqrt(0.1) + math.sqrt(0.9))
    want = -(pt * np.log(q)).sum()
    assert soft_cross_entropy(z, p, temperature=2.0).item() == pytest.approx(want, abs=1e-6)
    assert soft_cross_entropy(z, p, temperature=2.0, t2_scale=True).item() == pytest.approx(4 * want, abs=1e-5)
    assert soft_cross_entropy(z, p, temperature=1.0, t2_scale=True).item() == pytest.approx(soft_cross_entropy(z, p).item())

def test_retempering_equals_teacher_logits_at_T():
    torch.manual_seed(0)
    zt, zs = torch.randn(5, 4) * 3, torch.randn(5, 4)
    T = 3.0
    ref = -(torch.softmax(zt / T, -1) * F.log_softmax(zs / T, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(zs, torch.softmax(zt, -1), T), ref, atol=1e-5)

@pytest.mark.parametrize('T', [1.0, 2.0, 5.0])
def test_gradient_is_kl_gradient_and_closed_form(T):
    torch.manual_seed(1)
    z = torch.randn(6, 3, requires_grad=True)
    p = torch.softmax(torch.randn(6, 3), -1)
    g, = torch.autograd.grad(soft_cross_entropy(z, p, T), z)
    pT = torch.softmax(torch.log(p) / T, -1)
    g_kl, = torch.autograd.grad(F.kl_div(F.log_softmax(z / T, -1), pT, reduction='batchmean'), z)
    assert torch.allclose(g, g_kl, atol=1e-6)
    assert torch.allclose(g, (torch.softmax(z / T, -1) - pT) / (T * len(z)), atol=1e-6)
    g2, = torch.autograd.grad(soft_cross_entropy(z, p, T, t2_scale=True), z)
    assert torch.allclose(g2, g * T * T, atol=1e-6)

def test_loss_equals_kl_plus_teacher_entropy():
    torch.manual_seed(2)
    z, p = torch.randn(4, 3), torch.softmax(torch.randn(4, 3), -1)
    kl = F.kl_div(F.log_softmax(z, -1), p, reduction='batchmean')
    H = -(p * p.log()).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(z, p), kl + H, atol=1e-6)

def test_stable_for_large_logits_and_zero_probs():
    z, p = torch.tensor([[300.0, 0.0, -300.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    assert soft_cross_entropy(z, p).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(soft_cross_entropy(z, torch.tensor([[0.0, 0.5, 0.5]]), temperature=2.0))

def test_alpha_mixing():
    torch.manual_seed(3)
    z, p, y = torch.randn(5, 3), torch.softmax(torch.randn(5, 3), -1), torch.tensor([0, 2, 1, 1, 0])
    batch = {'teacher_probs': p, 'labels': y}
    soft, ce = soft_cross_entropy(z, p, 2.0, True), F.cross_entropy(z, y)
    assert torch.allclose(distill_loss(Pred(z), batch, 2.0, True, alpha=0.3), 0.7 * soft + 0.3 * ce, atol=1e-6)
    assert torch.allclose(distill_loss(Pred(z), batch), soft_cross_entropy(z, p))
    assert torch.allclose(distill_loss(Pred(z), batch, alpha=1.0), ce)
    with pytest.raises(KeyError, match="no 'labels'"): distill_loss(Pred(z), {'teacher_probs': p}, alpha=0.5)
    with pytest.raises(KeyError, match='teacher_probs'): distill_loss(Pred(z), {'labels': y})
    with pytest.raises(ValueError, match='shape'): soft_cross_entropy(z, p[:, :2])

# --- initialisation -------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def deep_dir(tmp_path_factory):
    set_seed(7)
    return save_hf(BertForMaskedLM(BertConfig(n_layers=4, hidden=64, **SMALL)), tmp_path_factory.mktemp('deep') / 'deep')

def _same(a, b): return torch.equal(a.detach(), b.detach())

def test_init_random():
    a = init_student('random', (2, 64), label_names=NAMES, seed=0, **SMALL)
    b = init_student('random', (2, 64), label_names=NAMES, seed=0, **SMALL)
    c = init_student('random', (2, 64), label_names=NAMES, seed=1, **SMALL)
    assert (a.cfg.n_layers, a.cfg.hidden, a.cfg.n_labels, a.label_names) == (2, 64, 2, NAMES)
    assert all(_same(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not _same(a.bert.embeddings.word.weight, c.bert.embeddings.word.weight)
    with pytest.raises(ValueError, match='needs a student size'): init_student('random', None)
    assert init_student('random', 'tiny', n_labels=3).cfg.n_labels == 3

def test_init_pretrained(deep_dir, tmp_path):
    src = from_hf(deep_dir, 'encoder')
    m = init_student(deep_dir, (4, 64), label_names=NAMES)
    assert all(_same(v, src.state_dict()[k[5:]]) for k, v in m.state_dict().items() if k.startswith('bert.') and not k.startswith('bert.pooler'))
    assert m.cfg.n_labels == 2 and m.label_names == NAMES
    with pytest.raises(ValueError, match='L=4 layers'): init_student(deep_dir, (2, 64))
    with pytest.raises(ValueError, match='H=64'): init_student(deep_dir, (4, 128))

def test_init_truncated(deep_dir):
    src = from_hf(deep_dir, 'encoder')
    m = init_student(f'truncated:{deep_dir}', (2, 64), label_names=NAMES)
    assert m.cfg.n_layers == 2
    for i in range(2):
        for (k, v), (k2, v2) in zip(m.bert.layers[i].state_dict().items(), src.layers[i].state_dict().items()):
            assert k == k2 and _same(v, v2)
    assert _same(m.bert.embeddings.word.weight, src.embeddings.word.weight)
    assert not _same(m.bert.layers[1].attn.q.weight, src.layers[2].attn.q.weight)
    with pytest.raises(ValueError, match='H=64'): init_student(f'truncated:{deep_dir}', (2, 128))
    with pytest.raises(ValueError, match='name the checkpoint'): init_student('truncated:', (2, 64))

def test_init_embeddings(deep_dir):
    src = from_hf(deep_dir, 'encoder')
    m = init_student(f'embeddings:{deep_dir}', (2, 64), label_names=NAMES, **SMALL)
    assert _same(m.bert.embeddings.word.weight, src.embeddings.word.weight)
    assert not _same(m.bert.embeddings.position.weight, src.embeddings.position.weight)
    for name, v in m.bert.layers[0].named_parameters():
        if v.dim() == 2: assert not _same(v, src.layers[0].get_parameter(name)), name
    a = init_student(f'embeddings:{deep_dir}', (2, 64), embeddings='all', **SMALL)
    for part in ('word', 'position', 'segment', 'norm'):
        for n_, v in getattr(a.bert.embeddings, part).named_parameters():
            assert _same(v, getattr(getattr(src.embeddings, part), n_)), (part, n_)
    assert not _same(a.bert.layers[0].attn.q.weight, src.layers[0].attn.q.weight)

# --- the distillation stage -----------------------------------------------------------------------

SENTS = ['a gripping , beautifully acted film .', 'dull .', 'the plot is thin but the actors are wonderful .', 'not good',
         'an utterly forgettable , lifeless exercise in tedium .', 'fine !', 'i loved it', 'bad bad bad', 'a delight', 'meh',
         'great fun', 'awful', 'superb acting', 'boring', 'wonderful', 'terrible'] * 2
POS = ('gripping', 'wonderful', 'fine', 'loved', 'delight', 'great', 'superb')

def _teacher_probs(sents):
    p = np.array([0.9 if any(w in s for w in POS) else 0.1 for s in sents], np.float32)
    return np.stack([1 - p, p], 1)

def _dev():
    return {'text_a': SENTS[:16], 'label': [int(any(w in s for w in POS)) for s in SENTS[:16]]}

CFG = DistillConfig(lr=1e-3, batch_size=8, max_steps=12, max_len=32, eval_batch_size=16, log_every=1, eval_every=6)

def test_distill_end_to_end(tmp_path):
    student = init_student('random', (2, 64), label_names=NAMES, **SMALL)
    res = distill(student, _teacher_probs(SENTS), SENTS, 'sst2', CFG, tmp_path / 's', dev=_dev(), progress=False)
    assert res['steps'] == 12 and res['n_transfer'] == len(SENTS) and res['n_dev'] == 16
    assert res['best_step'] in {r['step'] for r in res['evals']}
    assert res['dev_score'] == max(r['valid_accuracy'] for r in res['evals'])
    saved = load_json(tmp_path / 's' / 'distill_metrics.json')
    assert saved['dev_score'] == res['dev_score'] and (tmp_path / 's' / 'manifest.json').exists()
    assert checkpoint_label_names(tmp_path / 's') == NAMES
    back = from_hf(tmp_path / 's', 'sequence_classification', new_head_ok=False).eval()
    assert all(_same(v, student.state_dict()[k]) for k, v in back.state_dict().items())
    # the training loss is the soft cross-entropy of the teacher probabilities (first logged step, before any update
    # it equals the loss of the initial model on the first batch; here: finite and near ln 2 for a fresh head)
    assert 0.3 < res['first_loss'] < 1.2 and res['last_loss'] < res['first_loss']

def test_distill_learns_the_teacher_not_gold_labels(tmp_path):
    "A teacher certain of the opposite of the usual sentiment: the student learns the teacher's (flipped) labels."
    student = init_student('random', (2, 64), label_names=NAMES, **SMALL)
    flipped = _teacher_probs(SENTS)[:, ::-1].copy()
    dev = {'text_a': SENTS[:16], 'label': flipped[:16].argmax(1).tolist()}
    cfg = DistillConfig(lr=2e-3, batch_size=8, epochs=15, max_len=32, eval_batch_size=16, log_every=1, warmup=0.0)
    res = distill(student, flipped, SENTS, 'sst2', cfg, None, dev=dev, progress=False)
    from pd_nb.classifier import predict_logits
    pred = predict_logits(student, tokenize_examples(SENTS[:16], get_tokenizer(), 32)).argmax(1)
    assert (pred == flipped[:16].argmax(1)).mean() >= 0.8 and res['dev_score'] >= 0.8, res['evals']

def test_distill_refusals(tmp_path):
    mk = lambda **kw: init_student('random', (2, 64), label_names=NAMES, **SMALL, **kw)
    probs = _teacher_probs(SENTS)
    with pytest.raises(DataError, match='empty'): distill(mk(), probs[:0], [], 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(ValueError, match=f'{len(SENTS) - 1} rows but D_T has {len(SENTS)}'):
        distill(mk(), probs[:-1], SENTS, 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(ValueError, match='3 classes, the student 2'):
        distill(mk(), np.full((len(SENTS), 3), 1 / 3, np.float32), SENTS, 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(ValueError, match='row 0'):
        distill(mk(), probs * 3, SENTS, 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(ValueError, match='3 outputs'):
        distill(init_student('random', (2, 64), n_labels=3, **SMALL), probs, SENTS, 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(LabelMismatchError):
        distill(init_student('random', (2, 64), label_names=['positive', 'negative'], **SMALL), probs, SENTS, 'sst2', CFG, dev=_dev(), progress=False)
    with pytest.raises(ValueError, match='needs gold labels'):
        distill(mk(), probs, SENTS, 'sst2', DistillConfig(alpha=0.5, max_steps=2), dev=_dev(), progress=False)

def test_distill_refuses_other_vocabulary(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {t: i for i, t in enumerate(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'good', 'bad'])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token='[UNK]')); tk.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token='[PAD]', unk_token='[UNK]', cls_token='[CLS]', sep_token='[SEP]')
    student = init_student('random', (2, 64), label_names=NAMES, **SMALL)
    with pytest.raises(ValueError, match='different vocabularies'):
        distill(student, _teacher_probs(SENTS), SENTS, 'sst2', CFG, dev=_dev(), teacher_tokenizer=other, progress=False)

def test_distill_from_teacher_folder(tmp_path):
    "A teacher folder instead of probabilities: D_T is labelled through label_transfer_set (with label checks)."
    set_seed(0)
    t = BertForSequenceClassification(BertConfig(n_layers=1, hidden=64, n_labels=2, **SMALL))
    tdir = save_hf(t, tmp_path / 'teacher', label_names=NAMES)
    student = init_student('random', (2, 64), label_names=NAMES, **SMALL)
    res = distill(student, tdir, SENTS, 'sst2', replace_cfg(max_steps=3), dev=_dev(), progress=False)
    assert res['teacher'] == str(tdir) and res['steps'] == 3
    bad = save_hf(t, tmp_path / 'teacher_rev', label_names=['positive', 'negative'])
    with pytest.raises(LabelMismatchError):
        distill(init_student('random', (2, 64), label_names=NAMES, **SMALL), bad, SENTS, 'sst2', CFG, dev=_dev(), progress=False)

def replace_cfg(**kw):
    from dataclasses import replace
    return replace(CFG, **kw)

def test_check_teacher_probs():
    assert check_teacher_probs(np.array([[0.25, 0.75]], np.float16), 1, 2).dtype == np.float32
    with pytest.raises(ValueError, match='logits'): check_teacher_probs(np.array([[2.0, -1.0]]), 1, 2)
    with pytest.raises(ValueError, match=r'\[N, C\]'): check_teacher_probs(np.array([0.5, 0.5]), 2, 2)
