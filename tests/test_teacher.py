"""pd_nb.teacher: label checks and refusals, soft labels equal to Hugging Face's own forward pass on the folder
(single sentences and pairs, original order), and the cache: hit, miss, and rebuild when D_T, the teacher
weights or the file change."""
import json
from pathlib import Path
import numpy as np
import pytest
import torch
import transformers
from pd_nb.core import BertConfig, set_seed, load_json, save_json
from pd_nb.bert import BertForSequenceClassification
from pd_nb.hub import save_hf
from pd_nb.finetune import FinetuneConfig
from pd_nb.classifier import tokenize_examples, LabelMismatchError
from pd_nb.teacher import (check_teacher_labels, load_teacher, label_transfer_set, weights_fingerprint, texts_fingerprint,
                           train_teacher)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SENTS = ['a gripping , beautifully acted film .', 'dull .', 'the plot is thin but the actors are wonderful and the music soars .',
         'not good', 'an utterly forgettable , lifeless , and far too long exercise in tedium .', 'fine !', 'i loved it',
         'bad bad bad', 'the second half drags , yet the ending lands with real force .', 'meh']
PAIRS = [('A man is playing a guitar.', 'Someone plays music.'), ('The cat sleeps.', 'A dog is running across a very long field.'),
         ('It rains.', 'It is dry.')]

@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('PD_NB_CACHE', str(tmp_path / 'cache'))

def teacher_dir(path, labels=('negative', 'positive'), seed=0):
    set_seed(seed)
    m = BertForSequenceClassification(BertConfig(n_layers=2, hidden=64, n_heads=2, ffn=128, max_positions=128, n_labels=len(labels or (0, 1))))
    return save_hf(m, path, label_names=list(labels) if labels else None)

def hf_probs(folder, examples):
    "Hugging Face's own model and tokenizer on the folder, one example at a time (no padding, no sorting)."
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for e in examples:
            a, b = e if isinstance(e, tuple) else (e, None)
            out.append(hf(**tok(a, b, truncation=True, max_length=128, return_tensors='pt')).logits.softmax(-1)[0].numpy())
    return np.stack(out)

# ---------------------------------------------------------------- labels

def test_check_teacher_labels(tmp_path):
    good, swapped = teacher_dir(tmp_path / 'good'), teacher_dir(tmp_path / 'swapped', ('positive', 'negative'))
    generic, nli = teacher_dir(tmp_path / 'generic', None), teacher_dir(tmp_path / 'nli', ('entailment', 'neutral', 'contradiction'))
    assert check_teacher_labels(good, 'sst2') == ['negative', 'positive']
    with pytest.raises(LabelMismatchError) as e: check_teacher_labels(swapped, 'sst2')
    assert "['positive', 'negative']" in str(e.value) and "['negative', 'positive']" in str(e.value) and 'another order' in str(e.value)
    with pytest.raises(LabelMismatchError, match='no label names'): check_teacher_labels(generic, 'sst2')
    assert check_teacher_labels(generic, 'sst2', allow_unnamed=True) == ['negative', 'positive']
    with pytest.raises(LabelMismatchError, match='3 labels'): check_teacher_labels(nli, 'rte')
    assert check_teacher_labels(nli, 'mnli') == ['entailment', 'neutral', 'contradiction']
    with pytest.raises(LabelMismatchError): check_teacher_labels(load_teacher(swapped)[0], 'sst2')   # a loaded model too
    with pytest.raises(LabelMismatchError): label_transfer_set(swapped, SENTS, task='sst2')          # refused before any work

def test_load_teacher_refuses_a_headless_checkpoint(tmp_path):
    from pd_nb.bert import BertModel
    set_seed(0)
    save_hf(BertModel(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64)), tmp_path / 'bare')
    with pytest.raises(ValueError, match='no classification head'): load_teacher(tmp_path / 'bare')

# ---------------------------------------------------------------- probabilities

@pytest.mark.parametrize('examples', [SENTS, PAIRS], ids=['single', 'pairs'])
def test_probs_equal_hf_forward(tmp_path, examples):
    folder = teacher_dir(tmp_path / 't')
    probs = label_transfer_set(folder, examples, batch_size=4, cache=False, task='sst2')
    ref = hf_probs(folder, examples)
    assert probs.dtype == np.float32 and probs.shape == (len(examples), 2)
    assert np.abs(probs - ref).max() < 1e-5
    half = label_transfer_set(folder, examples, batch_size=4, cache=False, dtype='float16')
    assert half.dtype == np.float16 and np.abs(half.astype(np.float32) - ref).max() < 1e-3

def test_dataset_input(tmp_path):
    import datasets
    folder = teacher_dir(tmp_path / 't')
    ds = datasets.Dataset.from_dict({'text_a': [a for a, _ in PAIRS], 'text_b': [b for _, b in PAIRS]})
    assert np.array_equal(label_transfer_set(folder, ds, cache=False), label_transfer_set(folder, PAIRS, cache=False))

# ---------------------------------------------------------------- cache

def test_cache_hit_miss_and_rebuild(tmp_path):
    folder = teacher_dir(tmp_path / 't')
    p1, i1 = label_transfer_set(folder, SENTS, return_info=True)
    p2, i2 = label_transfer_set(folder, SENTS, return_info=True)
    assert (i1['status'], i2['status']) == ('miss', 'hit') and np.array_equal(p1, p2) and i1['key'] == i2['key']
    assert Path(i1['path']).parent == tmp_path / 'cache' / 'soft_labels' and Path(i1['path']).with_suffix('.json').exists()
    # one transfer sentence changed: another key, recomputed, and the changed row differs
    changed = SENTS[:3] + ['an entirely different sentence'] + SENTS[4:]
    p3, i3 = label_transfer_set(folder, changed, return_info=True)
    assert i3['status'] == 'miss' and i3['key'] != i1['key'] and np.allclose(np.delete(p3, 3, 0), np.delete(p1, 3, 0), atol=1e-6)
    assert np.abs(p3[3] - hf_probs(folder, ['an entirely different sentence'])[0]).max() < 1e-5
    # the teacher's weights changed (one number): another key, recomputed
    from safetensors.torch import load_file, save_file
    sd = load_file(folder / 'model.safetensors'); sd['classifier.bias'] = sd['classifier.bias'] + torch.tensor([0.0, 1.0])
    save_file(sd, folder / 'model.safetensors', metadata={'format': 'pt'})
    p4, i4 = label_transfer_set(folder, SENTS, return_info=True)
    assert i4['status'] == 'miss' and i4['key'] != i1['key'] and not np.allclose(p4, p1)
    assert np.abs(p4 - hf_probs(folder, SENTS)).max() < 1e-5
    # max length and dtype are part of the key
    assert label_transfer_set(folder, SENTS, max_len=8, return_info=True)[1]['status'] == 'miss'
    assert label_transfer_set(folder, SENTS, dtype='float16', return_info=True)[1]['status'] == 'miss'

def test_named_cache_file_is_rebuilt_when_stale(tmp_path):
    folder, f = teacher_dir(tmp_path / 't'), tmp_path / 'labels.npy'
    p1, i1 = label_transfer_set(folder, SENTS, cache=f, return_info=True)
    assert i1['status'] == 'miss' and f.exists()
    with pytest.warns(UserWarning, match='stale'):
        p2, i2 = label_transfer_set(folder, SENTS[::-1], cache=f, return_info=True)      # D_T reordered
    assert i2['status'] == 'stale' and 'transfer' in i2['reason'] and np.allclose(p2, p1[::-1], atol=1e-6)
    assert load_json(f.with_suffix('.json'))['key'] == i2['key']
    assert label_transfer_set(folder, SENTS[::-1], cache=f, return_info=True)[1]['status'] == 'hit'
    other = teacher_dir(tmp_path / 'other', seed=1)
    with pytest.warns(UserWarning, match='stale'):
        _, i3 = label_transfer_set(other, SENTS[::-1], cache=f, return_info=True)        # another teacher
    assert i3['status'] == 'stale' and 'teacher' in i3['reason']

def test_corrupted_cache_is_rebuilt(tmp_path):
    folder, f = teacher_dir(tmp_path / 't'), tmp_path / 'labels.npy'
    p1 = label_transfer_set(folder, SENTS, cache=f)
    arr = np.load(f); arr[0] = [1.0, 0.0]; np.save(f, arr)                             # tampered content, same shape
    with pytest.warns(UserWarning, match='does not match the hash'):
        p2, i2 = label_transfer_set(folder, SENTS, cache=f, return_info=True)
    assert i2['status'] == 'stale' and np.array_equal(p1, p2)
    f.with_suffix('.json').unlink()
    with pytest.warns(UserWarning, match='sidecar'):
        assert label_transfer_set(folder, SENTS, cache=f, return_info=True)[1]['status'] == 'stale'

def test_fingerprints():
    set_seed(0); m = BertForSequenceClassification(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64))
    fp = weights_fingerprint(m)
    with torch.no_grad(): m.classifier.bias[0] += 1e-6
    assert weights_fingerprint(m) != fp
    assert texts_fingerprint(['ab', 'c']) != texts_fingerprint(['a', 'bc']) != texts_fingerprint(['ab'], ['c'])
    assert texts_fingerprint(['x', 'y']) == texts_fingerprint(['x', 'y'])

# ---------------------------------------------------------------- training

def test_train_teacher_writes_its_dev_accuracy(tmp_path, capsys):
    folder = teacher_dir(tmp_path / 'backbone', None)           # a "pre-trained" BERT with a fresh head
    texts = [f'good {w}' if i % 2 else f'bad {w}' for i, w in enumerate(['film', 'plot', 'story', 'cast'] * 6)]
    ex = tokenize_examples(texts).with_fields(labels=np.arange(24) % 2)
    info = train_teacher('sst2', tmp_path / 'teacher', folder, FinetuneConfig(batch_size=8, epochs=2, eval_batch_size=8),
                         train=ex, dev=ex, progress=False)
    saved = load_json(tmp_path / 'teacher' / 'teacher.json')
    assert saved['dev_accuracy'] == info['dev_accuracy'] and saved['label_names'] == ['negative', 'positive']
    assert f"dev accuracy {info['dev_accuracy']:.4f}" in capsys.readouterr().out
    assert check_teacher_labels(tmp_path / 'teacher', 'sst2')
    probs = label_transfer_set(tmp_path / 'teacher', texts[:4], task='sst2', cache=False)
    assert np.abs(probs - hf_probs(tmp_path / 'teacher', texts[:4])).max() < 1e-5

def test_a_non_bert_teacher(tmp_path):
    "Any Hugging Face encoder: a tiny DistilBERT (no token types) is fine-tuned and labels D_T through transformers' own class."
    from pd_nb.data import get_tokenizer
    from pd_nb.finetune import finetune
    set_seed(0)
    conf = transformers.DistilBertConfig(vocab_size=30522, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=128)
    transformers.DistilBertModel(conf).save_pretrained(tmp_path / 'backbone'); get_tokenizer().save_pretrained(tmp_path / 'backbone')
    ex = tokenize_examples(SENTS).with_fields(labels=np.arange(10) % 2)
    s = finetune(tmp_path / 'backbone', 'sst2', FinetuneConfig(batch_size=4, max_steps=3, eval_batch_size=8), tmp_path / 'teacher',
                 train=ex, dev=ex, progress=False)
    assert s['steps'] == 3 and load_json(tmp_path / 'teacher' / 'config.json')['model_type'] == 'distilbert'
    assert check_teacher_labels(tmp_path / 'teacher', 'sst2')
    model, _ = load_teacher(tmp_path / 'teacher', 'sst2')
    assert type(model).__name__ == 'DistilBertForSequenceClassification'
    probs = label_transfer_set(tmp_path / 'teacher', SENTS, batch_size=3, cache=False, task='sst2')
    assert np.abs(probs - hf_probs(tmp_path / 'teacher', SENTS)).max() < 1e-5
