"""The table of wrong inputs (hardening issue): each gets exit code 2 and one line on stderr naming the culprit, no
traceback, and files written earlier stay byte-identical. Benign oddities (CRLF, BOM, long texts, emoji) just work."""
import io, json, lzma, os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
import pytest, torch
from pd_nb.cli import main
from pd_nb.core import BertConfig
from pd_nb.bert import BertForSequenceClassification
from pd_nb.hub import save_hf

@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    "A workspace: a small classifier folder, a good input file, and an earlier output that must not change."
    d = tmp_path_factory.mktemp('ws')
    m = BertForSequenceClassification(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64, n_labels=2, max_positions=64))
    save_hf(m, d / 'clf', label_names=['negative', 'positive'])
    (d / 'good.txt').write_text('a fine film\na dull film\n', encoding='utf-8')
    (d / 'earlier.jsonl').write_text('{"kept": true}\n', encoding='utf-8')
    return d

def broken_model(d: Path, name: str, weights: dict) -> Path:
    f = d / name; f.mkdir(exist_ok=True)
    (f / 'config.json').write_text((d / 'clf' / 'config.json').read_text())
    for k, v in weights.items(): (f / k).write_bytes(v)
    return f

def _write(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data); return d / name

CASES = {   # id: (argv builder, text the one-line message must contain)
    'model folder missing':        (lambda d: ['predict', '--model', str(d / 'nope'), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'nope'),
    'model is a file':             (lambda d: ['predict', '--model', str(d / 'good.txt'), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'good.txt'),
    'model folder empty':          (lambda d: ['predict', '--model', str(_dir(d, 'noconfig')), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'noconfig'),
    'weights cut short':           (lambda d: ['predict', '--model', str(broken_model(d, 'cut', {'model.safetensors': (d / 'clf' / 'model.safetensors').read_bytes()[:500]})),
                                               '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'cut/model.safetensors'),
    'weights empty':               (lambda d: ['predict', '--model', str(broken_model(d, 'empty', {'model.safetensors': b''})),
                                               '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'empty/model.safetensors'),
    'misspelt model name':         (lambda d: ['predict', '--model', 'minlm', '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], "did you mean 'minilm'"),
    'input missing':               (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d / 'absent.txt'), '--out', str(d / 'o.jsonl')], 'absent.txt'),
    'input is a folder':           (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d), '--out', str(d / 'o.jsonl')], 'folder'),
    'input empty':                 (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'empty.txt', b'')), '--out', str(d / 'o.jsonl')], 'empty.txt'),
    'input not UTF-8':             (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'latin.txt', 'ok\ncaf\xe9\n'.encode('latin-1'))), '--out', str(d / 'o.jsonl')], 'line 2'),
    'input binary':                (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'bin.txt', bytes(range(256)) * 4)), '--out', str(d / 'o.jsonl')], 'bin.txt'),
    'broken JSON line':            (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'bad.jsonl', b'{"text": "fine"}\n{"text": oops}\n')), '--out', str(d / 'o.jsonl')], 'line 2'),
    'JSON line without text':      (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'notext.jsonl', b'{"rating": 3}\n')), '--out', str(d / 'o.jsonl')], 'notext.jsonl'),
    'truncated .xz input':         (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'cut.jsonl.xz', _cut_xz())), '--out', str(d / 'o.jsonl')], 'cut.jsonl.xz'),
    'tsv without a text column':   (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(_write(d, 'cols.tsv', b'id\tscore\n1\t2\n')), '--out', str(d / 'o.jsonl')], 'cols.tsv'),
    'output exists':               (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d / 'good.txt'), '--out', str(d / 'earlier.jsonl')], 'earlier.jsonl'),
    'zero batch size':             (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl'), '--batch-size', '0'], 'batch'),
    'max length beyond positions': (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl'), '--max-len', '1000'], '1000'),
    'pretrain negative steps':     (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p1'), '--max-steps', '-3'], 'max_steps'),
    'pretrain zero batch':         (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p2'), '--batch-size', '0'], 'batch'),
    'pretrain unknown corpus':     (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p3'), '--corpus', 'wikipdia'], 'wikipdia'),
    'pretrain bad config JSON':    (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p4'), '--config', str(_write(d, 'bad.json', b'{"lr": 1e-3,'))], 'bad.json'),
    'pretrain config unknown field': (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p5'), '--config', str(_write(d, 'unk.json', b'{"learning_rate": 1e-3}'))], 'learning_rate'),
    'pretrain misspelt size':      (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p6'), '--size', 'tinny'], 'tinny'),
    'label outside the label space': (lambda d: ['eval', '--model', str(d / 'clf'), '--task', 'sst2', '--data',
                                                 str(_write(d, 'labels.tsv', b'sentence\tlabel\na fine film\t1\na dull one\tmaybe\n'))], 'labels.tsv'),
    'labelled file without label column': (lambda d: ['eval', '--model', str(d / 'clf'), '--task', 'sst2', '--data',
                                                      str(_write(d, 'nolabel.tsv', b'sentence\nA fine film\n'))], 'nolabel.tsv'),
    'unknown task':                (lambda d: ['eval', '--model', str(d / 'clf'), '--task', 'sst3'], 'sst3'),
    'label space differs from task': (lambda d: ['eval', '--model', str(d / 'clf'), '--task', 'mnli'], 'mnli'),
    'config of another model type': (lambda d: ['predict', '--model', str(_other_type(d)), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl')], 'gpt2'),
    'distill misspelt student':    (lambda d: ['distill', '--teacher', str(d / 'clf'), '--transfer', str(d / 'good.txt'), '--student', 'tinny',
                                               '--out', str(d / 's1'), '--max-steps', '1'], "did you mean 'tiny'"),
    'distill transfer missing':    (lambda d: ['distill', '--teacher', str(d / 'clf'), '--transfer', str(d / 'gone.txt'), '--student', 'tiny',
                                               '--out', str(d / 's2'), '--max-steps', '1'], 'gone.txt'),
    'teacher backbone missing':    (lambda d: ['teacher', '--out', str(d / 't1'), '--backbone', str(d / 'no_backbone'), '--max-steps', '1'], 'no_backbone'),
    'pretrain max minutes <= 0':   (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p7'), '--max-minutes', '-1'], 'max_minutes'),
}

def _cut_xz() -> bytes:
    "An .xz stream cut in the middle (the text varies, so the stream is long)."
    import random
    rng = random.Random(0); words = ['film', 'fine', 'dull', 'long', 'plot', 'actor', 'scene', 'music']
    c = lzma.compress(''.join(json.dumps({'text': ' '.join(rng.choice(words) for _ in range(12))}) + '\n' for _ in range(3000)).encode())
    return c[:len(c) // 2]

def _other_type(d: Path) -> Path:
    "A folder whose config.json describes another architecture (GPT-2)."
    f = d / 'gpt2_like'; f.mkdir(exist_ok=True)
    (f / 'config.json').write_text(json.dumps({'model_type': 'gpt2', 'architectures': ['GPT2LMHeadModel'], 'n_embd': 32, 'n_layer': 1}))
    (f / 'model.safetensors').write_bytes((d / 'clf' / 'model.safetensors').read_bytes())
    return f

def _dir(d: Path, name: str) -> Path:
    (d / name).mkdir(exist_ok=True); return d / name

def run(argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err): rc = main(argv)
    return rc, err.getvalue()

@pytest.mark.parametrize('case', list(CASES))
def test_wrong_input_gets_one_clear_line(case, ws):
    before = {p: p.read_bytes() for p in ws.rglob('*') if p.is_file()}
    argv, culprit = CASES[case]
    argv = argv(ws)
    before.update({p: p.read_bytes() for p in ws.rglob('*') if p.is_file() and p not in before})   # files the case itself set up
    rc, err = run(argv)
    assert rc == 2, (case, rc, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith('pd_nb ') and 'error' in lines[0] and culprit in lines[0], (case, err)
    assert 'Traceback' not in err
    assert all(p.read_bytes() == b for p, b in before.items() if p.exists()), f"{case}: an earlier file changed"

@pytest.mark.parametrize('name,content', [('crlf.txt', b'a fine film\r\na dull film\r\n'), ('bom.txt', '\ufeffa fine film\n'.encode('utf-8')),
                                          ('emoji.txt', 'a fine film \U0001F600 caf\u00e9\n'.encode('utf-8')),
                                          ('long.txt', (('word ' * 3000) + '\n').encode('utf-8'))])
def test_benign_oddities_just_work(name, content, ws, tmp_path):
    f = _write(tmp_path, name, content)
    rc, err = run(['predict', '--model', str(ws / 'clf'), '--input', str(f), '--out', str(tmp_path / 'out.jsonl'), '--max-len', '64'])
    assert rc == 0, err
    recs = [json.loads(l) for l in (tmp_path / 'out.jsonl').read_text().splitlines()]
    assert recs and all(set(r['probs']) == {'negative', 'positive'} for r in recs)
