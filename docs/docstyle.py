"""Check that the exported API's docstrings follow one style: Google's (the docs site renders it).

Rules, for every public function and class that a `pd_nb` module exports (`__all__`):
a docstring; no numpy-style (`Parameters` + `----------`) or reST (`:param x:`) sections; section
headers spelled as Google's (`Args:`, `Returns:`, `Raises:`, `Yields:`, `Attributes:`, `Example:`/`Examples:`,
`Note:`); each `Args:` entry (`name: text` or `name (type): text`) names a real parameter.
Usage: `python docs/docstyle.py` prints the offenders (exit 1 when there are some).
"""
from __future__ import annotations
import importlib, inspect, pkgutil, re, sys
from pathlib import Path

GOOGLE = {'Args', 'Returns', 'Raises', 'Yields', 'Attributes', 'Example', 'Examples', 'Note', 'Notes',
          'Warning', 'Warnings', 'See Also', 'References', 'Todo'}
ALIASES = {'Arguments': 'Args', 'Parameters': 'Args', 'Params': 'Args', 'Return': 'Returns',
           'Yield': 'Yields', 'Raise': 'Raises', 'Keyword Args': 'Args', 'Keyword Arguments': 'Args'}
_re_header = re.compile(r'^(\s*)([A-Z][A-Za-z ]*):\s*$')
_re_numpy = re.compile(r'^\s*[A-Z][A-Za-z ]*\n\s*-{3,}\s*$', re.MULTILINE)
_re_rest = re.compile(r'^\s*:(param|type|returns?|rtype|raises?)\b', re.MULTILINE)
_re_item = re.compile(r'^(\*{0,2})([A-Za-z_]\w*)\s*(\([^)]*\))?\s*:(\s|$)')


def public_api(package: str = 'pd_nb') -> dict[str, object]:
    "'module.name' -> object, for every function/class defined in and exported by a module of `package`."
    pkg = importlib.import_module(package)
    out = {}
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if m.name.startswith('_'): continue
        mod = importlib.import_module(f'{package}.{m.name}')
        for n in getattr(mod, '__all__', []):
            o = getattr(mod, n, None)
            if (inspect.isfunction(o) or inspect.isclass(o)) and getattr(o, '__module__', None) == mod.__name__:
                out[f'{m.name}.{n}'] = o
    return out


def _params(obj) -> set | None:
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return None
    return set(sig.parameters)


def docstring_problems(obj, name: str = '') -> list[str]:
    "What is wrong with the docstring of `obj` under the rules above (empty when nothing)."
    name = name or getattr(obj, '__qualname__', repr(obj))
    doc = inspect.getdoc(obj) if inspect.isfunction(obj) else obj.__dict__.get('__doc__')
    doc = inspect.cleandoc(doc) if doc else ''
    if inspect.isclass(obj) and doc.startswith(f'{obj.__name__}('): doc = ''   # dataclass's generated one
    if not doc.strip(): return [f'{name}: no docstring']
    probs = []
    if _re_numpy.search(doc): probs.append(f'{name}: numpy-style section (underlined header); use Google style')
    if _re_rest.search(doc): probs.append(f'{name}: reST field (:param:/:returns:); use Google style')
    lines = doc.split('\n')
    params = _params(obj)
    for i, l in enumerate(lines):
        m = _re_header.match(l)
        if not m: continue
        sec = m.group(2).strip()
        if sec in ALIASES: probs.append(f'{name}: section {sec!r}: Google style spells it {ALIASES[sec]!r}:'); sec = ALIASES[sec]
        if sec != 'Args' or params is None: continue
        base, j = len(m.group(1)), i + 1
        body = []
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
            if lines[j].strip(): body.append(lines[j])
            j += 1
        if not body: probs.append(f'{name}: empty Args: section'); continue
        ind = min(len(b) - len(b.lstrip()) for b in body)
        for b in body:
            if len(b) - len(b.lstrip()) != ind: continue
            im = _re_item.match(b.strip())
            if not im: probs.append(f'{name}: Args entry not "name: text": {b.strip()[:60]!r}'); continue
            if im.group(2) not in params and not any(p.startswith(im.group(2)) for p in params):
                probs.append(f'{name}: Args names {im.group(2)!r}, which is not a parameter {sorted(params)}')
    return probs


def check(package: str = 'pd_nb') -> list[str]:
    "Every offender of the exported API of `package`."
    return [p for n, o in public_api(package).items() for p in docstring_problems(o, n)]


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    probs = check()
    print('\n'.join(probs) or 'docstrings: all Google style')
    sys.exit(1 if probs else 0)
