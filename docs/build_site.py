"""Build the pd_nb docs site from the notebooks, without quarto.

Pipeline (`make docs`):

1. every `nbs/*.ipynb` (index first, then name order) goes through **nbdev's own pre-processing**
   (`nbdev.processors.FilterDefaults`: front matter, `show_doc` cells added after every exported
   function/class, hidden and `#| export` cells removed, `#| exports` source folded, links to symbols);
2. the quarto-specific bits of the result are translated for MyST-NB (`#| echo: false` -> `remove-input`,
   `#| code-fold` -> a folded `hide-input` cell, `show_doc` markdown -> a real API section with a
   Google-style docstring rendered as lists, nbdev's absolute doc links -> relative links);
3. Sphinx + MyST-NB renders the notebooks with **execution off**: the outputs stored in the notebooks
   (tables, figures) are what the site shows. Only what nbdev itself runs for `show_doc` is executed:
   the exported (definition) cells, pure-import cells and the `show_doc` calls, never a training cell.

`nbdev_docs` (quarto) keeps working: nothing here touches `_proc/` or nbdev's settings.
Usage: `python docs/build_site.py [--out _docs]`.
"""
from __future__ import annotations
import argparse, ast, json, os, re, shutil, subprocess, sys, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
STAGE = ROOT / 'build' / 'docs'          # git-ignored (build/); never nbdev's _proc/, so `nbdev_docs` is unaffected


def notebooks(nbs: Path) -> list[Path]:
    "The notebooks of the site: `index.ipynb` first (the home page), then the others in name order."
    nbs_ = sorted(p for p in nbs.glob('*.ipynb') if not p.name.startswith(('_', '.')))
    return sorted(nbs_, key=lambda p: (p.stem != 'index', p.name))


# ----------------------------------------------------------------------------------------------------
# 1. nbdev's pre-processing, with a stricter `exec_show_docs`
# ----------------------------------------------------------------------------------------------------
_EXEC_DIRS = {'export', 'exports', 'exporti', 'exec_doc'}

def _wants_exec(cell, skip_flags: set) -> bool:
    """Whether nbdev must run `cell` to render `show_doc`: exported cells, pure-import cells and
    `show_doc` calls only. nbdev also runs cells that mix imports with other code; we skip those, so
    that a training cell can never run during a docs build (its stored outputs are kept instead)."""
    from nbdev.processors import cell_lang, _show_docs
    if cell.cell_type != 'code' or cell_lang(cell) != 'python' or not cell.source: return False
    if 'nbdev_export' + '()' in cell.source: return False
    trees = cell.parsed_()
    if not trees: return False
    d = cell.directives_
    if d.get('eval:', [''])[0].lower() == 'false': return False
    if d.keys() & _EXEC_DIRS: return True
    if d.keys() & skip_flags: return False
    if all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees): return True
    return len(_show_docs(trees)) == len(trees)


def _nbdev_procs(skip_flags: set):
    from nbdev.processors import FilterDefaults, exec_show_docs, insert_warning
    from fastcore.basics import str2bool

    class exec_show_docs_only(exec_show_docs):
        "nbdev's `exec_show_docs`, running only definitions, imports and `show_doc` calls."
        def __call__(self, cell):
            if not self.nb.has_docs_ or not hasattr(self, 'k'): return
            fm = getattr(self.nb, 'frontmatter_', {})
            if str2bool(fm.get('skip_showdoc', False)): return
            if _wants_exec(cell, skip_flags): self.k.cell(cell)
            if self.k.exc:
                exc = self.k.exc[1] if isinstance(self.k.exc, tuple) else self.k.exc   # (type, value, tb) or the exception
                raise RuntimeError(f"{getattr(self.nb, 'path_', '?')}: cell {cell.idx_} failed while nbdev "
                                   f"rendered the API docs ({type(exc).__name__}: {exc}):\n{cell.source}") from exc
        def end(self): pass   # no ipywidgets state: the site loads no widget JS

    class DocsFilter(FilterDefaults):
        def base_procs(self):
            return [exec_show_docs_only if p is exec_show_docs else p
                    for p in super().base_procs() if p is not insert_warning]
    return DocsFilter()


def nbdev_process(path: Path, skip_flags: set):
    "Read `path` and run nbdev's docs processors over it (as `nbdev_proc_nbs` does, minus quarto)."
    from execnb.nbio import read_nb
    nb = read_nb(path)
    cwd, env = os.getcwd(), os.environ.get('IN_TEST')
    os.chdir(path.parent); os.environ['IN_TEST'] = '1'      # as nbdev.serve_drv does
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Found cells containing imports')
            _nbdev_procs(skip_flags)(nb)
    finally:
        os.chdir(cwd)
        if env is None: os.environ.pop('IN_TEST', None)
        else: os.environ['IN_TEST'] = env
    return nb


# ----------------------------------------------------------------------------------------------------
# 2. From nbdev's quarto-flavoured notebook to a MyST-NB notebook
# ----------------------------------------------------------------------------------------------------
_re_quarto = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_re_showdoc = re.compile(r'^show_doc\(', re.MULTILINE)
_re_source_link = re.compile(r'\[source\]\((\S+?)\)(\{[^}]*\})?')
_re_heading = re.compile(r'^(#{1,6})\s+(.+?)\s*$', re.MULTILINE)
_GOOGLE_ITEMS = ('Args', 'Arguments', 'Parameters', 'Params', 'Keyword Args', 'Keyword Arguments',
                 'Attributes', 'Raises', 'Other Parameters')
_GOOGLE_TEXT = ('Returns', 'Return', 'Yields', 'Yield', 'Note', 'Notes', 'Warning', 'Warnings',
                'Example', 'Examples', 'See Also', 'References', 'Todo')
_re_section = re.compile(r'^(\s*)(' + '|'.join(_GOOGLE_ITEMS + _GOOGLE_TEXT) + r'):\s*$')
_re_item = re.compile(r'^(\*{0,2}[\w.\[\]]+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$')


def _src(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else (s or '')


def split_quarto(source: str) -> tuple[dict, str]:
    "Leading `#| key: value` lines (left in place by nbdev for quarto) -> (options, remaining source)."
    opts, lines = {}, source.splitlines()
    while lines and _re_quarto.match(lines[0]):
        k, v = _re_quarto.match(lines.pop(0)).groups()
        opts[k] = v.strip('"\'')
    return opts, '\n'.join(lines).strip('\n')


def _indent(l: str) -> int: return len(l) - len(l.lstrip())


def google_to_markdown(doc: str) -> str:
    """Render the Google-style sections of a docstring (`Args:`, `Returns:`, `Raises:` ...) as markdown
    lists/paragraphs; other text is left as it is."""
    lines, out, i = doc.split('\n'), [], 0
    while i < len(lines):
        m = _re_section.match(lines[i])
        if not m: out.append(lines[i]); i += 1; continue
        base, sec, head = len(m.group(1)), m.group(2), lines[i]
        i += 1; block = []
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            block.append(lines[i]); i += 1
        while block and not block[-1].strip(): block.pop()
        body = [l for l in block if l.strip()]
        if not body: out += [head, ""]; continue
        ind = min(_indent(l) for l in body)
        if sec in _GOOGLE_ITEMS:
            items = []
            for l in block:
                if not l.strip(): continue
                im = _re_item.match(l.strip()) if _indent(l) == ind else None
                if im: items.append([im.group(1), im.group(2), im.group(3)])
                elif items: items[-1][2] += ' ' + l.strip()
                else: items.append([None, None, l.strip()])
            out += ['', f'**{sec}:**', '']
            for name, typ, desc in items:
                head = f'`{name}`' + (f' (*{typ}*)' if typ else '') if name else ''
                out.append(f'- {head}: {desc}' if head else f'- {desc}')
            out.append('')
        elif sec.startswith('Example') and any(l.strip().startswith('>>>') for l in body):
            out += ['', f'**{sec}:**', '', '```python'] + [l[ind:] for l in block] + ['```', '']
        else:
            out += ['', f'**{sec}:** ' + ' '.join(l.strip() for l in body), '']
    return re.sub(r'\n{3,}', '\n\n', '\n'.join(out)).strip('\n')


def showdoc_cells(md: str) -> tuple[str, list[dict]]:
    """nbdev's `show_doc` markdown -> (symbol name, markdown cells): a heading (an API section of the
    page, with its own anchor) and a boxed body: source link, signature, docstring."""
    from nbformat.v4 import new_markdown_cell
    md = md.strip()
    if md.startswith('---'): md = md[3:].lstrip()
    link = _re_source_link.search(md)
    if link: md = md[:link.start()] + md[link.end():]
    h = _re_heading.search(md)
    if not h: raise ValueError(f'unexpected show_doc output (no heading):\n{md}')
    level, name = h.groups()
    body = (md[:h.start()] + md[h.end():]).strip()
    sig_end = body.find('```', body.find('```') + 3) + 3 if body.startswith('```') else 0
    body = body[:sig_end] + '\n\n' + google_to_markdown(body[sig_end:].strip())
    src = (f'<a class="api-source" href="{link.group(1)}" target="_blank" rel="noopener">[source]</a>\n\n'
           if link else '')
    cells = [new_markdown_cell(f'{level} {name}'),
             new_markdown_cell(f'````{{container}} api-entry\n{src}{body.strip()}\n````')]
    return name, cells


def _md_output(o) -> str | None:
    d = o.get('data', {}).get('text/markdown')
    if d is None: return None
    return ''.join(d) if isinstance(d, list) else d


class LinkFixer:
    """nbdev writes absolute links to the quarto site (`{doc_host}{doc_baseurl}/core.html#bertconfig`);
    point them at our pages (`00_core.html#bertconfig`), or drop them when the target is not part of
    this site. Links to notebooks (`01_data.ipynb#x`) become links to their pages."""
    def __init__(self, base: str, pages: dict[str, str], anchors: dict[str, set]):
        self.base = base.rstrip('/')
        self.pages, self.anchors = pages, anchors   # quarto html name -> docname; docname -> API ids
        self.dropped = []
        b = re.escape(self.base)
        self.re_md = re.compile(r'\[([^\]]*)\]\(' + b + r'/([\w\-./]+?)\.html(?:#([^)\s]*))?\)')
        self.re_nb = re.compile(r'\]\((?!\w+://)([\w\-./]*?)([\w\-.]+)\.ipynb(#[^)\s]*)?\)')

    def target(self, page: str, frag: str | None) -> str | None:
        from docutils.nodes import make_id
        doc = self.pages.get(page)
        if doc is None: return None
        fid = make_id(frag) if frag else ''
        return f'{doc}.html' + (f'#{fid}' if fid and fid in self.anchors.get(doc, set()) else '')

    def __call__(self, md: str) -> str:
        def sub(m):
            t = self.target(m.group(2), m.group(3))
            if t is None: self.dropped.append(m.group(0)); return m.group(1)
            return f'[{m.group(1)}]({t})'
        def sub_nb(m):
            from docutils.nodes import make_id
            if m.group(2) not in self.pages.values(): return m.group(0)   # not a page: left for the checker
            return f']({m.group(2)}.html' + (f'#{make_id(m.group(3)[1:])}' if m.group(3) else '') + ')'
        return self.re_nb.sub(sub_nb, self.re_md.sub(sub, md))


def _description(path: Path, fm: dict) -> str:
    "The notebook's full `> description` (nbdev's front matter keeps only its first line)."
    cells = json.loads(path.read_text(encoding='utf-8'))['cells']
    first = next((c for c in cells if c['cell_type'] == 'markdown'), None)
    if first is not None:
        q = [l[1:].strip() for l in _src(first).splitlines() if l.startswith('>')]
        if q: return ' '.join(q)
    return fm.get('description', '')


def to_myst(nb, path: Path, fix: LinkFixer, git_url: str, branch: str, nbs_name: str) -> dict:
    "nbdev-processed notebook -> a MyST-NB notebook (nbformat v4 dict)."
    import yaml
    from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell
    cells, fm = [], {}
    for c in nb.cells:
        if c.cell_type == 'raw' and _src(c).startswith('---'):
            fm = yaml.safe_load(_src(c).strip().strip('-')) or {}; continue
        if c.cell_type == 'markdown':
            s = _src(c).strip()
            if s and not s.startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): cells.append(new_markdown_cell(fix(s)))
            continue
        if c.cell_type != 'code': continue
        opts, src = split_quarto(_src(c))
        if opts.get('include') == 'false': continue
        outs = [dict(o) for o in c.get('outputs', [])]
        if _re_showdoc.search(src) and opts.get('output') == 'asis':
            for o in outs:
                md = _md_output(o)
                if md: cells += showdoc_cells(fix(md))[1]
            continue
        tags, meta = [], {}
        if opts.get('echo') == 'false': tags.append('remove-input')
        if opts.get('output') == 'false': tags.append('remove-output')
        if opts.get('code-fold') in ('true', 'show'):
            tags.append('hide-input')
            summary = opts.get('code-summary', 'Source')
            meta['mystnb'] = {'code_prompt_show': f'{summary} (show)', 'code_prompt_hide': f'{summary} (hide)'}
            if 'exports' in c.directives_: tags.append('nbdev-exports')
        kept = []
        for o in outs:
            data = o.get('data')
            if data is not None:   # no widget views (they need JS from the network): keep the other formats
                data = {k: v for k, v in data.items() if 'widget' not in k}
                if not data or set(data) == {'text/plain'} and 'Widget' in ''.join(data['text/plain']): continue
                o['data'] = data
                o.setdefault('metadata', {})
            if o.get('output_type') == 'execute_result': o['execution_count'] = None
            kept.append(o)
        if 'remove-input' in tags and not kept: continue
        if not src.strip() and not kept: continue
        from nbformat import from_dict
        cell = new_code_cell(src, outputs=[from_dict(o) for o in kept], metadata={'tags': tags, **meta} if tags or meta else {})
        cells.append(cell)
    title = fm.get('title') or path.stem
    desc = _description(path, fm)
    rel = f'{nbs_name}/{path.name}'
    head = f'# {title}\n\n' + (f'> {fix(desc)}\n\n' if desc else '')
    head += (f'<p class="nb-source">Notebook source: <a href="{rel}"><code>{rel}</code></a> '
             f'(<a href="{git_url}/blob/{branch}/{rel}" target="_blank" rel="noopener">on GitHub</a>)</p>')
    out = new_notebook(cells=[new_markdown_cell(head)] + cells)
    out.metadata = {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'},
                    'language_info': {'name': 'python', 'pygments_lexer': 'ipython3'},
                    'pd_nb_docs': {'title': title, 'output_file': fm.get('output-file', '')}}
    return out


_re_img = re.compile(r'!\[[^\]]*\]\(<?([^)\s>]+)>?|<img[^>]+src="([^"]+)"')

def local_images(nb, folder: Path) -> list[str]:
    "Relative paths of the image files (under `folder`) that the markdown cells of `nb` show."
    out = []
    for c in nb.cells:
        if c.cell_type != 'markdown': continue
        for m in _re_img.finditer(_src(c)):
            f = m.group(1) or m.group(2)
            if '://' in f or f.startswith(('/', 'data:', 'attachment:')): continue
            p = (folder / f).resolve()
            if folder.resolve() in p.parents and p.is_file(): out.append(f)
    return out


def api_names(nb) -> list[str]:
    "Names that nbdev's `show_doc` documents in a processed notebook (headings of its output)."
    names = []
    for c in nb.cells:
        if c.cell_type == 'code' and _re_showdoc.search(_src(c)):
            for o in c.get('outputs', []):
                md = _md_output(o)
                h = _re_heading.search(md or '')
                if h: names.append(h.group(2))
    return names


# ----------------------------------------------------------------------------------------------------
# 3. Sphinx + MyST-NB
# ----------------------------------------------------------------------------------------------------
def build(out: Path = ROOT / '_docs', nbs: Path | None = None, stage: Path = STAGE, quiet: bool = False) -> Path:
    """Build the site into `out` and return `out`.

    Args:
        out: the output folder (replaced).
        nbs: the notebooks folder (default: settings.ini's `nbs_path`).
        stage: a scratch folder for the processed notebooks and Sphinx's doctrees.
        quiet: only print Sphinx's warnings.

    Raises:
        FileNotFoundError: when the notebooks folder has no index.ipynb.
        RuntimeError: when a cell that nbdev runs for `show_doc` fails, or Sphinx fails.
    """
    import nbformat
    from docutils.nodes import make_id
    from nbdev.config import get_config
    t0 = time.time()
    cfg = get_config(path=ROOT)
    nbs = Path(nbs or cfg.nbs_path)
    skip_flags = set(cfg.get('tst_flags', '').split())
    paths = notebooks(nbs)
    if not paths or paths[0].stem != 'index': raise FileNotFoundError(f'{nbs}/index.ipynb (the home page) is missing')
    stage = Path(stage).resolve(); src = stage / 'src'
    if stage in (ROOT, *ROOT.parents): raise ValueError(f'refusing to use {stage} as scratch folder')
    shutil.rmtree(stage, ignore_errors=True); src.mkdir(parents=True)

    processed = {p: nbdev_process(p, skip_flags) for p in paths}
    pages, anchors = {}, {}
    for p, nb in processed.items():
        fm_cell = next((c for c in nb.cells if c.cell_type == 'raw'), None)
        m = re.search(r'output-file:\s*(\S+)\.html', _src(fm_cell) if fm_cell else '')
        pages[m.group(1) if m else p.stem] = p.stem
        pages[p.stem] = p.stem
        anchors[p.stem] = {make_id(n) for n in api_names(nb)}
    fix = LinkFixer(cfg.doc_host + cfg.doc_baseurl, pages, anchors)
    for p, nb in processed.items():
        nb = to_myst(nb, p, fix, cfg.git_url, cfg.branch, nbs.name)
        for f in local_images(nb, p.parent):           # images the markdown cells show, beside the notebook
            (src / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p.parent / f, src / f)
        nbformat.write(nb, src / p.name)
    toc = '\n'.join(p.stem for p in paths[1:])
    index = nbformat.read(src / 'index.ipynb', as_version=4)
    index.cells.append(nbformat.v4.new_markdown_cell(f'```{{toctree}}\n:hidden:\n:caption: Chapters\n\n{toc}\n```'))
    nbformat.write(index, src / 'index.ipynb')
    for link in sorted(set(fix.dropped)): print(f'docs: link to a page outside the site dropped: {link}', file=sys.stderr)
    t1 = time.time()

    out = Path(out).resolve()
    if out in (ROOT, *ROOT.parents) or (out / '.git').exists(): raise ValueError(f'refusing to replace {out}')
    shutil.rmtree(out, ignore_errors=True)              # no stale pages of renamed notebooks
    env = {**os.environ, 'PD_NB_DOCS_NBS': nbs.name, 'PYTHONWARNINGS': 'ignore'}
    html = stage / 'html'   # MyST-NB writes its jupyter_execute/ beside the output folder: keep both in stage
    cmd = [sys.executable, '-m', 'sphinx', '-b', 'html', '-c', str(DOCS), '-d', str(stage / 'doctrees'),
           '-E', '-j', 'auto', '-w', str(stage / 'warnings.txt'), str(src), str(html)] + (['-q'] if quiet else [])
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode: raise RuntimeError(f'sphinx-build failed ({r.returncode}): {" ".join(cmd)}')
    shutil.move(html, out)
    dst = out / nbs.name
    shutil.rmtree(dst, ignore_errors=True); dst.mkdir()
    for p in paths: shutil.copy2(p, dst / p.name)         # the notebook sources, linked from every page
    (out / '.nojekyll').touch()
    warns = (stage / 'warnings.txt').read_text().strip()
    print(f'docs: {len(paths)} pages -> {out} (nbdev processing {t1 - t0:.1f}s, sphinx {time.time() - t1:.1f}s'
          f'{", warnings in " + str(stage / "warnings.txt") if warns else ", no warnings"})')
    return out


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default=str(ROOT / '_docs'), help='output folder (default: _docs/)')
    ap.add_argument('-q', '--quiet', action='store_true')
    a = ap.parse_args()
    build(Path(a.out), quiet=a.quiet)
