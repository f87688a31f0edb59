"""A chapter's stored outputs come from the code in the repository, and its runtime line from its measured run.

`docs/execute_notebooks.py` executes a chapter and records, in `nbs/executed.json`, a fingerprint of what ran: its code
cells and every library module it depends on (comments and docstrings excluded). Here every chapter with stored outputs
must match its record; the fingerprint itself is checked against hand-made changes."""
import importlib.util, json, re, shutil
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location('execute_notebooks', ROOT / 'docs' / 'execute_notebooks.py')
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
NOTEBOOKS = sorted((ROOT / 'nbs').glob('*.ipynb'))


@pytest.mark.parametrize('nb', [p for p in NOTEBOOKS if ex.has_outputs(p)], ids=lambda p: p.stem)
def test_stored_outputs_are_from_the_current_code(nb):
    why = ex.stale_reasons(nb, ex.load_record())
    assert not why, (f"nbs/{nb.name}: its stored outputs were produced by other code ({'; '.join(why)}); "
                     f"re-run: python docs/execute_notebooks.py {nb.stem}")


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_runtime_line_is_the_measured_one(nb):
    record = ex.load_record()
    assert nb.stem in record, f"nbs/{nb.name}: never executed by docs/execute_notebooks.py (no runtime measured)"
    cells = json.loads(nb.read_text())['cells']
    assert cells[1].get('id') == ex.RUNTIME_ID, f"nbs/{nb.name}: the runtime line must be the cell right after the title"
    assert ''.join(cells[1]['source']) == ex.runtime_text(record[nb.stem])


def test_one_switch_name_for_the_full_run():
    "Every chapter that shrinks under test says so with one parameter, FULL_RUN (no STEPS/PRESET/FULL/small switches)."
    for nb in NOTEBOOKS:
        code = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        body = '\n'.join(c for c in code if not c.startswith('#| export'))
        if 'in_test()' not in body: continue
        assert re.search(r'^FULL_RUN = ', body, re.M), f"nbs/{nb.name}: shrinks under test but defines no FULL_RUN parameter"
        odd = re.findall(r'^(\w+) = .*\bin_test\(\)', body, re.M)
        assert set(odd) <= {'FULL_RUN', 'LM_MAX_TOKENS'}, f"nbs/{nb.name}: sizes switched by in_test() directly: {odd} (derive them from FULL_RUN)"


def test_code_hash_ignores_docstrings_and_comments_but_not_code():
    src = 'def f(x):\n    "Add one."\n    return x + 1  # the answer\n'
    assert ex.code_hash(src) == ex.code_hash('def f(x):\n    """Add one, reworded."""\n    return x + 1\n')
    assert ex.code_hash(src) != ex.code_hash('def f(x):\n    "Add one."\n    return x + 2\n')
    assert ex.code_hash(src) != ex.code_hash('def f(y):\n    "Add one."\n    return y + 1\n')


def test_fingerprint_follows_imports(tmp_path):
    "A change in a module imported two steps away makes a notebook stale; a module it does not use does not."
    lib = tmp_path / 'pd_nb'; lib.mkdir()
    (lib / 'core.py').write_text('X = 1\n')
    (lib / 'data.py').write_text('from .core import X\nY = X\n')
    (lib / 'other.py').write_text('Z = 3\n')
    nb = tmp_path / '01_data.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': ['#| default_exp data']},
                                        {'cell_type': 'code', 'source': ['from pd_nb.data import Y\n', 'Y']}]}))
    assert sorted(ex.fingerprint(nb, lib)['modules']) == ['core', 'data']
    record = {'01_data': {'fingerprint': ex.fingerprint(nb, lib)}}
    assert ex.stale_reasons(nb, record, lib) == []
    (lib / 'other.py').write_text('Z = 4\n')
    (lib / 'core.py').write_text('"The core, now documented."\nX = 1  # unchanged\n')
    assert ex.stale_reasons(nb, record, lib) == []
    (lib / 'core.py').write_text('X = 2\n')
    assert ex.stale_reasons(nb, record, lib) == ['library code changed: pd_nb/core.py']
    cells = json.loads(nb.read_text()); cells['cells'][1]['source'] = ['from pd_nb.data import Y  # reworded comment\n', 'Y']
    nb.write_text(json.dumps(cells))
    assert ex.stale_reasons(nb, record, lib) == ['library code changed: pd_nb/core.py']   # a comment in a cell is not code
    cells['cells'][1]['source'] = ['from pd_nb.data import Y\n', 'Y + 1']
    nb.write_text(json.dumps(cells))
    assert ex.stale_reasons(nb, record, lib)[0] == 'its code cells changed'
    assert ex.stale_reasons(nb, {}, lib) == ['never executed by docs/execute_notebooks.py']
