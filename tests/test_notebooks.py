"""Execute every notebook with nbdev's test runner (IN_TEST set: tiny sizes; `cuda`/`slow` cells skipped),
and check that the library is exactly what the notebooks export and that the notebooks are clean."""
from pathlib import Path
import json, os, shutil, pytest
import nbdev.test as nbt
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted((ROOT / 'nbs').glob('*.ipynb'))
SKIP = get_config(path=ROOT).get('tst_flags', '').split()

@pytest.mark.timeout(900)
@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_notebook_runs(nb):
    ok, secs = nbt.test_nb(nb, skip_flags=SKIP, basepath=ROOT)
    assert ok, f"{nb.name} failed under nbdev's test runner (see the traceback above)"

def test_library_matches_notebooks(tmp_path):
    "pd_nb/*.py must be exactly what nbdev_export writes from the notebooks (never hand-edited, no orphans)."
    import subprocess, sys
    shutil.copy(ROOT / 'settings.ini', tmp_path / 'settings.ini')
    shutil.copytree(ROOT / 'nbs', tmp_path / 'nbs', ignore=shutil.ignore_patterns('runs', '.ipynb_checkpoints', '_*'))
    (tmp_path / 'pd_nb').mkdir()
    r = subprocess.run([sys.executable, '-c', 'from nbdev.doclinks import nbdev_export; nbdev_export()'],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if k != 'IN_TEST'})  # nbdev_export is a no-op under IN_TEST
    assert r.returncode == 0, r.stderr
    skip = ('__init__.py', '_modidx.py')
    exported = {p.name: p.read_text() for p in (tmp_path / 'pd_nb').glob('*.py') if p.name not in skip}
    ours = {p.name: p.read_text() for p in (ROOT / 'pd_nb').glob('*.py') if p.name not in skip}
    assert sorted(exported) == sorted(ours), f"modules without a notebook (orphans) or not exported: {set(ours) ^ set(exported)}"
    for name, text in exported.items():
        assert ours[name] == text, f"pd_nb/{name} differs from its notebook: run nbdev_export and commit"

def test_notebooks_are_clean(tmp_path):
    "Notebooks are committed after nbdev_clean (no execution counts, no stray metadata)."
    from nbdev.clean import clean_nb
    for nb in NBS:
        d = json.loads(nb.read_text(encoding='utf-8'))
        before = json.dumps(d, sort_keys=True)
        clean_nb(d, clear_all=False)
        assert json.dumps(d, sort_keys=True) == before, f"{nb.name} is not clean: run nbdev_clean"
