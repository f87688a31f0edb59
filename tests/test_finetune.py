"""pd_nb.finetune: length buckets (every example once), pair encoding against hand-worked tokens, padding,
F1 against hand-worked values, best-checkpoint selection, exact resume through the Learner, label checks,
and a tiny end-to-end run whose saved folder Hugging Face's own model scores identically."""
import json
from pathlib import Path
import numpy as np
import pytest
import torch
import transformers
from pd_nb.core import BertConfig, set_seed
from pd_nb.data import get_tokenizer, load_task, read_file, DataError
from pd_nb.bert import BertForSequenceClassification
from pd_nb.hub import save_hf
from pd_nb.learner import Learner, DataLoaders, CheckpointCB, Callback
from pd_nb.finetune import FinetuneConfig, finetune_config, finetune, finetune_sweep, mean_std, eval_split
from pd_nb.classifier import TokenizedExamples, tokenize_examples, bucket_batches, collate_examples, classification_loader, f1_score, classification_metrics, task_metrics, predict_logits, evaluate_classifier, BestModelCB, load_classifier, checkpoint_label_names, check_label_names, LabelMismatchError

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

TEXTS = ['a gripping , beautifully acted film .', 'dull .', 'the plot is thin but the actors are wonderful and the music soars .',
         'not good', 'an utterly forgettable , lifeless , and far too long exercise in tedium .', 'fine !', 'i loved it', 'bad bad bad']

def tiny_model(n_labels=2, seed=0):
    set_seed(seed)
    return BertForSequenceClassification(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64, max_positions=128, n_labels=n_labels))

def toy_examples(n=40, seed=0):
    "Sentences whose label is whether they contain 'good': learnable in a few steps."
    rng = np.random.default_rng(seed)
    words = ['the', 'movie', 'was', 'plot', 'actors', 'long', 'music', 'and', 'a', 'story']
    texts, labels = [], []
    for i in range(n):
        w = list(rng.choice(words, rng.integers(2, 12)))
        y = i % 2
        if y: w.insert(int(rng.integers(len(w) + 1)), 'good')
        texts.append(' '.join(w)); labels.append(y)
    return tokenize_examples(texts).with_fields(labels=np.array(labels))

# ---------------------------------------------------------------- buckets

@pytest.mark.parametrize('n,bs,chunk,shuffle', [(1, 4, 50, True), (103, 8, 3, True), (103, 8, 3, False), (64, 16, 1, True), (500, 7, 50, True)])
def test_buckets_cover_every_example_once(n, bs, chunk, shuffle):
    lengths = np.random.default_rng(n).integers(2, 60, n)
    batches = bucket_batches(lengths, bs, shuffle=shuffle, seed=3, chunk_batches=chunk)
    allidx = np.concatenate(batches)
    assert len(allidx) == n and np.array_equal(np.sort(allidx), np.arange(n))
    assert all(1 <= len(b) <= bs for b in batches) and sum(len(b) < bs for b in batches) <= 1
    kept = bucket_batches(lengths, bs, shuffle=shuffle, seed=3, chunk_batches=chunk, drop_last=True)
    assert all(len(b) == bs for b in kept) and len(np.concatenate(kept) if kept else []) == n // bs * bs

def test_buckets_reduce_padding_and_depend_on_seed():
    lengths = np.random.default_rng(0).integers(2, 100, 2000)
    cost = lambda bs: sum(len(b) * lengths[b].max() for b in bs)
    rand = [np.random.default_rng(1).permutation(2000)[i:i + 32] for i in range(0, 2000, 32)]
    buck = bucket_batches(lengths, 32, seed=0)
    assert cost(buck) < 0.7 * cost(rand)
    assert cost(bucket_batches(lengths, 32, shuffle=False)) <= cost(buck)
    assert [b.tolist() for b in buck] == [b.tolist() for b in bucket_batches(lengths, 32, seed=0)]
    assert [b.tolist() for b in buck] != [b.tolist() for b in bucket_batches(lengths, 32, seed=1)]
    with pytest.raises(ValueError): bucket_batches(lengths, 0)

# ---------------------------------------------------------------- tokenizing and padding

def test_pair_encoding_hand_worked():
    tok = get_tokenizer()
    ex = tokenize_examples([('the cat', 'a dog')], tok)
    assert tok.convert_ids_to_tokens(ex.tokens(0).tolist()) == ['[CLS]', 'the', 'cat', '[SEP]', 'a', 'dog', '[SEP]']
    b = collate_examples(ex, [0])
    assert b['token_type_ids'].tolist() == [[0, 0, 0, 0, 1, 1, 1]] and b['attention_mask'].tolist() == [[1] * 7]
    single = tokenize_examples(['the cat'], tok)
    assert tok.convert_ids_to_tokens(single.tokens(0).tolist()) == ['[CLS]', 'the', 'cat', '[SEP]'] and single.n_first[0] == 4

def test_pair_truncation_longest_first_matches_tokenizer():
    tok = get_tokenizer()
    a, b = 'one two three four five six seven eight nine ten', 'red blue'
    ex = tokenize_examples([(a, b)], tok, max_len=8)
    # longest_first removes from the longer text: [CLS] one two three [SEP] red blue [SEP]
    assert tok.convert_ids_to_tokens(ex.tokens(0).tolist()) == ['[CLS]', 'one', 'two', 'three', '[SEP]', 'red', 'blue', '[SEP]']
    assert ex.n_first[0] == 5

def test_tokenize_matches_the_tokenizer_on_rte():
    ds, tok = load_task('rte', 'dev').select(range(20)), get_tokenizer()
    ex = tokenize_examples(ds, max_len=64)
    for i in range(20):                                  # one example at a time, straight from the tokenizer
        ref = tok(ds['text_a'][i], ds['text_b'][i], truncation='longest_first', max_length=64, return_token_type_ids=True)
        assert ex.tokens(i).tolist() == ref['input_ids']
        assert collate_examples(ex, [i])['token_type_ids'][0].tolist() == ref['token_type_ids']
    assert ex.labels.tolist() == ds['label']

def test_tokenize_longest_first_and_single_sentences(tmp_path):
    tok = get_tokenizer()
    p = tmp_path / 'a.jsonl'
    p.write_text(json.dumps({'premise': 'word ' * 100, 'hypothesis': 'short one', 'label': 0}) + '\n'
                 + json.dumps({'premise': 'A cat.', 'hypothesis': 'An animal.', 'label': 1}) + '\n')
    ex = tokenize_examples(read_file(p, ('premise', 'hypothesis'), 'label', ('yes', 'no')), tok, max_len=32)
    # longest_first: the long premise loses tokens, the 2-token hypothesis is kept whole
    assert len(ex.tokens(0)) == 32 and ex.tokens(0).tolist()[-4:] == [tok.sep_token_id, *tok('short one', add_special_tokens=False)['input_ids'], tok.sep_token_id][-4:]
    assert ex.n_first[0] == 29
    assert ex.tokens(1).tolist() == tok('A cat.', 'An animal.')['input_ids'] and len(ex.tokens(1)) < 32   # no padding
    single = tokenize_examples(load_task('sst2', 'dev').select(range(4)), tok)
    assert all(ex_n == len(single.tokens(i)) for i, ex_n in enumerate(single.n_first))
    assert all(single.tokens(i)[0] == 101 and single.tokens(i)[-1] == 102 for i in range(4))

def test_collate_pads_and_keeps_fields():
    ex = tokenize_examples(TEXTS).with_fields(labels=np.arange(8) % 2, teacher_probs=np.full((8, 2), 0.5, np.float32))
    idx = [1, 4, 0]
    b = collate_examples(ex, idx, pad_to_multiple=8)
    T = b['input_ids'].shape[1]
    assert T % 8 == 0 and T >= ex.lengths[idx].max()
    for r, i in enumerate(idx):
        n = ex.lengths[i]
        assert b['input_ids'][r, :n].tolist() == ex.tokens(i).tolist() and (b['input_ids'][r, n:] == 0).all()
        assert b['attention_mask'][r].sum() == n
    assert b['labels'].tolist() == [1, 0, 0] and b['labels'].dtype == torch.int64
    assert b['teacher_probs'].shape == (3, 2) and b['teacher_probs'].dtype == torch.float32
    sub = ex.subset([4, 1])
    assert sub.tokens(0).tolist() == ex.tokens(4).tolist() and sub.labels.tolist() == [0, 1]

def test_tokenize_bad_input():
    with pytest.raises(DataError, match='example 1'): tokenize_examples(['ok', 3])
    with pytest.raises(DataError): tokenize_examples([])
    with pytest.raises(DataError, match='example 1 has second text'): tokenize_examples([('a', 'b'), ('c', None)])
    with pytest.raises(ValueError, match="field 'labels'"): tokenize_examples(['a', 'b']).with_fields(labels=np.zeros(3))

# ---------------------------------------------------------------- metrics

def test_f1_hand_worked():
    y = [1, 1, 1, 0, 0, 0, 1, 0]; p = [1, 0, 1, 1, 0, 0, 1, 1]   # class 1: TP 3, FP 2, FN 1 -> 6/9; class 0: TP 2, FP 1, FN 2 -> 4/7
    assert f1_score(p, y) == pytest.approx(6 / 9) and f1_score(p, y, positive=0) == pytest.approx(4 / 7)
    logits = torch.nn.functional.one_hot(torch.tensor(p), 2).float()
    m = classification_metrics(logits, torch.tensor(y), 'acc_and_f1')
    assert m['accuracy'] == pytest.approx(5 / 8) and m['f1'] == pytest.approx(6 / 9) and m['acc_and_f1'] == pytest.approx((5 / 8 + 6 / 9) / 2)
    assert classification_metrics(logits, torch.tensor(y), 'macro_f1')['macro_f1'] == pytest.approx((6 / 9 + 4 / 7) / 2)
    assert f1_score([0, 0], [0, 0]) == 0.0                       # no positive predicted nor present
    soft = torch.tensor([[0.2, 0.8]] * 8)                         # probabilities: compared by arg-max (all class 1)
    assert classification_metrics(logits, soft)['accuracy'] == pytest.approx(5 / 8)
    with pytest.raises(ValueError, match='unknown metric'): classification_metrics(logits, torch.tensor(y), 'auc')

def test_evaluate_classifier_matches_hf(tmp_path):
    model = tiny_model().eval()
    save_hf(model, tmp_path, label_names=['negative', 'positive'])
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    labels = np.array([0, 1, 1, 0, 0, 1, 1, 0])
    with torch.no_grad(): ref = np.stack([hf(**tok(t, return_tensors='pt')).logits[0].numpy() for t in TEXTS])
    ex = tokenize_examples(TEXTS).with_fields(labels=labels)
    ours = predict_logits(model, ex, batch_size=3, device='cpu')
    assert np.abs(ours - ref).max() < 1e-5                        # original order, despite the length sorting
    assert evaluate_classifier(model, ex, 'sst2', device='cpu')['accuracy'] == pytest.approx((ref.argmax(1) == labels).mean())

# ---------------------------------------------------------------- best checkpoint and resume

class Snapshots(Callback):
    order = 5                                                     # before BestModelCB (10): the weights it evaluates
    def __init__(self): self.states = {}
    def after_epoch(self, learn): self.states[learn.step] = {k: v.clone() for k, v in learn.model.state_dict().items()}

@pytest.mark.parametrize('use_dir', [True, False])
def test_best_model_cb_restores_the_best(tmp_path, use_dir):
    ex = toy_examples(16)
    scores = iter([0.5, 0.9, 0.7, 0.9])                           # epoch 2 is best; a later tie does not replace it
    fake = lambda logits, labels: {'accuracy': next(scores)}
    best, snaps = BestModelCB('accuracy', fake), Snapshots()
    learn = Learner(tiny_model(), DataLoaders(classification_loader(ex, 4), classification_loader(ex, 8, shuffle=False)),
                    lr=1e-3, cbs=[best, snaps], progress=False, run_dir=tmp_path / 'run' if use_dir else None)
    learn.fit(4)
    rec = best.restore(learn)
    assert rec['step'] == 8 and rec['score'] == 0.9 and len(best.evals) == 4
    assert all(torch.equal(v, snaps.states[8][k]) for k, v in learn.model.state_dict().items())
    assert not all(torch.equal(v, snaps.states[16][k]) for k, v in learn.model.state_dict().items())
    if use_dir: assert json.loads((tmp_path / 'run' / 'best' / 'best.json').read_text())['step'] == 8

class StopAt(Callback):
    "Request a stop after optimiser step `step`, as a Ctrl-C would (CheckpointCB then saves that step)."
    order = 15
    def __init__(self, step): self.step = step
    def after_step(self, learn):
        if learn.step == self.step: learn.stopping = True

def test_bucketed_loader_resumes_exactly(tmp_path):
    ex = toy_examples(40)                                         # 10 batches of 4 per epoch
    def run(d, cbs=(), resume=False):
        set_seed(0)
        learn = Learner(tiny_model(), DataLoaders(classification_loader(ex, 4, seed=0)), lr=1e-3, warmup=2, progress=False,
                        run_dir=d, cbs=[CheckpointCB(every=None), *cbs])
        learn.fit(max_steps=14, resume=resume)
        return learn.model.state_dict(), learn.step
    straight, _ = run(tmp_path / 'straight')
    _, stopped = run(tmp_path / 'a', [StopAt(7)])                 # interrupted mid-epoch
    resumed, end = run(tmp_path / 'a', resume=True)
    assert stopped == 7 and end == 14 and all(torch.equal(straight[k], resumed[k]) for k in straight)

# ---------------------------------------------------------------- labels

def test_label_checks(tmp_path):
    check_label_names(['negative', 'positive'], 'sst2')
    with pytest.raises(LabelMismatchError, match='another order'): check_label_names(['positive', 'negative'], 'sst2')
    with pytest.raises(LabelMismatchError, match='3 labels'): check_label_names(['a', 'b', 'c'], 'sst2')
    with pytest.raises(LabelMismatchError, match='no label names'): check_label_names(None, 'sst2')
    check_label_names(None, 'sst2', allow_unnamed=True)
    save_hf(tiny_model(), tmp_path / 'swapped', label_names=['positive', 'negative'])
    assert checkpoint_label_names(tmp_path / 'swapped') == ['positive', 'negative']
    with pytest.raises(LabelMismatchError, match='another order'): load_classifier(tmp_path / 'swapped', 'sst2')
    save_hf(tiny_model(), tmp_path / 'generic')
    assert checkpoint_label_names(tmp_path / 'generic') is None
    model, _, _ = load_classifier(tmp_path / 'generic', 'sst2')    # generic names: the head is kept, renamed
    assert model.label_names == ['negative', 'positive']
    with pytest.raises(ValueError, match='3 outputs'): load_classifier(tiny_model(3), 'sst2')

def test_dataset_with_other_label_names_is_refused(tmp_path):
    import datasets
    ds = datasets.Dataset.from_dict({'text_a': ['a', 'b'], 'label': [0, 1]},
                                    features=datasets.Features({'text_a': datasets.Value('string'), 'label': datasets.ClassLabel(names=['pos', 'neg'])}))
    with pytest.raises(LabelMismatchError, match="labels \\['pos', 'neg'\\]"):
        finetune(tiny_model(), 'sst2', finetune_config('test'), None, train=ds, dev=ds, progress=False)

# ---------------------------------------------------------------- end to end

def test_finetune_end_to_end(tmp_path):
    tr, dv = toy_examples(48, seed=0), toy_examples(24, seed=1)
    cfg = FinetuneConfig(lr=3e-3, batch_size=8, epochs=3, eval_batch_size=16, warmup=0.0)
    s = finetune(tiny_model(), 'sst2', cfg, tmp_path / 'out', train=tr, dev=dv, progress=False)
    assert s['steps'] == 18 and len(s['evals']) == 3 and s['best_step'] in (6, 12, 18)
    assert s['dev_score'] == max(e['valid_accuracy'] for e in s['evals'])
    out = tmp_path / 'out'
    assert json.loads((out / 'finetune_metrics.json').read_text())['dev_score'] == s['dev_score']
    assert (out / 'manifest.json').exists() and not (out / 'run' / 'best').exists()
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()   # independent scoring of the saved folder
    assert hf.config.id2label == {0: 'negative', 1: 'positive'}
    b = collate_examples(dv, np.arange(len(dv)))
    with torch.no_grad(): logits = hf(input_ids=b['input_ids'], attention_mask=b['attention_mask'], token_type_ids=b['token_type_ids']).logits
    assert (logits.argmax(-1).numpy() == dv.labels).mean() == pytest.approx(s['dev']['accuracy'])
    with pytest.raises(ValueError, match='max_len'): finetune(tiny_model(), 'sst2', FinetuneConfig(max_len=512), None, train=tr, dev=dv)

def test_sweep_mean_std_and_choice(tmp_path):
    assert mean_std([0.8, 0.9, 1.0]) == (pytest.approx(0.9), pytest.approx(0.1)) and mean_std([0.7]) == (0.7, 0.0)
    tr, dv = toy_examples(32, seed=0), toy_examples(16, seed=1)
    sw = finetune_sweep(tiny_model(), 'sst2', FinetuneConfig(epochs=1, eval_batch_size=16), tmp_path / 'sw',
                        batch_sizes=(4, 8), lrs=(1e-3,), seeds=(0, 1), train=tr, dev=dv)
    assert len(sw['runs']) == 4 and len(sw['configs']) == 2
    for c in sw['configs']:
        scores = [r['score'] for r in sw['runs'] if r['batch_size'] == c['batch_size']]
        assert c['mean'] == pytest.approx(np.mean(scores)) and c['std'] == pytest.approx(np.std(scores, ddof=1))
    assert sw['chosen']['mean'] == max(c['mean'] for c in sw['configs'])
    assert json.loads((tmp_path / 'sw' / 'finetune_metrics.json').read_text())['dev_score'] == sw['kept']['score']
    assert (tmp_path / 'sw' / 'model.safetensors').exists() and not list((tmp_path / 'sw' / 'runs').glob('*/model.safetensors'))

def test_config_checks():
    with pytest.raises(ValueError, match=r"fine-tuning preset 'test': unknown field\(s\) \['learning_rate'\]"): finetune_config('test', learning_rate=1)
    with pytest.raises(ValueError, match='batch_size'): FinetuneConfig(batch_size=0)
    with pytest.raises(ValueError, match='warmup'): FinetuneConfig(warmup=10)
    assert eval_split('sst2') == 'dev' and eval_split('mnli') == 'dev_matched' and eval_split('imdb') == 'test'
