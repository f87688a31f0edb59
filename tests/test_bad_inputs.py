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
    unnamed_classifier(d / 'unnamed')
    (d / 'small.txt').write_text('A few words of text, far too few to pre-train on.\n' * 3, encoding='utf-8')
    return d

def unnamed_classifier(folder: Path) -> Path:
    "What most fine-tuned models people have look like: transformers writes no id2label when the labels are the defaults."
    import transformers
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder

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
    'pickled weights that run code': (lambda d: ['predict', '--model', str(_pickled(d)), '--input', str(d / 'good.txt'), '--out', str(d / 'o.jsonl'),
                                                 '--max-len', '64'], 'pytorch_model.bin'),
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
    'eval unnamed model on a named task': (lambda d: ['eval', '--model', str(d / 'unnamed'), '--task', 'sst2', '--max-n', '8'], '--allow-unnamed'),
    'eval unnamed model, label names in the file': (lambda d: ['eval', '--model', str(d / 'unnamed'), '--task', 'sst2', '--data',
                                                     str(_write(d, 'named.tsv', b'sentence\tlabel\na fine film\tpositive\n'))], '--allow-unnamed'),
    'distill unnamed teacher for a named task': (lambda d: ['distill', '--teacher', str(d / 'unnamed'), '--task', 'sst2', '--transfer', str(d / 'good.txt'),
                                                  '--student', 'tiny', '--out', str(d / 's3'), '--max-steps', '1'], '--allow-unnamed'),
    'run misspelt recipe':         (lambda d: ['run', 'bsic', '--out-dir', str(d / 'r1')], 'bsic'),
    'run config unknown field':    (lambda d: ['run', 'basic', '--out-dir', str(d / 'r2'), '--config', str(_write(d, 'run.json', b'{"finetune": {"lrr": 1}}'))], 'lrr'),
    'run misspelt size':           (lambda d: ['run', 'basic', '--out-dir', str(d / 'r3'), '--size', 'tinny', '--max-steps', '1'], 'tinny'),
    'finetune misspelt size':      (lambda d: ['finetune', '--model', 'tinny', '--out', str(d / 'f1'), '--max-steps', '1'], 'tinny'),
    'pretrain corpus too small':   (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p8'), '--corpus', str(d / 'small.txt')], 'small.txt'),
    'demo output is a file':       (lambda d: ['demo', '--tiny', '--out', str(d / 'good.txt')], 'good.txt'),
    'predict output under a file': (lambda d: ['predict', '--model', str(d / 'clf'), '--input', str(d / 'good.txt'), '--out', str(d / 'good.txt' / 'o.jsonl'), '--max-len', '64'], 'good.txt'),
    'experiment misspelt name':    (lambda d: ['experiment', 'trasnfer_size', '--tiny'], "did you mean 'transfer_size'"),
    'experiment zero epochs':      (lambda d: ['experiment', 'transfer_size', '--tiny', '--epochs', '0', '--results-dir', str(d / 'e1')], 'epochs'),
    'pretrain max minutes <= 0':   (lambda d: ['pretrain', '--preset', 'test', '--out', str(d / 'p7'), '--max-minutes', '-1'], 'max_minutes'),
    'experiment misspelt domain':  (lambda d: ['experiment', 'domain_shift', '--tiny', '--domains', 'amazon_kitchn', '--results-dir', str(d / 'e2')],
                                    "did you mean 'amazon_kitchen'"),
    'experiment checkpoint not a folder': (lambda d: ['experiment', 'sizes', '--tiny', '--checkpoints', str(d / 'no_ckpt'), '--results-dir', str(d / 'e3')],
                                           'no_ckpt'),
    'experiment tokens beyond the schedule': (lambda d: ['experiment', 'compound', '--lm-tokens', '999999999999', '--results-dir', str(d / 'e4')],
                                              '999,999,999,999'),
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

class _Evil:
    "A pickle that would run a command when loaded."
    def __reduce__(self): return (os.system, ('touch PWNED_BY_PICKLE',))

def _pickled(d: Path) -> Path:
    "A model folder whose only weights are a pickle (pytorch_model.bin) that would execute code."
    f = d / 'pickled'; f.mkdir(exist_ok=True)
    (f / 'config.json').write_text((d / 'clf' / 'config.json').read_text())
    torch.save({'x': _Evil()}, f / 'pytorch_model.bin')
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
    assert not Path('PWNED_BY_PICKLE').exists(), "a pickle ran code"

def test_at_least_forty_cases():
    assert len(CASES) >= 40, len(CASES)

def test_disk_full_while_writing_keeps_what_was_there(ws, tmp_path, monkeypatch):
    "A write that fails half-way (disk full) is one line, and the output file that was there is untouched."
    import errno
    out = tmp_path / 'preds.jsonl'; out.write_text('earlier\n')
    def full(*a, **k): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'replace', full)
    rc, err = run(['predict', '--model', str(ws / 'clf'), '--input', str(ws / 'good.txt'), '--out', str(out), '--overwrite', '--max-len', '64'])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and 'No space left' in err and 'Traceback' not in err, err
    assert out.read_text() == 'earlier\n' and sorted(p.name for p in tmp_path.iterdir()) == ['preds.jsonl']   # no temporary left

def test_unnamed_labels_work_where_they_can(ws, tmp_path):
    "An unnamed classifier: 2 classes as transformers reads it; integer labels in a file are its class indices (said once)."
    (tmp_path / 'dt.txt').write_text(''.join(f'sentence number {i} about a film\n' for i in range(40)))
    rc, err = run(['distill', '--teacher', str(ws / 'unnamed'), '--transfer', str(tmp_path / 'dt.txt'), '--student', '2/128',
                   '--out', str(tmp_path / 'st'), '--max-steps', '2', '--quiet'])
    assert rc == 0, err
    assert json.loads((tmp_path / 'st' / 'distill_metrics.json').read_text())['label_names'] == ['LABEL_0', 'LABEL_1']
    ints = _write(tmp_path, 'ints.tsv', b'sentence\tlabel\na fine film\t1\na dull film\t0\n')
    rc, err = run(['eval', '--model', str(ws / 'unnamed'), '--task', 'sst2', '--data', str(ints), '--json'])
    assert rc == 0 and err.count('\n') == 1 and 'class indices' in err, err
    rc, err = run(['eval', '--model', str(ws / 'unnamed'), '--task', 'sst2', '--max-n', '8', '--allow-unnamed'])
    assert rc == 0, err

@pytest.mark.parametrize('name,content', [('crlf.txt', b'a fine film\r\na dull film\r\n'), ('bom.txt', '\ufeffa fine film\n'.encode('utf-8')),
                                          ('emoji.txt', 'a fine film \U0001F600 caf\u00e9\n'.encode('utf-8')),
                                          ('long.txt', (('word ' * 3000) + '\n').encode('utf-8'))])
def test_benign_oddities_just_work(name, content, ws, tmp_path):
    f = _write(tmp_path, name, content)
    rc, err = run(['predict', '--model', str(ws / 'clf'), '--input', str(f), '--out', str(tmp_path / 'out.jsonl'), '--max-len', '64'])
    assert rc == 0, err
    assert (err.strip() == '') != (name == 'long.txt'), err                      # only the long text is said to be truncated
    if name == 'long.txt': assert len(err.strip().splitlines()) == 1 and 'truncated' in err and 'warning' in err, err
    recs = [json.loads(l) for l in (tmp_path / 'out.jsonl').read_text().splitlines()]
    assert recs and all(set(r['probs']) == {'negative', 'positive'} for r in recs)

def test_ctrl_c_then_resume(ws, tmp_path):
    """Ctrl-C during `pd_nb distill`: exit 130 with one line, no model written, checkpoints kept; `--resume` finishes the run,
    and its summary keeps the evaluations made before the interruption."""
    import signal, subprocess, sys, time
    (tmp_path / 'dt.txt').write_text(''.join(f'sentence number {i} about a film\n' for i in range(400)))
    argv = [str(Path(sys.executable).parent / 'pd_nb'), 'distill', '--teacher', str(ws / 'clf'), '--transfer', str(tmp_path / 'dt.txt'),
            '--student', '2/128', '--out', str(tmp_path / 'st'), '--max-len', '32', '--batch-size', '8', '--max-steps', '300',
            '--ckpt-every', '5', '--eval-every', '10', '--quiet']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpts = tmp_path / 'st' / 'run' / 'checkpoints'
    t0 = time.time()
    while not any(ckpts.glob('step_*')) and time.time() - t0 < 120 and p.poll() is None: time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and err.strip().splitlines()[-1].endswith('interrupted') and 'Traceback' not in err, err
    assert any(ckpts.glob('step_*')) and not (tmp_path / 'st' / 'model.safetensors').exists()
    stopped = max(int(c.name.split('_')[1]) for c in ckpts.glob('step_*'))
    r = subprocess.run([*argv, '--resume'], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / 'st' / 'distill_metrics.json').read_text())
    assert s['steps'] == 300 > stopped and min(e['step'] for e in s['evals']) <= stopped, (stopped, [e['step'] for e in s['evals']])


def test_distill_loads_the_teacher_once(ws, tmp_path, monkeypatch):
    "`pd_nb distill` reads the teacher's weights once (label check, D_T labelling and the summary share them)."
    import pd_nb.teacher
    calls = []
    real = pd_nb.teacher.from_hf
    monkeypatch.setattr(pd_nb.teacher, 'from_hf', lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    (tmp_path / 'dt.txt').write_text(''.join(f'sentence number {i} about a film\n' for i in range(40)))
    rc, err = run(['distill', '--teacher', str(ws / 'clf'), '--transfer', str(tmp_path / 'dt.txt'), '--student', '2/128',
                   '--out', str(tmp_path / 'st'), '--max-steps', '1', '--max-len', '32', '--quiet'])
    assert rc == 0, err
    assert len(calls) == 1, calls

def _read_only(monkeypatch, folder: Path):
    """Make `folder` behave as a read-only file system (tests run as root, where permission bits stop nothing): creating
    a file or a folder inside it fails with EROFS, as on a read-only mount."""
    import builtins, errno
    ro = str(folder.resolve())
    def inside(p) -> bool:
        try: return os.path.abspath(os.fspath(p)).startswith(ro + os.sep)
        except TypeError: return False
    def erofs(p): raise OSError(errno.EROFS, 'Read-only file system', os.fspath(p))
    real_mkdir, real_open, real_os_open = os.mkdir, builtins.open, os.open
    monkeypatch.setattr(os, 'mkdir', lambda p, *a, **k: erofs(p) if inside(p) else real_mkdir(p, *a, **k))
    monkeypatch.setattr(os, 'open', lambda p, flags, *a, **k: erofs(p) if inside(p) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                        else real_os_open(p, flags, *a, **k))
    monkeypatch.setattr(builtins, 'open', lambda f, mode='r', *a, **k: erofs(f) if inside(f) and set(mode) & set('wax+')
                        else real_open(f, mode, *a, **k))

@pytest.mark.parametrize('command', ['predict', 'distill', 'finetune', 'pretrain'])
def test_read_only_output_folder(command, ws, tmp_path, monkeypatch):
    "An output folder on a read-only file system: one line naming the path and saying why, exit 2, nothing earlier changed."
    ro = tmp_path / 'ro'; ro.mkdir(); (ro / 'earlier.txt').write_text('kept\n')
    (tmp_path / 'dt.txt').write_text(''.join(f'sentence number {i} about a film\n' for i in range(40)))
    argv = {'predict': ['predict', '--model', str(ws / 'clf'), '--input', str(ws / 'good.txt'), '--out', str(ro / 'preds.jsonl'), '--max-len', '64'],
            'distill': ['distill', '--teacher', str(ws / 'clf'), '--transfer', str(tmp_path / 'dt.txt'), '--student', '2/128',
                        '--out', str(ro / 'student'), '--max-steps', '1', '--max-len', '32', '--quiet'],
            'finetune': ['finetune', '--model', '2/128', '--out', str(ro / 'ft'), '--max-steps', '1', '--quiet'],
            'pretrain': ['pretrain', '--preset', 'test', '--out', str(ro / 'mlm'), '--max-steps', '1']}[command]
    _read_only(monkeypatch, ro)
    rc, err = run(argv)
    lines = [l for l in err.strip().splitlines() if l.strip() and 'warning' not in l]
    assert rc == 2 and len(lines) == 1 and 'Read-only file system' in lines[0] and str(ro) in lines[0], err
    assert 'Traceback' not in err
    monkeypatch.undo()
    assert sorted(p.name for p in ro.iterdir()) == ['earlier.txt'] and (ro / 'earlier.txt').read_text() == 'kept\n'

def test_small_corpus_gets_a_batch_it_can_fill(tmp_path):
    "A user's few-hundred-line corpus: a smaller batch, said in one warning line; it trains."
    (tmp_path / 'corpus.txt').write_text(''.join(f'This is sentence number {i} of a small corpus about films and books.\n'
                                                 for i in range(400)))
    rc, err = run(['pretrain', '--preset', 'test', '--corpus', str(tmp_path / 'corpus.txt'), '--out', str(tmp_path / 'mlm'),
                   '--max-steps', '2', '--batch-size', '64'])
    assert rc == 0, err
    warns = [l for l in err.splitlines() if 'warning' in l]
    assert len(warns) == 1 and 'leaves 28 training rows' in warns[0] and 'using batch_size=28' in warns[0], err
    assert json.loads((tmp_path / 'mlm' / 'pretrain_metrics.json').read_text())['batch_size'] == 28

def test_tiny_transfer_set_without_dev_says_the_score_is_rough(ws, tmp_path):
    "Distilling on 40 sentences with no dev data: it works, scored on 4 held-out sentences, and one warning line says so."
    (tmp_path / 'dt.txt').write_text(''.join(f'sentence number {i} about a film\n' for i in range(40)))
    rc, err = run(['distill', '--teacher', str(ws / 'clf'), '--transfer', str(tmp_path / 'dt.txt'), '--student', '2/128',
                   '--out', str(tmp_path / 'st'), '--max-steps', '1', '--max-len', '32', '--quiet'])
    warns = [l for l in err.splitlines() if 'warning' in l]
    assert rc == 0 and len(warns) == 1 and 'only 4 held out' in warns[0] and '--dev' in warns[0], err
