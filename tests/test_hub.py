"""pd_nb.hub against Hugging Face transformers: numerical parity, folders HF loads unchanged, bit-exact
round trips, the packaged MiniLM, config conversion, load errors, and predict_file (chapter 06) against Hugging Face's classifier."""
import json
from dataclasses import replace
from pathlib import Path
import pytest
import torch
import transformers
from pd_nb.core import BertConfig, minilm_dir, set_seed
from pd_nb.bert import BertModel, BertForMaskedLM, BertForSequenceClassification
from pd_nb.hub import (to_hf_config, from_hf_config, hf_key_map, load_hf_state_dict, HFLoadError, from_hf, save_hf,
                       resolve_hf_dir, released_student_id, checkpoint_heads)
from pd_nb.data import read_unlabelled
from pd_nb.classifier import predict_file

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

def batch(vocab, B=3, T=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000 % vocab, vocab, (B, T), generator=g)
    am = torch.ones(B, T, dtype=torch.long); am[1, 15:] = 0; am[2, 6:] = 0
    tt = torch.zeros(B, T, dtype=torch.long); tt[:, T // 2:] = 1
    ids = ids.masked_fill(am == 0, 0)
    labels = torch.where((torch.rand(B, T, generator=g) < 0.2) & (am == 1), ids, torch.full_like(ids, -100))
    labels[0, 0] = ids[0, 0]
    return ids, am, tt * am, labels

def hf_models(cfg, attn='eager', seed=0):
    conf = to_hf_config(cfg); conf._attn_implementation = attn
    set_seed(seed)
    return transformers.BertForMaskedLM(conf).eval(), transformers.BertForSequenceClassification(conf).eval()

def ours_from(hf_model, cls, cfg):
    m = cls(cfg)
    load_hf_state_dict(m, hf_model.state_dict(), allow_new=('bert.pooler.',))
    return m.eval()

@pytest.mark.parametrize('L,H', [(2, 128), (3, 192), (4, 256)])
def test_parity_with_hf(L, H):
    cfg = BertConfig(n_layers=L, hidden=H, n_labels=3)
    hf_mlm, hf_clf = hf_models(cfg, seed=L * H)
    mlm, clf = ours_from(hf_mlm, BertForMaskedLM, cfg), ours_from(hf_clf, BertForSequenceClassification, cfg)
    ids, am, tt, labels = batch(cfg.vocab_size)
    real, sel = am.bool(), labels != -100
    with torch.no_grad():
        h, o, s = hf_mlm(input_ids=ids, attention_mask=am, token_type_ids=tt, labels=labels), mlm(ids, am, tt), mlm(ids, am, tt, labels=labels)
        assert (hf_mlm(input_ids=ids[:1]).logits - mlm(ids[:1]).logits).abs().max() <= 1e-5  # no padding
        assert (h.logits - o.logits)[real].abs().max() <= 1e-5
        assert (h.logits[sel] - s.logits).abs().max() <= 1e-5 and abs(h.loss - s.loss) <= 1e-5
        yc = torch.tensor([0, 1, 2])
        hc, oc = hf_clf(input_ids=ids, attention_mask=am, token_type_ids=tt, labels=yc), clf(ids, am, tt, labels=yc)
        assert (hc.logits - oc.logits).abs().max() <= 1e-5 and abs(hc.loss - oc.loss) <= 1e-5

def test_parity_with_hf_sdpa():
    cfg = BertConfig(n_layers=2, hidden=128, n_labels=2)
    hf_mlm, _ = hf_models(cfg, attn='sdpa', seed=7)
    mlm = ours_from(hf_mlm, BertForMaskedLM, cfg)
    ids, am, tt, _ = batch(cfg.vocab_size)
    with torch.no_grad():
        assert (hf_mlm(input_ids=ids, attention_mask=am, token_type_ids=tt).logits - mlm(ids, am, tt).logits)[am.bool()].abs().max() <= 1e-5

@pytest.fixture(scope='module')
def small():
    "A 2/64 model with BERT's vocabulary (so the offline tokenizer fits), random weights."
    return BertConfig(n_layers=2, hidden=64, n_heads=2, n_labels=3)

def test_saved_folders_load_in_hf_unchanged_and_round_trip_bit_exact(tmp_path, small):
    set_seed(0)
    ids, am, tt, _ = batch(small.vocab_size)
    for cls, auto, task in ((BertForMaskedLM, transformers.AutoModelForMaskedLM, 'masked_lm'),
                            (BertForSequenceClassification, transformers.AutoModelForSequenceClassification, 'sequence_classification'),
                            (BertModel, transformers.AutoModel, 'encoder')):
        ours = cls(small).eval()
        d = save_hf(ours, tmp_path / task, label_names=['a', 'b', 'c'] if task == 'sequence_classification' else None)
        assert {'config.json', 'model.safetensors', 'tokenizer.json'} <= {p.name for p in d.iterdir()}
        hf, info = auto.from_pretrained(d, output_loading_info=True, attn_implementation='eager')
        assert not info['missing_keys'] and not info['mismatched_keys']
        assert set(info['unexpected_keys']) == ({'bert.pooler.dense.weight', 'bert.pooler.dense.bias'} if task == 'masked_lm' else set())
        back = from_hf(d, task)
        assert list(back.state_dict()) == list(ours.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), ours.state_dict().values()))
        with torch.no_grad():
            o = ours(ids, am, tt)
            h = hf.eval()(input_ids=ids, attention_mask=am, token_type_ids=tt)
        if task == 'encoder': assert (o.last_hidden_state - h.last_hidden_state)[am.bool()].abs().max() <= 1e-5
        elif task == 'masked_lm': assert (o.logits - h.logits)[am.bool()].abs().max() <= 1e-5
        else:
            assert (o.logits - h.logits).abs().max() <= 1e-5
            assert hf.config.id2label == {0: 'a', 1: 'b', 2: 'c'} and back.label_names == ['a', 'b', 'c']
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / 'masked_lm')
    assert tok('Hello world')['input_ids'] == [101, 7592, 2088, 102]

def test_minilm_hidden_states_match_hf():
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    enc = tok(["a small student learns from a teacher .", "hello"], padding=True, return_tensors='pt')
    ours = from_hf('minilm', 'encoder').eval()
    assert ours.cfg.n_heads == 12 and ours.cfg.hidden == 384 and ours.hf_load_report.initialised == []
    hf = transformers.AutoModel.from_pretrained(minilm_dir(), attn_implementation='eager').eval()
    with torch.no_grad():
        o, h = ours(enc['input_ids'], enc['attention_mask'], enc['token_type_ids']), hf(**enc)
    assert (o.last_hidden_state - h.last_hidden_state)[enc['attention_mask'].bool()].abs().max() <= 1e-5
    assert (o.pooler_output - h.pooler_output).abs().max() <= 1e-5

def test_config_conversion_both_ways():
    cfg = BertConfig(n_layers=3, hidden=192, n_labels=3, dropout=0.2, layer_norm_eps=1e-6)
    hf = to_hf_config(cfg, ['x', 'y', 'z'])
    assert (hf.num_hidden_layers, hf.hidden_size, hf.num_attention_heads, hf.intermediate_size, hf.hidden_dropout_prob, hf.layer_norm_eps) == (3, 192, 3, 768, 0.2, 1e-6)
    assert hf.id2label == {0: 'x', 1: 'y', 2: 'z'} and hf.label2id == {'x': 0, 'y': 1, 'z': 2} and hf.num_labels == 3
    assert from_hf_config(hf) == (cfg, ['x', 'y', 'z'])
    assert from_hf_config(json.loads(hf.to_json_string())) == (cfg, ['x', 'y', 'z'])
    assert from_hf_config(to_hf_config(replace(cfg, n_labels=2)))[1] is None  # default LABEL_i names
    with pytest.raises(ValueError, match='hidden_act'): from_hf_config({**hf.to_dict(), 'hidden_act': 'relu'})
    with pytest.raises(ValueError, match='model_type'): from_hf_config({**hf.to_dict(), 'model_type': 'roberta'})
    with pytest.raises(ValueError, match='label names'): to_hf_config(cfg, ['x'])

def test_google_style_pretraining_checkpoint(tmp_path):
    "BertForPreTraining folder (Google's layout, with NSP head) -> our MLM; TF-era gamma/beta names in a .bin load too."
    cfg = BertConfig(n_layers=2, hidden=64, n_heads=2, vocab_size=500, max_positions=64)
    set_seed(1)
    hf_pt = transformers.BertForPreTraining(to_hf_config(cfg)); hf_pt.save_pretrained(tmp_path / 'pt')
    ours = from_hf(tmp_path / 'pt', 'masked_lm').eval()
    assert sorted(ours.hf_load_report.ignored) == ['cls.seq_relationship.bias', 'cls.seq_relationship.weight']
    hf_mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path / 'pt', attn_implementation='eager').eval()
    ids, am, tt, _ = batch(cfg.vocab_size, T=16)
    with torch.no_grad(): assert (hf_mlm(input_ids=ids, attention_mask=am).logits - ours(ids, am).logits)[am.bool()].abs().max() <= 1e-5
    # the same weights as an old-style pytorch_model.bin: TF names, bare encoder keys
    sd = {k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias', 'LayerNorm.beta'): v for k, v in hf_pt.state_dict().items()}
    (tmp_path / 'old').mkdir(); torch.save(sd, tmp_path / 'old' / 'pytorch_model.bin')
    (tmp_path / 'old' / 'config.json').write_text((tmp_path / 'pt' / 'config.json').read_text())
    old = from_hf(tmp_path / 'old', 'masked_lm')
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), ours.state_dict().values()))
    assert checkpoint_heads(tmp_path / 'pt') == ['masked_lm', 'next_sentence']

def test_truncated_initialisation(tmp_path):
    "n_layers keeps the bottom layers: equal to HF loading the same folder into a shallower config."
    cfg = BertConfig(n_layers=4, hidden=64, n_heads=2, vocab_size=300, max_positions=32)
    set_seed(2); transformers.BertModel(to_hf_config(cfg)).save_pretrained(tmp_path)
    ours = from_hf(tmp_path, 'encoder', n_layers=2).eval()
    hf = transformers.BertModel.from_pretrained(tmp_path, num_hidden_layers=2, attn_implementation='eager').eval()
    ids = torch.randint(1, 300, (2, 10))
    with torch.no_grad(): assert (ours(ids).last_hidden_state - hf(ids).last_hidden_state).abs().max() <= 1e-5
    assert len(ours.hf_load_report.ignored) == 2 * 16

def test_load_errors_list_everything():
    cfg = BertConfig(n_layers=2, hidden=64, n_heads=2, vocab_size=300, max_positions=32)
    sd = transformers.BertForMaskedLM(to_hf_config(cfg)).state_dict()
    with pytest.raises(HFLoadError) as e:  # deeper + wider model: unexpected none, missing layer 2, mismatched shapes
        load_hf_state_dict(BertForMaskedLM(replace(cfg, n_layers=3, hidden=128)), sd)
    msg = str(e.value)
    assert 'missing in the checkpoint' in msg and 'bert.encoder.layer.2.attention.self.query.weight' in msg and 'shape mismatches' in msg
    with pytest.raises(HFLoadError, match='unexpected in the checkpoint') as e:
        load_hf_state_dict(BertForMaskedLM(replace(cfg, n_layers=1)), sd)
    assert 'bert.encoder.layer.1.' in str(e.value)
    with pytest.raises(HFLoadError, match='missing in the checkpoint'):  # a classifier where none is allowed
        load_hf_state_dict(BertForSequenceClassification(cfg), sd, allow_new=('bert.pooler.',))
    untied = dict(sd); untied['cls.predictions.decoder.weight'] = sd['cls.predictions.decoder.weight'] + 1
    with pytest.raises(HFLoadError, match='untied'): load_hf_state_dict(BertForMaskedLM(cfg), untied, allow_new=('bert.pooler.',))
    m = BertForSequenceClassification(cfg)
    rep = load_hf_state_dict(m, sd, allow_new=('bert.pooler.', 'classifier.'))
    assert sorted(rep.initialised) == ['bert.pooler.bias', 'bert.pooler.weight', 'classifier.bias', 'classifier.weight']

def test_key_map_covers_hf_names():
    cfg = BertConfig(n_layers=2, hidden=64, n_heads=2, vocab_size=300, max_positions=32)
    hf = set(transformers.BertForSequenceClassification(to_hf_config(cfg)).state_dict())
    kmap = hf_key_map(BertForSequenceClassification(cfg))
    assert set(kmap.values()) == hf and len(set(kmap.values())) == len(kmap)

def test_resolve_errors(tmp_path):
    assert resolve_hf_dir('minilm') == minilm_dir() and released_student_id('mini') == 'google/bert_uncased_L-4_H-256_A-4'
    f = tmp_path / 'x.txt'; f.write_text('x')
    with pytest.raises(NotADirectoryError): resolve_hf_dir(f)
    with pytest.raises(OSError, match='not a local folder'): resolve_hf_dir(released_student_id('tiny'))  # offline in tests
    with pytest.raises(FileNotFoundError, match='no PyTorch weights'):
        (tmp_path / 'cfgonly').mkdir(); (tmp_path / 'cfgonly' / 'config.json').write_text(to_hf_config(BertConfig()).to_json_string())
        from_hf(tmp_path / 'cfgonly')
    with pytest.raises(ValueError, match='head='): from_hf('minilm', 'qa')

@pytest.fixture(scope='module')
def clf_dir(tmp_path_factory, small):
    d = tmp_path_factory.mktemp('clf')
    set_seed(3)
    m = BertForSequenceClassification(small)
    with torch.no_grad(): m.classifier.weight.normal_(0, 1.0)  # make predictions differ from uniform
    return save_hf(m, d / 'model', label_names=['neg', 'neu', 'pos'])

def hf_probs(folder, a, b=None):
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation='eager').eval()
    with torch.no_grad(): return hf(**tok(a, b, padding=True, truncation=True, max_length=128, return_tensors='pt')).logits.softmax(-1)

def test_predict_file_txt_jsonl_tsv(tmp_path, clf_dir):
    texts = ['a fine film .', '', 'dull , dull , dull and long, far too long for anyone to sit through', 'ok']
    (tmp_path / 'in.txt').write_text('\n'.join(texts) + '\n')
    out = predict_file(clf_dir, tmp_path / 'in.txt', tmp_path / 'out.jsonl', batch_size=2)
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    kept = [t for t in texts if t]
    assert [r['text'] for r in rows] == kept
    ref = hf_probs(clf_dir, kept)
    for r, p in zip(rows, ref):
        assert list(r['probs']) == ['neg', 'neu', 'pos'] and abs(sum(r['probs'].values()) - 1) < 1e-4
        assert max(abs(r['probs'][n] - p[j].item()) for j, n in enumerate(['neg', 'neu', 'pos'])) < 1e-5
        assert r['pred'] == ['neg', 'neu', 'pos'][int(p.argmax())]
    pairs = [('a man plays .', 'someone plays .'), ('it rains .', 'the sun shines brightly .')]
    (tmp_path / 'in.jsonl').write_text(''.join(json.dumps({'premise': a, 'hypothesis': b, 'label': 'x'}) + '\n' for a, b in pairs))
    (tmp_path / 'in.tsv').write_text('index\tsentence1\tsentence2\n' + ''.join(f'{i}\t{a}\t{b}\n' for i, (a, b) in enumerate(pairs)))
    ref = hf_probs(clf_dir, [a for a, _ in pairs], [b for _, b in pairs])
    for name in ('in.jsonl', 'in.tsv'):
        rows = [json.loads(l) for l in predict_file(clf_dir, tmp_path / name, tmp_path / f'{name}.out').read_text().splitlines()]
        assert [(r['text'], r['text_b']) for r in rows] == pairs
        assert max(abs(r['probs'][n] - p[j].item()) for r, p in zip(rows, ref) for j, n in enumerate(['neg', 'neu', 'pos'])) < 1e-5

def read_examples(path):
    ds = read_unlabelled(path)
    return list(zip(ds['text_a'], ds['text_b'] if 'text_b' in ds.column_names else [None] * len(ds)))

def test_read_unlabelled_fields_and_errors(tmp_path):
    (tmp_path / 'a.jsonl').write_text('{"text_a": "x", "text_b": "y"}\n\n{"text_a": "z", "text_b": "w"}\n')
    assert read_examples(tmp_path / 'a.jsonl') == [('x', 'y'), ('z', 'w')]
    (tmp_path / 'b.tsv').write_text('sentence\tlabel\nhello there \t1\n')
    assert read_examples(tmp_path / 'b.tsv') == [('hello there ', None)]
    with pytest.raises(FileNotFoundError, match='no such file'): read_examples(tmp_path / 'missing.txt')
    (tmp_path / 'c.csv').write_text('text\nx\n')
    with pytest.raises(ValueError, match="unknown file type"): read_examples(tmp_path / 'c.csv')
    (tmp_path / 'd.jsonl').write_text('{"text": "x"}\n{"text": "y"\n')
    with pytest.raises(ValueError, match='line 2: not valid JSON'): read_examples(tmp_path / 'd.jsonl')
    (tmp_path / 'e.jsonl').write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"e.jsonl: no text field found .* found \['body'\]"): read_examples(tmp_path / 'e.jsonl')
    (tmp_path / 'q.jsonl').write_text('{"question": "who?", "sentence": "me."}\n')
    assert read_examples(tmp_path / 'q.jsonl') == [('who?', 'me.')]                    # QNLI's pair names
    (tmp_path / 'f.jsonl').write_text('{"text": "x"}\n{"text": 3}\n')
    with pytest.raises(ValueError, match="line 2: field 'text' must be text, found int 3"): read_examples(tmp_path / 'f.jsonl')
    (tmp_path / 'g.tsv').write_text('sentence\tlabel\nx\t1\textra\n')
    with pytest.raises(ValueError, match='line 2: 3 tab-separated fields'): read_examples(tmp_path / 'g.tsv')
    (tmp_path / 'h.txt').write_text('\n\n')
    with pytest.raises(ValueError, match='no examples'): read_examples(tmp_path / 'h.txt')
    (tmp_path / 'i.txt').write_bytes(b'\xff\xfe bad')
    with pytest.raises(ValueError, match='not valid UTF-8'): read_examples(tmp_path / 'i.txt')

def test_predict_file_refuses_folder_without_classifier(tmp_path, small):
    (tmp_path / 'in.txt').write_text('hello\n')
    d = save_hf(BertForMaskedLM(small), tmp_path / 'mlm')
    with pytest.raises(ValueError, match=r"no classification head.*BertForMaskedLM.*masked_lm head"):
        predict_file(d, tmp_path / 'in.txt', tmp_path / 'out.jsonl')
    with pytest.raises(ValueError, match='only the encoder'):
        predict_file(minilm_dir(), tmp_path / 'in.txt', tmp_path / 'out.jsonl')
    assert not (tmp_path / 'out.jsonl').exists()


def test_damaged_or_pickled_weights_are_refused_in_one_line(tmp_path, small):
    "A cut or foreign weight file, and a pickle that would run code, each get HFLoadError naming the file (nothing runs)."
    import os
    d = save_hf(BertForMaskedLM(small), tmp_path / 'ok', tokenizer=False)
    good = (d / 'model.safetensors').read_bytes()
    for name, content in (('cut', good[:len(good) // 3]), ('empty', b''), ('text', b'not weights at all')):
        bad = tmp_path / name; bad.mkdir(); (bad / 'config.json').write_text((d / 'config.json').read_text())
        (bad / 'model.safetensors').write_bytes(content)
        with pytest.raises(HFLoadError, match=rf'{name}/model\.safetensors: not a readable safetensors file'): from_hf(bad)
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path / "PWNED"}',))
    p = tmp_path / 'pickled'; p.mkdir(); (p / 'config.json').write_text((d / 'config.json').read_text())
    torch.save({'x': Evil()}, p / 'pytorch_model.bin')
    with pytest.raises(HFLoadError, match=r'pytorch_model\.bin: refused: unpickling it would run code'): from_hf(p)
    assert not (tmp_path / 'PWNED').exists()


@pytest.mark.parametrize('typo,want', [('tinny', 'tiny'), ('Mini1', 'mini'), ('mnilm', 'minilm'), ('baes', 'base')])
def test_misspelt_names_suggest_the_closest(typo, want):
    "A misspelt size or 'minilm' is reported as such, with the closest valid name (no hub download attempted)."
    with pytest.raises(ValueError, match=rf"did you mean '{want}'"): resolve_hf_dir(typo)

def test_hub_ids_are_not_mistaken_for_typos():
    with pytest.raises(OSError, match='downloading it from the Hugging Face hub failed'): resolve_hf_dir('bert-base-uncased')


def test_encoder_head_and_the_old_base_name(tmp_path, small):
    "`from_hf(x, 'encoder')` is the bare encoder; 'base' (also a size name) still works, with a DeprecationWarning."
    d = save_hf(BertForMaskedLM(small), tmp_path / 'm', tokenizer=False)
    assert type(from_hf(d, 'encoder')) is BertModel
    with pytest.warns(DeprecationWarning, match="'encoder'"): assert type(from_hf(d, 'base')) is BertModel
    with pytest.raises(ValueError, match="head='mlm'"): from_hf(d, 'mlm')
