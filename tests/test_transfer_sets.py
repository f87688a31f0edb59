"""No transfer set D_T holds the evaluation data of the task it serves (issue 13).

For every task/transfer pair of the registry `recipes.DEFAULT_TRANSFER` (and each of those tasks with its own
name as the transfer source), D_T is built the way the recipes build it (`transfer_set`) and compared, by text,
with the task's evaluation split read independently: the file each task is scored on is named here from the data
README (GLUE dev, MNLI dev-matched, SNLI dev, IMDB test) and read with plain csv/json/lzma. Runs on the embedded
sample, and also on the full data when `PD_NB_DATA` is set."""
import csv, json, lzma, os, re, warnings
from pathlib import Path
import pytest
from pd_nb.core import sample_dir
from pd_nb.data import DataError, eval_split
from pd_nb.recipes import DEFAULT_TRANSFER, RecipeConfig, transfer_set

# the file each task is scored on and its text fields (the data README; MNLI/SNLI dev are also the 'nli' D_T files)
EVAL_FILES = {'sst2': ('sst2/dev.tsv', ('sentence',)), 'rte': ('rte/dev.tsv', ('sentence1', 'sentence2')),
              'mnli': ('mnli/dev_matched.jsonl', ('premise', 'hypothesis')), 'snli': ('snli/dev.jsonl', ('premise', 'hypothesis')),
              'imdb': ('imdb/test.jsonl.xz', ('text',))}
ROOTS = [sample_dir()] + ([Path(os.environ['PD_NB_DATA'])] if os.environ.get('PD_NB_DATA') else [])
PAIRS = sorted(DEFAULT_TRANSFER.items()) + [(t, t) for t in sorted(DEFAULT_TRANSFER)]


def _key(text: str) -> str:
    "A coarse key (HTML line breaks, case, punctuation and spacing ignored): it finds more overlaps than exact text."
    return ' '.join(re.sub(r'[\W_]+', ' ', re.sub(r'<br\s*/?>', ' ', text, flags=re.I).lower()).split())


def _records(path: Path):
    if path.suffix == '.tsv':
        with open(path, encoding='utf-8', newline='') as f:
            yield from csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
    else:
        with (lzma.open(path, 'rt', encoding='utf-8') if path.suffix == '.xz' else open(path, encoding='utf-8')) as f:
            yield from (json.loads(line) for line in f if line.strip())


def _eval_keys(root: Path, task: str) -> set | None:
    rel, fields = EVAL_FILES[task]
    if not (root / rel).exists(): return None
    return {'\t'.join(_key(r[f]) for f in fields) for r in _records(root / rel)}


def test_every_registry_task_names_its_evaluation_file():
    assert set(DEFAULT_TRANSFER) == set(EVAL_FILES), 'a task was added to DEFAULT_TRANSFER: name its evaluation file here'
    for task, (rel, _) in EVAL_FILES.items():                 # the library scores each task on the file named above
        from pd_nb.data import get_task
        assert get_task(task).files[eval_split(task)] == rel


@pytest.mark.timeout(900)
@pytest.mark.parametrize('root', ROOTS, ids=['sample', 'full'][:len(ROOTS)])
@pytest.mark.parametrize('task,source', PAIRS, ids=[f'{t}<-{s}' for t, s in PAIRS])
def test_transfer_set_has_no_evaluation_text(root, task, source):
    held = _eval_keys(root, task)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')                   # the count of dropped duplicates is reported as a warning
            dt = transfer_set(RecipeConfig(task=task, transfer=source, data_dir=str(root)))
    except DataError as e:                                    # refused: nothing but evaluation data, in one line naming both
        assert held and f"'{task}'" in str(e) and f"'{source}'" in str(e) and '\n' not in str(e), str(e)
        return
    except FileNotFoundError:                                 # the source is not in this data directory at all
        assert root == sample_dir(); return
    assert len(dt) > 0
    if held is None: return                                   # the evaluation split is not here, so D_T cannot hold it
    cols = ['text_a', 'text_b'] if 'text_b' in dt.column_names else ['text_a']
    keys = ['\t'.join(_key(t) for t in texts) for texts in zip(*(dt[c] for c in cols))]
    overlap = held.intersection(keys)
    assert not overlap, f"{len(overlap)} evaluation texts of {task!r} in transfer set {source!r}, e.g. {sorted(overlap)[:3]}"


@pytest.mark.parametrize('root', ROOTS, ids=['sample', 'full'][:len(ROOTS)])
def test_imdb_reviews_before_sentence_splitting(root):
    "IMDB's D_T is split into sentences; the reviews it comes from must not be IMDB test reviews either."
    from pd_nb.data import load_transfer
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        reviews = load_transfer('imdb', str(root), sentences=False, task='imdb')
    n = {s: sum(1 for _ in _records(root / f'imdb/{s}.jsonl.xz')) for s in ('train', 'test', 'unsup')}
    held = _eval_keys(root, 'imdb')
    assert 0 < len(reviews) <= n['train'] + n['unsup']        # no test review file; duplicates of test reviews dropped
    assert not held.intersection(_key(t) for t in reviews['text_a'])


def test_user_file_loses_evaluation_texts_by_text(tmp_path):
    "A user's transfer file is checked by text: a dev sentence with other case/punctuation is dropped and counted."
    from pd_nb.data import load_transfer
    (tmp_path / 'sst2').mkdir()
    (tmp_path / 'sst2' / 'dev.tsv').write_text('sentence\tlabel\nit \'s a bad film . \t0\na gem \t1\n', encoding='utf-8')
    f = tmp_path / 'mine.txt'
    f.write_text("It's a BAD film!\nA gem, truly.\nA gem\nsomething else\n", encoding='utf-8')
    with pytest.warns(UserWarning, match=r"dropped 2 examples whose text is in the 'dev' split of task 'sst2'"):
        ds = load_transfer(f, tmp_path, task='sst2')
    assert ds['text_a'] == ['A gem, truly.', 'something else']
    assert load_transfer(f, tmp_path)['text_a'][0] == "It's a BAD film!"      # without a task nothing is dropped
    only_dev = tmp_path / 'dev_only.txt'; only_dev.write_text('a gem\n', encoding='utf-8')
    with pytest.raises(DataError, match=r"transfer set '.*dev_only.txt' for task 'sst2' is empty"), warnings.catch_warnings():
        warnings.simplefilter('ignore'); load_transfer(only_dev, tmp_path, task='sst2')
