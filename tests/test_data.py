"""Unit tests for pd_nb.data: tokenizer, readers (and their errors), sentence splitting, encoding, D_LM packing.

Expected values come from independent computations: the vocabulary file itself, plain-Python counts of the
sample files, hand-worked examples, and the tokenizer's ordinary `__call__` (not the packer's batch path)."""
import json, lzma, os, subprocess, sys, time, collections
from pathlib import Path
import numpy as np
import pytest
import torch

from pd_nb.core import sample_dir, minilm_dir
from pd_nb.data import (DataError, TASKS, get_task, get_tokenizer, read_file, read_hf, load_task, load_transfer,
                        split_sentences, clean_review, build_lm_memmap, lm_memmap_info, open_lm_memmap,
                        lm_sources, Rows, iter_documents, tokenizer_fingerprint)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def tok(): return get_tokenizer()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / 'cache'; monkeypatch.setenv('PD_NB_CACHE', str(d)); return d


@pytest.fixture(autouse=True)
def _no_data_dir(monkeypatch): monkeypatch.delenv('PD_NB_DATA', raising=False)


# ---------------------------------------------------------------- tokenizer

def test_default_tokenizer_is_uncased_bert_vocab(tok):
    vocab = (minilm_dir() / 'vocab.txt').read_text(encoding='utf-8').split('\n')
    vocab = [v for v in vocab if v != ''] if vocab[-1] == '' else vocab
    assert len(tok) == 30522 == len(vocab) and tok.is_fast
    ids = {w: i for i, w in enumerate(vocab)}                        # id = line number in vocab.txt
    assert (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id, tok.mask_token_id) == (ids['[CLS]'], ids['[SEP]'], ids['[PAD]'], ids['[MASK]'])
    assert tok('HeLLo WoRLD')['input_ids'] == tok('hello world')['input_ids']
    assert get_tokenizer() is tok and get_tokenizer(str(minilm_dir())) is tok


def test_pair_encoding_hand_worked(tok):
    vocab = {w: i for i, w in enumerate((minilm_dir() / 'vocab.txt').read_text(encoding='utf-8').split('\n'))}
    e = tok('Hello World!', 'The cat sat.')
    want = [vocab[w] for w in ['[CLS]', 'hello', 'world', '!', '[SEP]', 'the', 'cat', 'sat', '.', '[SEP]']]
    assert e['input_ids'] == want == [101, 7592, 2088, 999, 102, 1996, 4937, 2938, 1012, 102]
    assert e['token_type_ids'] == [0] * 5 + [1] * 5


def test_tokenizer_folder_errors(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no tokenizer files'): get_tokenizer(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='no such tokenizer folder'): get_tokenizer(str(tmp_path / 'nope' / 'x'))
    with pytest.raises(OSError, match="could not load the tokenizer 'no-such-org/no-such-tok'"): get_tokenizer('no-such-org/no-such-tok')


# ---------------------------------------------------------------- readers on the sample

def _tsv_label_counts(path):
    lines = Path(path).read_text(encoding='utf-8').split('\n')
    return collections.Counter(l.split('\t')[-1] for l in lines[1:] if l)


def test_sample_counts_match_files():
    s = sample_dir()
    ds = load_task('sst2', 'train')                                   # PD_NB_DATA unset -> the sample
    c = _tsv_label_counts(s / 'sst2/train.tsv')
    assert len(ds) == sum(c.values()) == 3000 and collections.Counter(ds['label']) == {0: c['0'], 1: c['1']}
    dev = load_task('sst2', 'dev')
    assert len(dev) == 872 and collections.Counter(dev['label']) == {0: 428, 1: 444}   # data README counts
    assert dev.features['label'].names == ['negative', 'positive']
    first = (s / 'sst2/dev.tsv').read_text(encoding='utf-8').split('\n')[1].split('\t')
    assert dev[0]['text_a'] == first[0] and dev[0]['label'] == int(first[1])
    rte = load_task('rte', 'dev')
    assert len(rte) == 277 and collections.Counter(rte['label']) == {0: 146, 1: 131}
    assert rte.column_names == ['text_a', 'text_b', 'label']
    mnli = load_task('mnli', 'dev_matched')
    recs = [json.loads(l) for l in open(s / 'mnli/dev_matched.jsonl', encoding='utf-8')]
    assert len(mnli) == len(recs) == 500
    assert [mnli.features['label'].names[y] for y in mnli['label']] == [r['label'] for r in recs]
    imdb = load_task('imdb', 'train')
    raw = [json.loads(l) for l in lzma.open(s / 'imdb/train.jsonl.xz', 'rt', encoding='utf-8')]
    assert len(imdb) == len(raw) == 200 and imdb['label'] == [r['label'] for r in raw]
    assert not any('<br' in t for t in imdb['text_a'])


def test_registry():
    assert TASKS['rte'].label_names == ('entailment', 'not_entailment') and TASKS['rte'].is_pair
    assert TASKS['mnli'].label_names == ('entailment', 'neutral', 'contradiction')
    assert {'sst2', 'rte', 'mnli', 'snli', 'imdb', 'amazon_books', 'amazon_dvd', 'amazon_electronics', 'amazon_kitchen'} <= set(TASKS)
    with pytest.raises(KeyError, match='known tasks'): get_task('sst3')


def test_split_not_in_sample():
    with pytest.raises(FileNotFoundError, match='not in the embedded sample'): load_task('snli', 'dev')
    with pytest.raises(ValueError, match='no local split'): load_task('mnli', 'train')


def test_full_data_dir_when_given():
    full = ROOT.parent / 'shared' / 'data'
    if not (full / 'sst2' / 'dev.tsv').exists(): pytest.skip('no full data directory here')
    assert len(load_task('sst2', 'dev', full)) == 872 and len(load_task('rte', 'train', full)) == 2490


def test_hub_reader_offline_error(monkeypatch):
    monkeypatch.setenv('HF_DATASETS_OFFLINE', '1'); monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ConnectionError, match="could not load 'nyu-mll/glue'"): load_task('sst2', 'dev', hub=True)


# ---------------------------------------------------------------- bad input

def _w(p, text=None, data=None):
    p = Path(p)
    if data is not None: p.write_bytes(data)
    else: p.write_text(text, encoding='utf-8')
    return p


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such file'): read_file(tmp_path / 'x.tsv', ('sentence',))
    with pytest.raises(FileNotFoundError, match='no such file'): load_task('sst2', 'dev', tmp_path)


def test_tsv_header_mismatch(tmp_path):
    spec = TASKS['sst2']
    p = _w(tmp_path / 'a.tsv', 'sentence\na b\n')
    with pytest.raises(DataError, match=r"a.tsv, line 1: header mismatch.*missing \['label'\]"):
        read_file(p, spec.text_columns, spec.label_column, spec.label_names, spec.header)
    p = _w(tmp_path / 'b.tsv', 'sentence\tlabel\tsource\na b\t1\tx\n')
    with pytest.raises(DataError, match=r"b.tsv, line 1: header mismatch.*unexpected \['source'\]"):
        read_file(p, spec.text_columns, spec.label_column, spec.label_names, spec.header)
    p = _w(tmp_path / 'c.tsv', 'text\tlabel\na\t1\n')                # no header given: needed columns checked
    with pytest.raises(DataError, match=r"line 1: missing column\(s\) \['sentence'\]"): read_file(p, ('sentence',), 'label')
    p = _w(tmp_path / 'd.tsv', 'sentence\tlabel\na b\t1\nc\td\t0\n')
    with pytest.raises(DataError, match=r'd.tsv, line 3: 3 tab-separated fields, expected 2'): read_file(p, ('sentence',))


def test_label_outside_label_space(tmp_path):
    p = _w(tmp_path / 'a.tsv', 'sentence\tlabel\ngood\t1\nbad\t2\n')
    with pytest.raises(DataError, match=r"a.tsv, line 3: label '2' in field 'label' is not in the label space \['negative', 'positive'\]"):
        read_file(p, ('sentence',), 'label', ('negative', 'positive'))
    p = _w(tmp_path / 'b.jsonl', '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n')
    with pytest.raises(DataError, match=r"b.jsonl, line 1: label 'maybe'"): read_file(p, ('premise', 'hypothesis'), 'label', TASKS['mnli'].label_names)


def test_labels_by_name_or_index(tmp_path):
    p = _w(tmp_path / 'a.jsonl', '{"text": "x", "label": "neutral"}\n{"text": "y", "label": 2}\n{"text": "z", "label": "0"}\n')
    ds = read_file(p, ('text',), 'label', ('entailment', 'neutral', 'contradiction'))
    assert ds['label'] == [1, 2, 0] and ds.features['label'].names == ['entailment', 'neutral', 'contradiction']
    stars = _w(tmp_path / 's.jsonl', '{"text": "x", "score": 1}\n{"text": "y", "score": 5}\n')
    assert read_file(stars, ('text',), 'score', ('1', '2', '3', '4', '5'))['label'] == [0, 4]   # names win over indices


def test_empty_text(tmp_path):
    p = _w(tmp_path / 'a.tsv', 'sentence\tlabel\ngood\t1\n  \t0\n')
    with pytest.raises(DataError, match=r"a.tsv, line 3: empty text in field 'sentence'"): read_file(p, ('sentence',), 'label', ('n', 'p'))
    p = _w(tmp_path / 'b.jsonl', '{"premise": "a", "hypothesis": "", "label": 0}\n')
    with pytest.raises(DataError, match=r"b.jsonl, line 1: empty text in field 'hypothesis'"): read_file(p, ('premise', 'hypothesis'), 'label')


def test_non_utf8(tmp_path):
    p = _w(tmp_path / 'a.tsv', data='sentence\tlabel\ngood\t1\ncaf\xe9\t0\n'.encode('latin-1'))
    with pytest.raises(DataError, match=r'a.tsv, line 3: not valid UTF-8 \(byte 0xe9 at column 4\)'): read_file(p, ('sentence',))
    x = tmp_path / 'b.jsonl.xz'
    with lzma.open(x, 'wb') as f: f.write(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(DataError, match=r'b.jsonl.xz, line 2: not valid UTF-8'): read_file(x, ('text',), None)


def test_empty_dataset_and_bad_json(tmp_path):
    with pytest.raises(DataError, match=r'a.tsv: no examples'): read_file(_w(tmp_path / 'a.tsv', 'sentence\tlabel\n'), ('sentence',))
    with pytest.raises(DataError, match=r'b.tsv: empty file'): read_file(_w(tmp_path / 'b.tsv', ''), ('sentence',))
    with pytest.raises(DataError, match=r'c.jsonl: no examples'): read_file(_w(tmp_path / 'c.jsonl', '\n'), ('text',))
    with pytest.raises(DataError, match=r'd.jsonl, line 2: not valid JSON'): read_file(_w(tmp_path / 'd.jsonl', '{"text": "a", "label": 0}\n{"text": \n'), ('text',))
    with pytest.raises(DataError, match=r"e.jsonl, line 1: missing field 'hypothesis'"):
        read_file(_w(tmp_path / 'e.jsonl', '{"premise": "a", "label": 0}\n'), ('premise', 'hypothesis'))
    with pytest.raises(DataError, match=r'unknown file type'): read_file(_w(tmp_path / 'f.csv', 'a,b\n'), ('a',))


# ---------------------------------------------------------------- D_T

def test_split_sentences_hand_examples():
    cases = {
        'Mr. Smith went to Washington. He liked it! Did he? Yes.': ['Mr. Smith went to Washington.', 'He liked it!', 'Did he?', 'Yes.'],
        '"Wow." She left... Then (quietly) came back.': ['"Wow."', 'She left...', 'Then (quietly) came back.'],
        'The U.S. Army hired J. R. R. Tolkien. So did I. It cost 3.5 million.': ['The U.S. Army hired J. R. R. Tolkien.', 'So did I.', 'It cost 3.5 million.'],
        'no capital after. so one sentence': ['no capital after. so one sentence'],
        'Line one\n\nLine two.  ': ['Line one', 'Line two.'],
        '': [],
    }
    for text, want in cases.items(): assert split_sentences(text) == want, text
    assert split_sentences(clean_review('Great.<br /><br />Bad plot.<BR>8/10')) == ['Great.', 'Bad plot.', '8/10']
    assert clean_review('a \x96 b \x85') == 'a \u2013 b \u2026'         # cp1252 en dash, ellipsis


def test_transfer_imdb_sample():
    ds = load_transfer('imdb')
    n_reviews = sum(1 for s in ('train', 'test', 'unsup') for _ in lzma.open(sample_dir() / f'imdb/{s}.jsonl.xz', 'rt'))
    assert n_reviews == 600 and ds.column_names == ['text_a'] and len(ds) > 10 * n_reviews
    assert not any('<br' in t or not t.strip() for t in ds['text_a'])
    sub = load_transfer('imdb', max_examples=50, seed=1)
    assert len(sub) == 50 and sub['text_a'] == load_transfer('imdb', max_examples=50, seed=1)['text_a']
    assert set(sub['text_a']) <= set(ds['text_a'])
    nli = load_transfer('nli')
    assert nli.column_names == ['text_a', 'text_b'] and len(nli) == 500     # the sample holds MNLI only


def test_transfer_files_drop_labels(tmp_path):
    p = _w(tmp_path / 'a.jsonl', '{"text": "One. Two.", "label": 1}\n{"text": "Three.", "label": 0}\n')
    with pytest.warns(UserWarning, match=r"a.jsonl: has label field\(s\) \['label'\]"): ds = load_transfer(p)
    assert ds.column_names == ['text_a'] and ds['text_a'] == ['One. Two.', 'Three.']
    with pytest.warns(UserWarning): assert load_transfer(p, sentences=True)['text_a'] == ['One.', 'Two.', 'Three.']
    t = _w(tmp_path / 'b.tsv', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n')
    with pytest.warns(UserWarning): ds = load_transfer(t)
    assert ds.column_names == ['text_a', 'text_b'] and ds[0] == {'text_a': 'a', 'text_b': 'b'}
    txt = _w(tmp_path / 'c.txt', 'first line\n\nsecond line\n')
    assert load_transfer(txt)['text_a'] == ['first line', 'second line']
    with pytest.raises(DataError, match='no text field'): load_transfer(_w(tmp_path / 'd.jsonl', '{"body": "x"}\n'))


# ---------------------------------------------------------------- D_LM packing

DOCS = ['The first document.\nIt has two lines, and a few words.',
        'Second one: short!',
        'A third document talks about distillation of compact students into smaller models.',
        'Fourth.']


def _expected_rows(tok, docs, seq_len):
    stream = [t for d in docs for t in tok(d, add_special_tokens=False)['input_ids'] + [tok.sep_token_id]]
    b = seq_len - 2
    return np.array([[tok.cls_token_id, *stream[i * b:(i + 1) * b], tok.sep_token_id] for i in range(len(stream) // b)])


def test_fingerprint_ignores_call_state(tok):
    fp = tokenizer_fingerprint(tok)
    tok(['a b c'], truncation=True, max_length=4, padding='max_length')   # leaves state on the Rust backend
    assert tokenizer_fingerprint(tok) == fp and len(fp) == 16


def test_packing_rows_and_round_trip(tok, tmp_path, cache):
    src = _w(tmp_path / 'docs.txt', '\n\n'.join(DOCS) + '\n')
    tok(['a b c'], truncation=True, max_length=4, padding='max_length')   # must not truncate/pad the packer's batches
    mm = build_lm_memmap(src, tok, seq_len=8)
    want = _expected_rows(tok, DOCS, 8)
    assert mm.dtype == np.uint16 and mm.shape == want.shape and np.array_equal(np.asarray(mm), want)
    assert (mm[:, 0] == 101).all() and (mm[:, -1] == 102).all()
    info = lm_memmap_info(mm)
    assert info['n_seqs'] == len(want) and info['seq_len'] == 8 and info['n_tokens'] == 6 * len(want) and info['sources'][0]['n_docs'] == 4
    # round trip: rows -> stream -> documents (the tail that did not fill a row is dropped)
    text = tok.decode(mm[:, 1:-1].reshape(-1))
    got = [d.strip() for d in text.split('[SEP]')]
    norm = lambda s: tok.decode(tok(s, add_special_tokens=False)['input_ids'])
    assert got[:3] == [norm(d) for d in DOCS[:3]] and got[0] == 'the first document. it has two lines, and a few words.'
    assert len(got) in (3, 4) and (len(got) == 3 or norm(DOCS[3]).startswith(got[3]))
    blocks = Rows(mm)
    assert len(blocks) == len(want) and blocks[1]['input_ids'].dtype == torch.long and torch.equal(blocks[1]['input_ids'], torch.tensor(want[1]))


def test_packing_cache_hit_and_rebuild(tok, tmp_path, cache):
    src = _w(tmp_path / 'docs.txt', '\n\n'.join(DOCS) + '\n')
    mm1 = build_lm_memmap(src, tok, seq_len=8); f1 = Path(mm1.filename)
    stamp = (f1.stat().st_mtime_ns, lm_memmap_info(mm1)['created'])
    mm2 = build_lm_memmap(src, tok, seq_len=8)
    assert Path(mm2.filename) == f1 and (f1.stat().st_mtime_ns, lm_memmap_info(mm2)['created']) == stamp   # hit: not rewritten
    # the input changes (same size, new content and mtime): a new key, rebuilt, the stale file is not used
    new_docs = [DOCS[0].replace('first', 'FIRST'), *DOCS[1:]]
    _w(src, '\n\n'.join(new_docs) + '\n'); os.utime(src, ns=(time.time_ns(), f1.stat().st_mtime_ns + 10**9))
    mm3 = build_lm_memmap(src, tok, seq_len=8)
    assert Path(mm3.filename) != f1 and np.array_equal(np.asarray(mm3), _expected_rows(tok, new_docs, 8))
    new_docs[0] = DOCS[0].replace('first', 'other')                    # other content again, different word
    _w(src, '\n\n'.join(new_docs) + '\n'); os.utime(src, ns=(time.time_ns(), f1.stat().st_mtime_ns + 2 * 10**9))
    assert not np.array_equal(np.asarray(build_lm_memmap(src, tok, seq_len=8)), np.asarray(mm3))
    # other seq_len / limit: other caches; a truncated data file is not a hit
    assert Path(build_lm_memmap(src, tok, seq_len=16).filename) != Path(mm3.filename)
    mm4 = build_lm_memmap(src, tok, seq_len=8, max_tokens=12)
    assert mm4.shape == (2, 8) and lm_memmap_info(mm4)['stream_tokens'] == 12
    p4 = Path(mm4.filename); p4.write_bytes(p4.read_bytes()[:-2])
    mm5 = build_lm_memmap(src, tok, seq_len=8, max_tokens=12)
    assert mm5.shape == (2, 8) and p4.stat().st_size == 2 * 8 * 2
    assert not list(cache.glob('**/*.tmp'))


def test_packing_jsonl_sources_and_errors(tok, tmp_path, cache):
    x = tmp_path / 'c.jsonl.xz'
    with lzma.open(x, 'wt', encoding='utf-8') as f:
        for d in [DOCS[0], '', DOCS[2]]: f.write(json.dumps({'id': 1, 'text': d}) + '\n')
    mm = build_lm_memmap([x], tok, seq_len=8)
    assert np.array_equal(np.asarray(mm), _expected_rows(tok, [DOCS[0], DOCS[2]], 8))
    assert lm_memmap_info(mm)['sources'][0]['skipped_empty'] == 1
    with pytest.raises(FileNotFoundError, match='not a known corpus'): build_lm_memmap('bookcorpus', tok)
    with pytest.raises(DataError, match='fewer than one row'): build_lm_memmap(_w(tmp_path / 't.txt', 'hi\n'), tok, seq_len=64)
    with pytest.raises(DataError, match="line 1: missing field 'text'"): build_lm_memmap(_w(tmp_path / 'n.jsonl', '{"body": "x"}\n'), tok)


def test_packing_sample_sources(tok, cache):
    groups = lm_sources('sample')
    assert [n for n, _ in groups] == ['wikipedia', 'gutenberg'] and all(f.exists() for _, fs in groups for f in fs)
    mm = build_lm_memmap('sample', tok, seq_len=128, max_tokens=30_000)
    info = lm_memmap_info(mm)
    assert info['stream_tokens'] == 30_000 and mm.shape == (30_000 // 126, 128)
    assert all(s['n_tokens'] > 0 for s in info['sources'])               # the budget is shared by both corpora
    first = next(iter_documents(groups[0][1][0]))
    head = tok(first, add_special_tokens=False, verbose=False)['input_ids'][:126]
    assert list(mm[0, 1:-1]) == head


def test_module_imports_without_datasets(tmp_path):
    "The GPU image has torch + transformers but not `datasets`: pd_nb.data must import and pack without it."
    code = ("import sys; sys.modules['datasets'] = None\n"
            "import numpy as np; from pd_nb.data import build_lm_memmap, Rows\n"
            f"mm = build_lm_memmap({str(tmp_path / 'd.txt')!r}, seq_len=8); print(len(Rows(mm)))")
    _w(tmp_path / 'd.txt', '\n\n'.join(DOCS))
    env = {**os.environ, 'PD_NB_CACHE': str(tmp_path / 'cache')}
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip().splitlines()[-1]) > 0


def test_truncated_xz_is_refused_naming_the_file(tmp_path):
    "A compressed file cut short is never read as if complete: DataError naming the file."
    import lzma
    from pd_nb.data import DataError, load_transfer, iter_jsonl
    data = b''.join(b'{"text": "sentence number %d is fine"}\n' % i for i in range(5000))
    c = lzma.compress(data)
    (tmp_path / 'ok.jsonl.xz').write_bytes(c); (tmp_path / 'cut.jsonl.xz').write_bytes(c[:len(c) // 2])
    assert len(list(iter_jsonl(tmp_path / 'ok.jsonl.xz'))) == 5000
    with pytest.raises(DataError, match=r'cut\.jsonl\.xz: the compressed data ends early'):
        load_transfer(tmp_path / 'cut.jsonl.xz')
