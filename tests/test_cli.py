"""The stage commands `pd_nb teacher | finetune | distill | eval` as a user calls them: the practitioner's
path (teacher folder + unlabelled .txt, no task: the teacher's labels, scored by agreement with the
teacher on held-out lines, checked by hand), `eval` against Hugging Face's own classifier, config-file
and flag priority, distillation resumed from a checkpoint (same weights as an uninterrupted run), and
every refusal: exit status 2, one line on stderr, nothing written and nothing already there changed."""
import contextlib, hashlib, io, json, os, signal
from pathlib import Path
import numpy as np
import pytest
import torch
import transformers
from pd_nb.cli import main
from pd_nb.core import load_json
from pd_nb.data import get_tokenizer, load_task
from pd_nb.bert import BertForMaskedLM
from pd_nb.hub import save_hf, from_hf
from pd_nb.core import student_config
from pd_nb.classifier import tokenize_examples, predict_logits
from pd_nb.distill import DistillConfig, distill, init_student

pytestmark = pytest.mark.xdist_group("cli")      # one module-scoped teacher shared by the tests below
transformers.logging.set_verbosity_error()

def run(*argv):
    "Run the CLI in this process; (exit status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()

def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob('*')):
        if p.is_file(): h.update(str(p.relative_to(folder)).encode()); h.update(p.read_bytes())
    return h.hexdigest()

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    old = os.environ.get('PD_NB_CACHE'); os.environ['PD_NB_CACHE'] = str(root / 'cache')
    rc, out, err = run('teacher', '--out', root / 'teacher', '--n-layers', '1', '--max-steps', '3', '--max-train', '32',
                       '--max-dev', '32', '--max-len', '32', '--batch-size', '8', '--quiet')
    assert rc == 0, err
    texts = [t for t in load_task('imdb', 'train')['text_a'][:60]]
    (root / 'unlabelled.txt').write_text('\n'.join(t.replace('\n', ' ') for t in texts) + '\n')
    yield root
    if old is None: os.environ.pop('PD_NB_CACHE', None)
    else: os.environ['PD_NB_CACHE'] = old

DISTILL = ['--max-steps', '3', '--max-len', '32', '--batch-size', '8', '--quiet']

def test_teacher_command_stores_dev_accuracy(work):
    t = load_json(work / 'teacher' / 'teacher.json')
    assert t['task'] == 'sst2' and t['label_names'] == ['negative', 'positive'] and t['n_train'] == 32 and t['n_dev'] == 32
    assert 0 <= t['dev_accuracy'] <= 1

def test_practitioner_path_no_task(work):
    out = work / 'student'
    rc, so, err = run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny',
                      '--out', out, *DISTILL)
    assert rc == 0, err
    s = load_json(out / 'distill_metrics.json')
    assert s['label_names'] == ['negative', 'positive'] and s['task'] == 'teacher:teacher'
    assert s['n_transfer'] == 54 and s['n_dev'] == 6 and s['dev_split'] == '6 held-out D_T examples (teacher argmax)'
    assert 'agreement with the teacher' in so
    # the agreement recomputed by hand: the saved student and the teacher (loaded by Hugging Face) on the held-out lines
    lines = (work / 'unlabelled.txt').read_text().splitlines()
    held = np.sort(np.random.default_rng(0).permutation(len(lines))[:6])
    ex = tokenize_examples([lines[i] for i in held], get_tokenizer(), 32)
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(work / 'teacher').eval()
    student = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    agree = (predict_logits(student, ex).argmax(1) == predict_logits(teacher, ex).argmax(1)).mean()
    assert abs(agree - s['dev_score']) < 1e-9
    assert student.config.id2label == {0: 'negative', 1: 'positive'}

def test_eval_matches_hugging_face(work):
    rc, so, err = run('eval', '--model', work / 'teacher', '--task', 'sst2', '--max-len', '32', '--max-n', '40', '--json')
    assert rc == 0, err
    res = json.loads(so)
    dev = load_task('sst2', 'dev')
    idx = np.sort(np.random.default_rng(0).choice(len(dev), 40, replace=False))
    tok = transformers.AutoTokenizer.from_pretrained(work / 'teacher')
    model = transformers.AutoModelForSequenceClassification.from_pretrained(work / 'teacher').eval()
    correct = 0
    with torch.no_grad():
        for i in idx:
            enc = tok(dev[int(i)]['text_a'], truncation=True, max_length=32, return_tensors='pt')
            correct += int(model(**enc).logits.argmax(-1).item() == dev[int(i)]['label'])
    assert res['n'] == 40 and abs(res['accuracy'] - correct / 40) < 1e-9

def test_eval_config_file_then_flags(work, tmp_path):
    conf = tmp_path / 'eval.json'
    conf.write_text(json.dumps({'task': 'sst2', 'max_len': 32, 'max_n': 40}))
    rc, so, err = run('eval', '--model', work / 'teacher', '--config', conf, '--max-n', '20', '--json')
    assert rc == 0, err
    assert json.loads(so)['n'] == 20
    conf.write_text(json.dumps({'tsk': 'sst2'}))
    rc, so, err = run('eval', '--model', work / 'teacher', '--config', conf)
    assert rc == 2 and 'tsk' in err and 'eval.json' in err

def test_finetune_command_basic_and_labelled_files(work, tmp_path):
    train = tmp_path / 'train.jsonl'
    train.write_text(''.join(json.dumps({'sentence': t, 'label': l}) + '\n' for t, l in
                             [('a great film', 'positive'), ('awful , boring', 'negative')] * 8))
    rc, so, err = run('finetune', '--model', 'tiny', '--out', tmp_path / 'basic', '--train', train, '--max-steps', '2',
                      '--max-dev', '16', '--max-len', '32', '--batch-size', '8', '--quiet')
    assert rc == 0, err
    s = load_json(tmp_path / 'basic' / 'finetune_metrics.json')
    assert s['n_train'] == 16 and s['steps'] == 2 and s['n_dev'] == 16
    bad = tmp_path / 'bad.jsonl'
    bad.write_text(json.dumps({'sentence': 'x', 'label': 'neutral'}) + '\n')
    rc, so, err = run('finetune', '--model', 'tiny', '--out', tmp_path / 'bad_out', '--train', bad, '--quiet')
    assert rc == 2 and 'neutral' in err and 'bad.jsonl' in err and not (tmp_path / 'bad_out').exists()

def test_config_file_then_flags(work, tmp_path):
    cfg = tmp_path / 'distill.json'
    cfg.write_text(json.dumps({'lr': 5e-4, 'max_steps': 5, 'batch_size': 8, 'max_len': 32}))
    rc, so, err = run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny',
                      '--out', tmp_path / 's', '--config', cfg, '--max-steps', '2', '--quiet')
    assert rc == 0, err
    s = load_json(tmp_path / 's' / 'distill_metrics.json')
    assert s['steps'] == 2 and s['lr'] == 5e-4 and s['batch_size'] == 8
    cfg.write_text(json.dumps({'learning_rate': 1e-4}))
    rc, so, err = run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny',
                      '--out', tmp_path / 's2', '--config', cfg, '--quiet')
    assert rc == 2 and 'learning_rate' in err and 'distill.json' in err and not (tmp_path / 's2').exists()

def _refused(rc, err, *words, absent=None):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    for w in words: assert w in err, (w, err)
    if absent is not None: assert not Path(absent).exists(), f"{absent} was written"

def test_refusals(work, tmp_path):
    t, u = work / 'teacher', work / 'unlabelled.txt'
    (tmp_path / 'empty.txt').write_text('')
    rc, _, err = run('distill', '--teacher', t, '--transfer', tmp_path / 'empty.txt', '--student', 'tiny', '--out', tmp_path / 'a', *DISTILL)
    _refused(rc, err, 'empty.txt', absent=tmp_path / 'a')
    rc, _, err = run('distill', '--teacher', tmp_path / 'no_teacher', '--transfer', u, '--student', 'tiny', '--out', tmp_path / 'b', *DISTILL)
    _refused(rc, err, 'no_teacher', 'no such', absent=tmp_path / 'b')
    rc, _, err = run('distill', '--teacher', t, '--transfer', u, '--student', tmp_path / 'no_student', '--out', tmp_path / 'c', *DISTILL)
    _refused(rc, err, 'no_student', absent=tmp_path / 'c')
    rc, _, err = run('distill', '--teacher', t, '--task', 'rte', '--transfer', u, '--student', 'tiny', '--out', tmp_path / 'd', *DISTILL)
    _refused(rc, err, "['negative', 'positive']", "['entailment', 'not_entailment']", absent=tmp_path / 'd')
    mlm = tmp_path / 'mlm'                                          # a pre-trained checkpoint is not a teacher
    save_hf(BertForMaskedLM(student_config('tiny', max_positions=64)), mlm, get_tokenizer())
    rc, _, err = run('distill', '--teacher', mlm, '--transfer', u, '--student', 'tiny', '--out', tmp_path / 'e', *DISTILL)
    _refused(rc, err, 'no classification head', absent=tmp_path / 'e')
    vocab = tmp_path / 'vocab.txt'                                  # a student pre-trained with another vocabulary
    vocab.write_text('\n'.join(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', *'abcdefghijklmnopqrstuvwxyz']) + '\n')
    save_hf(BertForMaskedLM(student_config('tiny', vocab_size=31)), tmp_path / 'other', transformers.BertTokenizerFast(str(vocab)))
    rc, _, err = run('distill', '--teacher', t, '--transfer', u, '--student', tmp_path / 'other', '--out', tmp_path / 'f', *DISTILL)
    _refused(rc, err, 'different vocabularies', absent=tmp_path / 'f')
    rc, _, err = run('distill', '--teacher', t, '--transfer', u, '--student', 'truncated:' + str(mlm), '--out', tmp_path / 'g', *DISTILL)
    _refused(rc, err, '--size', absent=tmp_path / 'g')
    rc, _, err = run('eval', '--model', mlm, '--task', 'sst2')
    _refused(rc, err, 'no classification head')
    rc, _, err = run('eval', '--model', t, '--task', 'mnli')
    _refused(rc, err, '2 classes', '3 labels')

def test_existing_model_is_not_overwritten(work, tmp_path):
    out = tmp_path / 's'
    assert run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny', '--out', out, *DISTILL)[0] == 0
    before = tree_hash(out)
    rc, _, err = run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny', '--out', out, *DISTILL)
    _refused(rc, err, str(out), '--overwrite')
    assert tree_hash(out) == before
    rc, _, err = run('distill', '--teacher', work / 'teacher', '--transfer', work / 'unlabelled.txt', '--student', 'tiny', '--out', out,
                     '--overwrite', '--lr', '1e-3', *DISTILL)
    assert rc == 0 and load_json(out / 'distill_metrics.json')['lr'] == 1e-3

def test_labelled_transfer_file_warns_and_drops_labels(work, tmp_path):
    f = tmp_path / 'with_labels.jsonl'
    lines = (work / 'unlabelled.txt').read_text().splitlines()
    f.write_text(''.join(json.dumps({'text': t, 'label': 'positive'}) + '\n' for t in lines))
    rc, so, err = run('distill', '--teacher', work / 'teacher', '--transfer', f, '--student', 'tiny', '--out', tmp_path / 's', *DISTILL)
    assert rc == 0 and 'warning' in err and "label field(s) ['label']" in err, err
    assert load_json(tmp_path / 's' / 'distill_metrics.json')['alpha'] == 0.0

from learner_toy import StopAt          # stop as SIGTERM would, after step n

def test_distill_resume_equals_uninterrupted(work, tmp_path):
    texts = (work / 'unlabelled.txt').read_text().splitlines()
    probs = np.random.default_rng(0).dirichlet([1, 1], len(texts)).astype(np.float32)
    cfg = DistillConfig(lr=1e-3, batch_size=8, max_steps=6, max_len=32, ckpt_every=2, eval_batch_size=32)
    dev = {'text_a': texts[:16], 'label': [0, 1] * 8}
    def student(): return init_student('random', 'tiny', label_names=['negative', 'positive'], seed=0, max_positions=64)
    a = student(); distill(a, probs, texts, 'sst2', cfg, tmp_path / 'a', dev=dev, progress=False)
    b = student()
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        distill(b, probs, texts, 'sst2', cfg, tmp_path / 'b', dev=dev, progress=False, cbs=[StopAt(3)])
    assert not (tmp_path / 'b' / 'model.safetensors').exists()
    with pytest.raises(FileExistsError, match='resume'):
        distill(student(), probs, texts, 'sst2', cfg, tmp_path / 'b', dev=dev, progress=False)
    s = distill(student(), probs, texts, 'sst2', cfg, tmp_path / 'b', dev=dev, progress=False, resume=True)
    assert s['steps'] == 6
    wa, wb = from_hf(tmp_path / 'a', 'sequence_classification').state_dict(), from_hf(tmp_path / 'b', 'sequence_classification').state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_experiment_command_runs_then_reads_back(tmp_path):
    "`pd_nb experiment NAME --tiny`: trains its plan once; the same command again trains nothing and prints the same points."
    from pd_nb.experiments import milestone_folders
    argv = ('experiment', 'transfer_size', '--tiny', '--runs-dir', tmp_path / 'runs', '--results-dir', tmp_path / 'res',
            '--pretrained', os.path.relpath(milestone_folders()[0]), '--seeds', '0', '1')   # a relative path, as users type it
    rc, so, err = run(*argv)
    assert rc == 0, err
    files = sorted(p.relative_to(tmp_path / 'res') for p in (tmp_path / 'res').rglob('*.json'))
    assert [str(f) for f in files] == sorted(f'transfer_size/{"no_pretraining" if r == "distillation" else milestone_folders()[0].name}/n{n:07d}/{r}_seed{s}.json' for n in (16, 32) for r in ('distillation', 'pd') for s in (0, 1))
    rc2, so2, err2 = run(*argv)
    assert rc2 == 0 and '0 trained, 8 read back' in so2 and so2.splitlines()[-6:] == so.splitlines()[-6:], (so, so2)
