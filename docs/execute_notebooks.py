"""Execute chapters with their stored settings, and record what produced their outputs.

    python docs/execute_notebooks.py 05_pretrain 07_finetune   # execute these in place
    python docs/execute_notebooks.py --stale                   # execute every chapter whose outputs are stale
    python docs/execute_notebooks.py --check                   # list the stale ones (exit 1 if any)

A chapter's stored outputs (tables, figures, printed numbers) are what a reader and the docs site see, so they must
come from the code that is in the repository now. Executing a notebook here runs it in `nbs/` exactly as a reader
would (`jupyter nbconvert --execute --inplace`, `PD_NB_DATA` passed through), cleans it (`nbdev_clean`), writes its
measured runtime into the chapter's runtime line (the cell with id `runtime`, right after the title), and records in
`nbs/executed.json` the fingerprint of what ran: a hash of the notebook's code cells and one hash per library module
it depends on (its own module, the `pd_nb` modules it imports, and what those import in turn). Every hash is taken over
the syntax tree without docstrings (a cell that is not plain Python: over its text), so rewording a docstring or a
comment leaves the outputs current, while any change of code makes them stale. `tests/test_stored_outputs.py` fails
when a chapter's fingerprint differs from the recorded one, naming the modules that changed.
"""
from __future__ import annotations
import argparse, ast, datetime, hashlib, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB = ROOT / 'nbs', ROOT / 'pd_nb'
RECORD = NBS / 'executed.json'
RUNTIME_ID = 'runtime'
_IMPORT = re.compile(r'^\s*(?:from\s+(?:pd_nb)?\.(\w+)\s+import|import\s+pd_nb\.(\w+))', re.M)


def code_cells(nb: dict) -> list[str]:
    return [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']


def module_imports(src: str) -> set[str]:
    "The `pd_nb` modules a piece of Python source imports (`from pd_nb.x import`, `from .x import`, `import pd_nb.x`)."
    return {a or b for a, b in _IMPORT.findall(src)}


def module_dependencies(names, lib: Path = LIB) -> set[str]:
    "`names` and every library module they import, transitively (only modules that exist in `lib`)."
    todo, seen = [n for n in names if (lib / f'{n}.py').exists()], set()
    while todo:
        n = todo.pop()
        if n in seen: continue
        seen.add(n)
        todo += [m for m in module_imports((lib / f'{n}.py').read_text()) if (lib / f'{m}.py').exists()]
    return seen


def notebook_modules(nb: dict) -> set[str]:
    "The library modules a notebook's outputs depend on: its own (`default_exp`) and those it imports, transitively."
    code = '\n'.join(code_cells(nb))
    names = set(re.findall(r'^#\|\s*default_exp\s+(\w+)', code, re.M)) | module_imports(code)
    return module_dependencies(names)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, 'body', None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], 'value', None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def code_hash(src: str) -> str:
    "A hash of Python source that ignores comments, formatting and docstrings (sha256 of the AST dump, 16 hex digits)."
    dump = ast.dump(_strip_docstrings(ast.parse(src)), include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()[:16]


def cell_hash(src: str) -> str:
    "A code cell's `code_hash` (comments, directives and docstrings ignored); its raw text's hash if it is not plain Python."
    try: return code_hash(src)
    except SyntaxError: return hashlib.sha256(src.encode()).hexdigest()[:16]


def fingerprint(path: Path, lib: Path = LIB) -> dict:
    "What a notebook's stored outputs depend on: its code cells' hash and one hash per library module it uses."
    nb = json.loads(Path(path).read_text())
    cells = hashlib.sha256('\0'.join(cell_hash(c) for c in code_cells(nb)).encode()).hexdigest()[:16]
    return {'notebook': cells, 'modules': {m: code_hash((lib / f'{m}.py').read_text()) for m in sorted(notebook_modules(nb))}}


def has_outputs(path: Path) -> bool:
    return any(c.get('outputs') for c in json.loads(Path(path).read_text())['cells'] if c['cell_type'] == 'code')


def stale_reasons(path: Path, record: dict, lib: Path = LIB) -> list[str]:
    "Why `path`'s stored outputs are not from the current code (empty when they are)."
    name = Path(path).stem
    if name not in record: return ['never executed by docs/execute_notebooks.py']
    old, new = record[name]['fingerprint'], fingerprint(path, lib)
    why = ['its code cells changed'] if old['notebook'] != new['notebook'] else []
    changed = sorted(m for m in set(old['modules']) | set(new['modules']) if old['modules'].get(m) != new['modules'].get(m))
    return why + ([f"library code changed: {', '.join(f'pd_nb/{m}.py' for m in changed)}"] if changed else [])


def format_runtime(seconds: float) -> str:
    if seconds < 60: return 'under a minute'
    if seconds < 3600: return f'about {round(seconds / 60)} min'
    return f'about {seconds / 3600:.1f} h'


def runtime_text(entry: dict) -> str:
    "The chapter's runtime line, written from its record (so the number in the prose is the measured one)."
    threads = entry['threads']
    return (f"*Runtime: {format_runtime(entry['seconds'])} with the stored settings "
            f"({entry['seconds']:.0f} s on {threads} CPU thread{'s' if threads != 1 else ''}"
            f"{', with PD_NB_DATA' if entry['with_data'] else ''}, {entry['executed'][:10]}); "
            f"under test (`IN_TEST`) the chapter runs with tiny settings.*")


def set_runtime_cell(path: Path, text: str):
    "Put `text` in the chapter's runtime cell (id `runtime`, right after the title cell), creating it when missing."
    nb = json.loads(path.read_text())
    cells = nb['cells']
    cell = next((c for c in cells if c.get('id') == RUNTIME_ID), None)
    if cell is None:
        cell = {'cell_type': 'markdown', 'id': RUNTIME_ID, 'metadata': {}, 'source': []}
        cells.insert(1, cell)
    cell['source'] = [text]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n')


def load_record() -> dict:
    return json.loads(RECORD.read_text()) if RECORD.exists() else {}


def save_record(record: dict):
    tmp = RECORD.with_suffix('.tmp')
    tmp.write_text(json.dumps(dict(sorted(record.items())), indent=1) + '\n')
    os.replace(tmp, RECORD)


def execute(name: str, threads: int, timeout: int) -> dict:
    path = NBS / f'{name}.ipynb'
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop('IN_TEST', None)
    bin_dir = Path(sys.executable).parent
    t0 = time.time()
    subprocess.run([str(bin_dir / 'jupyter'), 'nbconvert', '--to', 'notebook', '--execute', '--inplace',
                    f'--ExecutePreprocessor.timeout={timeout}', path.name], cwd=NBS, env=env, check=True)
    seconds = time.time() - t0
    entry = dict(seconds=round(seconds, 1), threads=threads, with_data=bool(os.environ.get('PD_NB_DATA')),
                 executed=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'))
    set_runtime_cell(path, runtime_text(entry))
    subprocess.run([str(bin_dir / 'nbdev_clean'), '--fname', str(path)], cwd=ROOT, check=True)
    entry['fingerprint'] = fingerprint(path)
    return entry


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('names', nargs='*', help='notebook stems (e.g. 05_pretrain); default with --stale/--check: all')
    p.add_argument('--stale', action='store_true', help='execute the chapters whose stored outputs are stale')
    p.add_argument('--check', action='store_true', help='only list stale chapters; exit 1 if any')
    p.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', os.cpu_count() or 1)))
    p.add_argument('--timeout', type=int, default=3600, help='seconds per cell')
    a = p.parse_args(argv)
    record = load_record()
    paths = [NBS / f'{n.removesuffix(".ipynb")}.ipynb' for n in a.names] or sorted(NBS.glob('*.ipynb'))
    if missing := [str(q) for q in paths if not q.exists()]: sys.exit(f"no such notebook: {', '.join(missing)}")
    if a.stale or a.check:
        stale = {q.stem: r for q in paths if (has_outputs(q) or q.stem not in record) and (r := stale_reasons(q, record))}
        for n, r in stale.items(): print(f"nbs/{n}.ipynb: {'; '.join(r)}")
        if a.check: sys.exit(1 if stale else 0)
        paths = [NBS / f'{n}.ipynb' for n in stale]
    failed = []
    for q in paths:
        print(f'executing nbs/{q.name} on {a.threads} thread(s) ...', flush=True)
        try: record[q.stem] = execute(q.stem, a.threads, a.timeout)
        except subprocess.CalledProcessError:
            failed.append(q.name); print(f'  FAILED (its earlier record is kept)', flush=True); continue
        save_record(record)                                  # after each chapter: an interrupted batch keeps what ran
        print(f"  {record[q.stem]['seconds']:.0f} s", flush=True)
    if failed: sys.exit(f"failed: {', '.join(failed)}")


if __name__ == '__main__':
    main()
