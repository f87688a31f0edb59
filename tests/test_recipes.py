"""pd_nb.recipes: each of the five recipes end to end on a tiny setting (a tiny teacher fine-tuned once),
the files each run writes, PD-F starting from PD's output (tensors compared with the PD folder loaded
independently), the shared soft-label cache, and the refusals (unknown name, missing teacher / checkpoint)."""
import os
from dataclasses import replace
from pathlib import Path
import pytest
import torch
import transformers
from pd_nb.core import load_json, set_seed
from pd_nb.bert import BertForSequenceClassification
from pd_nb.hub import from_hf
from pd_nb.data import load_task
from pd_nb.finetune import FinetuneConfig, finetune
from pd_nb.distill import DistillConfig, init_student
from pd_nb.recipes import RECIPES, RecipeConfig, RecipeError, get_recipe, run_recipe, default_pretrained

# the tests share one module-scoped teacher and the runs of test_recipe_end_to_end: keep them on one xdist worker, in order
pytestmark = pytest.mark.xdist_group("recipes")

transformers.logging.set_verbosity_error()
torch.set_num_threads(1)

NAMES = ['negative', 'positive']
SMALL = dict(n_heads=1, ffn=128, max_positions=64)

def _texts(split, n):
    ds = load_task('sst2', split)
    return {'text_a': ds['text_a'][:n], 'label': ds['label'][:n]}

@pytest.fixture(scope='module')
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp('recipes')
    old = os.environ.get('PD_NB_CACHE'); os.environ['PD_NB_CACHE'] = str(root / 'cache')   # keep soft labels out of the repo
    dev = _texts('dev', 24)
    teacher = init_student('random', (2, 64), label_names=NAMES, seed=3, **SMALL)
    finetune(teacher, 'sst2', FinetuneConfig(lr=1e-3, batch_size=16, max_steps=4, max_len=32, eval_batch_size=32),
             root / 'teacher', train=_texts('train', 64), dev=dev, progress=False)
    cfg = RecipeConfig(task='sst2', size='tiny', teacher=str(root / 'teacher'), transfer=None, max_transfer=100,
                       finetune=FinetuneConfig(lr=1e-3, batch_size=16, max_steps=3, max_train=100, max_len=32, eval_batch_size=32),
                       distill=DistillConfig(lr=1e-3, batch_size=16, max_steps=3, max_len=32, eval_batch_size=32),
                       seed=0, out_dir=str(root / 'runs'), student_overrides={'max_positions': 64})
    yield dict(root=root, cfg=cfg, dev=dev, results={})
    if old is None: os.environ.pop('PD_NB_CACHE', None)
    else: os.environ['PD_NB_CACHE'] = old

class StartWeights:
    "Record a copy of the model's weights when the stage's training starts."
    def before_fit(self, learn): self.state = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    order = -100

def test_names():
    assert list(RECIPES) == ['basic', 'distillation', 'pf', 'pd', 'pd_f']
    assert get_recipe('PD-F').name == 'pd_f' and get_recipe('Distillation').name == 'distillation' and get_recipe('PF').stages == ('finetune',)
    with pytest.raises(ValueError, match=r"unknown recipe 'pkd'.*basic.*pd_f"): get_recipe('pkd')
    with pytest.raises(ValueError, match='unknown recipe'): run_recipe('pd+f', RecipeConfig())

def test_refusals_before_training(setting, tmp_path):
    cfg = replace(setting['cfg'], out_dir=str(tmp_path))
    for name in ('distillation', 'pd', 'PD-F'):
        with pytest.raises(RecipeError, match='teacher'): run_recipe(name, replace(cfg, teacher=None))
    with pytest.raises(RecipeError, match="pre-trained student.*'mini'"): run_recipe('pf', replace(cfg, size='mini'))
    assert not any(tmp_path.iterdir())                            # nothing was written
    assert default_pretrained('tiny') is not None and default_pretrained('mini') is None

@pytest.fixture(scope='module')
def runs(setting):
    "All five recipes, run once in the paper's order (PD before PD-F); each with the weights it started from."
    for name in ('basic', 'distillation', 'pf', 'pd', 'pd_f'):
        cb = StartWeights()
        setting['results'][name] = (run_recipe(name, setting['cfg'], dev=setting['dev'], cbs=[cb]), cb.state)
    return setting['results']

@pytest.mark.parametrize('name', ['basic', 'distillation', 'pf', 'pd', 'pd_f'])
def test_recipe_end_to_end(setting, runs, name):
    res, state = runs[name]
    cb = StartWeights(); cb.state = state
    out = Path(setting['cfg'].out_dir) / f'{name}_seed0'
    stage_file = 'finetune_metrics.json' if RECIPES[name].stages[-1] == 'finetune' else 'distill_metrics.json'
    for f in ('config.json', 'model.safetensors', 'manifest.json', 'recipe_metrics.json', stage_file):
        assert (out / f).exists(), f
    saved = load_json(out / 'recipe_metrics.json')
    assert saved['recipe'] == RECIPES[name].title and saved['size'] == [2, 128] and saved['dev_score'] == res['dev_score']
    assert 0 <= res['dev_accuracy'] <= 1 and res['stages'][RECIPES[name].stages[-1]]['n_dev'] == 24
    assert load_json(out / 'manifest.json')['stage'] == f'recipe:{name}'
    back = from_hf(out, 'sequence_classification', new_head_ok=False)
    assert back.cfg.n_layers == 2 and back.cfg.hidden == 128 and res['params'] == sum(p.numel() for p in back.parameters())
    src = from_hf(default_pretrained('tiny'), 'base')
    w0 = cb.state['bert.embeddings.word.weight']
    if RECIPES[name].init == 'random':
        assert res['init'] == 'random' and not torch.equal(w0, src.embeddings.word.weight.detach())
    elif name in ('pf', 'pd'):                                    # training starts from the MLM checkpoint
        ref = src.state_dict()
        assert all(torch.equal(v, ref[k[5:]]) for k, v in cb.state.items() if k.startswith('bert.') and not k.startswith('bert.pooler'))
        assert res['init'] == str(default_pretrained('tiny'))
    if name in ('distillation', 'pd'):
        assert res['stages']['distill']['n_transfer'] == 100 and res['soft_labels']['n'] == 100

def test_pd_f_starts_from_pd_output(setting, runs):
    (pd_res, _), (pdf_res, start) = setting['results']['pd'], setting['results']['pd_f']
    pd_model = from_hf(Path(setting['cfg'].out_dir) / 'pd_seed0', 'sequence_classification', new_head_ok=False)
    ref = pd_model.state_dict()
    assert set(ref) == set(start)
    assert all(torch.equal(ref[k], start[k]) for k in ref), 'PD-F must start from PD\'s saved weights (head included)'
    assert pdf_res['stages']['distill']['dev_score'] == pd_res['dev_score'] and pdf_res['init'].startswith('PD')
    # and PD-F changed them: its output differs from PD's
    out = from_hf(Path(setting['cfg'].out_dir) / 'pd_f_seed0', 'sequence_classification', new_head_ok=False).state_dict()
    assert not all(torch.equal(out[k], ref[k]) for k in ref)

def test_pd_f_leaves_another_configs_pd_run_alone(setting, runs, tmp_path):
    "A PD run of another config in the sibling folder is not overwritten: PD-F runs its own PD inside its folder."
    import hashlib, shutil
    parent = tmp_path / 'runs'; shutil.copytree(Path(setting['cfg'].out_dir) / 'pd_seed0', parent / 'pd_seed0')
    digest = lambda d: hashlib.sha256(b''.join(p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file())).hexdigest()
    before = digest(parent / 'pd_seed0')
    cfg = replace(setting['cfg'], out_dir=str(parent), distill=replace(setting['cfg'].distill, lr=5e-4))   # another PD config
    res = run_recipe('pd_f', cfg, dev=setting['dev'])
    assert digest(parent / 'pd_seed0') == before
    inner = parent / 'pd_f_seed0' / 'pd_seed0'
    assert load_json(inner / 'recipe_metrics.json')['config']['distill']['lr'] == 5e-4 and res['init'] == f"PD ({inner})"

def test_soft_labels_shared(setting, runs):
    d, p = setting['results']['distillation'][0]['soft_labels'], setting['results']['pd'][0]['soft_labels']
    assert d['status'] == 'miss' and p['status'] == 'hit' and d['path'] == p['path']

def test_cli_run(tmp_path, capsys):
    from pd_nb.cli import main, recipe_config
    import json
    bad = tmp_path / 'bad.json'; bad.write_text(json.dumps({'task': 'sst2', 'finetune': {'lr': 1e-3, 'lrr': 1}}))
    assert main(['run', 'basic', '--config', str(bad), '--out-dir', str(tmp_path)]) == 2
    assert "field 'finetune': unknown field(s) ['lrr'] for FinetuneConfig" in capsys.readouterr().err
    assert main(['run', 'basic']) == 2 and '--out-dir' in capsys.readouterr().err
    good = tmp_path / 'good.json'
    good.write_text(json.dumps({'size': [2, 128], 'student_overrides': {'max_positions': 64},
                                'finetune': {'lr': 1e-3, 'max_train': 32, 'max_dev': 16, 'max_len': 32, 'batch_size': 16}}))
    assert recipe_config(json.loads(good.read_text())).finetune.max_train == 32
    assert main(['run', 'Basic', '--config', str(good), '--out-dir', str(tmp_path / 'r'), '--max-steps', '2', '--seed', '3', '--quiet']) == 0
    s = load_json(tmp_path / 'r' / 'basic_seed3' / 'recipe_metrics.json')
    assert s['seed'] == 3 and s['stages']['finetune']['steps'] == 2 and s['config']['finetune']['lr'] == 1e-3
    assert s['stages']['finetune']['n_train'] == 32 and s['stages']['finetune']['n_dev'] == 16
