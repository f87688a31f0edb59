"""The GPU image has torch and transformers but not `datasets`, nbdev, fastcore, matplotlib or seaborn: the library,
its training stages, the CLI's training commands and the benchmarks must import and run without them."""
import os, subprocess, sys, textwrap
from pathlib import Path
import pytest

BLOCK = textwrap.dedent('''
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        names = ('datasets', 'nbdev', 'fastcore', 'matplotlib', 'seaborn', 'execnb')
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in self.names: raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on the GPU image)")
    sys.meta_path.insert(0, Block())
''')

def run_blocked(code: str, tmp_path, timeout=600) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PD_NB_CACHE=str(tmp_path / 'cache'), OMP_NUM_THREADS='1', PYTHONPATH=str(root))
    env.pop('PD_NB_DATA', None)
    return subprocess.run([sys.executable, '-c', BLOCK + textwrap.dedent(code)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)

def test_blocked_really_blocks(tmp_path):
    r = run_blocked("import datasets", tmp_path)
    assert r.returncode != 0 and 'blocked' in r.stderr

def test_imports_without_datasets_nbdev_plotting(tmp_path):
    r = run_blocked('''
        import pd_nb, pd_nb.core, pd_nb.bert, pd_nb.data, pd_nb.hub, pd_nb.learner, pd_nb.pretrain, pd_nb.finetune
        import pd_nb.teacher, pd_nb.distill, pd_nb.recipes, pd_nb.cli
        import runpy; sys.argv = ['bench_mlm.py', '--help']
        try: runpy.run_path('%s', run_name='__main__')
        except SystemExit as e: assert e.code == 0, e.code
        print('IMPORTED')
    ''' % (Path(__file__).resolve().parents[1] / 'bench' / 'bench_mlm.py'), tmp_path)
    assert r.returncode == 0 and 'IMPORTED' in r.stdout, r.stderr[-3000:]

def test_stages_run_without_datasets(tmp_path):
    "Readers give `Columns`; a teacher, D_T labelling, distillation and fine-tuning run on the embedded sample; so does pretraining."
    r = run_blocked('''
        from pd_nb.data import load_task, load_transfer, read_file, Columns
        from pd_nb.cli import main
        dev = load_task('sst2', 'dev'); dt = load_transfer('imdb', max_examples=50, task='sst2')
        assert isinstance(dev, Columns) and isinstance(dt, Columns) and dev.features['label'].names == ['negative', 'positive']
        assert len(dt) == 50 and dt.column_names == ['text_a']
        common = ['--max-steps', '2', '--batch-size', '8']
        assert main(['pretrain', '--preset', 'test', '--out', 'mlm', '--max-steps', '2']) == 0
        assert main(['teacher', '--task', 'sst2', '--out', 'teacher', '--n-layers', '1', '--max-train', '32', '--max-dev', '16', *common]) == 0
        assert main(['distill', '--task', 'sst2', '--teacher', 'teacher', '--transfer', 'imdb', '--student', 'mlm', '--out', 'student',
                     '--max-transfer', '40', '--max-dev', '16', *common]) == 0
        assert main(['finetune', '--task', 'sst2', '--model', 'student', '--out', 'ft', '--max-train', '32', '--max-dev', '16', *common]) == 0
        print('RAN')
    ''', tmp_path)
    assert r.returncode == 0 and 'RAN' in r.stdout, (r.stdout[-2000:], r.stderr[-3000:])

def test_requirements_leave_the_users_torch_alone():
    "The package states ranges; the CPU wheel pin lives in the Makefile (and so in CI), not in what `pip install` enforces."
    import configparser
    root = Path(__file__).resolve().parents[1]
    cfg = configparser.ConfigParser(); cfg.read(root / 'settings.ini')
    reqs = (cfg['DEFAULT']['requirements'] + ' ' + cfg['DEFAULT'].get('pip_requirements', '')).split()
    assert reqs and not [r for r in reqs if '==' in r], reqs
    torch_req = [r for r in reqs if r.split('>')[0].split('<')[0].split('=')[0] == 'torch'][0]
    assert torch_req.startswith('torch>=2.') and (2, 11) >= tuple(int(x) for x in torch_req.split('>=')[1].split('.'))   # the GPU image's torch 2.11 satisfies it
    assert 'torch==2.13.0' in (root / 'Makefile').read_text()
