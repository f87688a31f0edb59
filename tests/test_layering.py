"""The architecture of ../shared/GUIDE.md: a module imports only from modules to its left (a lower chapter number),
never a private `_name` of another module; and every module has its notebook (nbdev's `default_exp`)."""
import ast, json, re
from pathlib import Path
from pd_nb.core import repo_root

def chapter_of_modules() -> dict[str, int]:
    "Module name -> the number of the notebook that exports it."
    out = {}
    for nb in sorted((repo_root() / 'nbs').glob('[0-9][0-9]_*.ipynb')):
        for c in json.loads(nb.read_text())['cells']:
            m = re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
            if m: out[m[1]] = int(nb.name[:2])
    return out

def pd_nb_imports(path: Path):
    "(imported pd_nb module, names) of every import in `path`, at module level or inside functions."
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1: yield mod.split('.')[0], [a.name for a in node.names]
            elif mod.startswith('pd_nb.'): yield mod.split('.')[1], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith('pd_nb.'): yield a.name.split('.')[1], []

def test_every_module_has_its_notebook():
    mods = {p.stem for p in (repo_root() / 'pd_nb').glob('*.py') if not p.stem.startswith('_')}
    assert mods == set(chapter_of_modules()), mods ^ set(chapter_of_modules())

def test_modules_import_only_from_their_left_and_no_private_names():
    order, bad = chapter_of_modules(), []
    for mod, ch in order.items():
        for dep, names in pd_nb_imports(repo_root() / 'pd_nb' / f'{mod}.py'):
            if dep in order and dep != mod and order[dep] >= ch: bad.append(f"{mod} (chapter {ch:02d}) imports {dep} (chapter {order[dep]:02d})")
            if dep != mod and (private := [n for n in names if n.startswith('_')]): bad.append(f"{mod} imports private {private} from {dep}")
    assert not bad, bad

def test_classifier_pieces_have_one_home():
    "The teacher and distillation stand on the classifier module; they take nothing of it from finetune (issue 12)."
    for mod in ('teacher', 'distill', 'recipes', 'cli', 'experiments'):
        from_finetune = {n for dep, names in pd_nb_imports(repo_root() / 'pd_nb' / f'{mod}.py') if dep == 'finetune' for n in names}
        assert from_finetune <= {'FinetuneConfig', 'finetune', 'finetune_sweep', 'finetune_config', 'mean_std', 'FINETUNE_GRID'}, (mod, from_finetune)
