"""The named steps the long functions were split into (issue 12), each against an independent computation."""
import itertools, random
import numpy as np
import pytest, torch
from pd_nb.core import BertConfig
from pd_nb.bert import BertForSequenceClassification, BertModel
from pd_nb.classifier import TokenizedExamples
from pd_nb.pretrain import fit_batch_to_rows
from pd_nb.finetune import choose_config
from pd_nb.distill import copy_embeddings, init_kind
from pd_nb.experiments import repo_path
from pd_nb.core import repo_root

def test_fit_batch_to_rows_is_the_largest_fitting_multiple():
    for batch, rows, unit in itertools.product([8, 64, 128], [1, 7, 28, 63, 64, 500], [1, 2, 8]):
        if batch % unit: continue
        if rows < unit:
            with pytest.raises(ValueError): fit_batch_to_rows(batch, rows, unit)
            continue
        brute = max(b for b in range(unit, batch + 1, unit) if b <= rows)
        assert fit_batch_to_rows(batch, rows, unit) == brute, (batch, rows, unit)

def test_subset_matches_a_list_of_lists():
    rng = random.Random(0)
    seqs = [[rng.randrange(1000) for _ in range(rng.randrange(3, 12))] for _ in range(30)]
    n_first = np.array([rng.randrange(1, len(s) + 1) for s in seqs])
    ex = TokenizedExamples(np.concatenate(seqs), np.concatenate([[0], np.cumsum([len(s) for s in seqs])]), n_first,
                           {'labels': np.arange(30)})
    idx = [rng.randrange(30) for _ in range(12)]
    sub = ex.subset(idx)
    assert [list(sub.tokens(i)) for i in range(len(sub))] == [seqs[i] for i in idx]
    assert list(sub.n_first) == list(n_first[idx]) and list(sub.labels) == idx

def test_choose_config_picks_the_best_mean():
    rng = random.Random(1)
    runs = [dict(run=f'r{i}', batch_size=bs, lr=lr, seed=s, score=rng.random())
            for i, (bs, lr, s) in enumerate(itertools.product([16, 32], [1e-4, 3e-5], [0, 1, 2]))]
    configs, chosen, kept = choose_config(runs)
    means = {(bs, lr): np.mean([r['score'] for r in runs if (r['batch_size'], r['lr']) == (bs, lr)]) for bs, lr in itertools.product([16, 32], [1e-4, 3e-5])}
    best = max(means, key=means.get)
    assert (chosen['batch_size'], chosen['lr']) == best and abs(chosen['mean'] - means[best]) < 1e-12
    assert kept['score'] == max(r['score'] for r in runs if (r['batch_size'], r['lr']) == best)

def test_copy_embeddings_copies_only_what_it_says():
    torch.manual_seed(0)
    src = BertModel(BertConfig(n_layers=1, hidden=32, n_heads=2, ffn=64, vocab_size=120, max_positions=64))
    for which in ('word', 'all'):
        student = BertForSequenceClassification(BertConfig(n_layers=2, hidden=32, n_heads=2, ffn=64, vocab_size=100, max_positions=32))
        before = {k: v.clone() for k, v in student.state_dict().items()}
        copy_embeddings(student, src, which)
        e, s = student.bert.embeddings, src.embeddings
        assert torch.equal(e.word.weight, s.word.weight[:100])
        assert torch.equal(e.position.weight, s.position.weight[:32]) == (which == 'all')
        changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
        assert all(k.startswith('bert.embeddings.') for k in changed)
    with pytest.raises(ValueError): copy_embeddings(student, src, 'some')

def test_init_kind_and_repo_path():
    assert [init_kind(s) for s in ('random', 'runs/x', 'truncated:a/b', 'embeddings:c')] == \
        [('random', ''), ('checkpoint', ''), ('truncated', 'a/b'), ('embeddings', 'c')]
    with pytest.raises(ValueError): init_kind('truncated:')
    assert repo_path(repo_root() / 'data' / 'x') == 'data/x' and repo_path('/not/in/repo') == '/not/in/repo' and repo_path(None) is None
