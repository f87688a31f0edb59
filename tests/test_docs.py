"""The docs site: built from the notebooks (docs/build_site.py) and opened in headless Chromium
(docs/check_site.py): every page loads without console errors, every internal link resolves, the home
page shows its table, chapter pages show their figures and an API entry (signature + docstring) for every
exported function/class, search works. Screenshots go to test-output/docs/. Plus unit tests showing that
the checker catches what it should, and the Google docstring style of the exported API."""
from __future__ import annotations
import re, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'docs'))
import build_site, check_site, docstyle  # noqa: E402

pytestmark = pytest.mark.xdist_group('docs')   # one worker builds the site once for all tests here
SHOTS = ROOT / 'test-output' / 'docs'


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site') / '_docs'
    return build_site.build(out, stage=out.parent / 'stage', quiet=True)


@pytest.mark.timeout(600)
def test_site_in_browser(site):
    nbs = build_site.notebooks(ROOT / 'nbs')
    chapters = [p for p in nbs if p.stem != 'index']
    expect = check_site.notebook_expectations(ROOT / 'nbs')
    assert expect['index.html']['min_tables'] >= 1, 'index.ipynb stores no table output: the home page must show one'
    assert expect['00_core.html']['api'], 'no API entries expected for 00_core?'
    shots = {'index.html': SHOTS / 'home.png'}
    if chapters: shots[f'{chapters[0].stem}.html'] = SHOTS / f'{chapters[0].stem}.png'
    rep = check_site.check_site(site, expect=expect, screenshots=shots, search='student_config')
    assert rep.ok, rep.summary()
    # every page of the site was opened: home, one per notebook, search, index
    assert {f'{p.stem}.html' for p in nbs} | {'search.html', 'genindex.html'} <= set(rep.pages)
    assert rep.search_hits and rep.search_hits > 0
    assert all(Path(s).stat().st_size > 10_000 for s in rep.screenshots) and len(rep.screenshots) == len(shots)
    # the source notebooks are published beside the pages
    assert all((site / 'nbs' / p.name).is_file() for p in nbs)


def test_site_is_static_and_complete(site):
    "No page loads anything from the network; each notebook became a page; nothing was executed into it."
    pages = sorted(site.glob('*.html'))
    for p in pages:
        html = p.read_text(encoding='utf-8')
        assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?://', html), f'{p.name} loads a remote resource'
    assert {p.stem for p in build_site.notebooks(ROOT / 'nbs')} <= {p.stem for p in pages}


def _synthetic_notebooks(d: Path, marker: Path) -> Path:
    "index (a stored table) + one chapter: a stored figure, stderr, math, an exported function, a training cell."
    import base64, io, nbformat
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from nbformat.v4 import new_notebook, new_markdown_cell as md, new_code_cell as code, new_output as out
    fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([1, 2, 3], [1, 4, 9]); buf = io.BytesIO(); fig.savefig(buf, format='png'); plt.close(fig)
    table = '<table class="dataframe"><tr><th>student</th><th>acc</th></tr><tr><td>mini</td><td>0.853</td></tr></table>'
    index = new_notebook(cells=[md('# Home\n\n> A test site.'), code('results', outputs=[
        out('execute_result', data={'text/html': table, 'text/plain': 'student acc'}, execution_count=1)])])
    chapter = new_notebook(cells=[
        md('# Plots\n\n> A chapter, see [home](index.ipynb).'),
        code('#| exports\ndef area(r: float) -> float:\n    """Area of a disc.\n\n    Args:\n        r: the radius.\n    """\n    return 3.14159 * r * r'),
        code('plt.plot([1, 2, 3])', outputs=[out('display_data', data={'image/png': base64.b64encode(buf.getvalue()).decode(), 'text/plain': '<Figure>'})]),
        code(f'import pathlib\npathlib.Path({str(marker)!r}).write_text("trained")  # nbdev itself would run this',
             outputs=[out('stream', name='stderr', text='100%|##########| 3/3\n')]),
        code('#| hide\nsecret_setup = 1'),
        md('A diagram kept beside the notebook: ![diagram](img/diagram.png)'),
        md('The loss: $\\alpha^2$ and $$\\mathcal{L} = -\\sum_y P(y|x) \\log Q(y|x)$$ uses [`area`](01_plots.ipynb#area).')])
    for nb in (index, chapter): nb.metadata = {'kernelspec': {'display_name': 'python3', 'language': 'python', 'name': 'python3'}}
    nbformat.write(index, d / 'index.ipynb'); nbformat.write(chapter, d / '01_plots.ipynb')
    (d / 'img').mkdir(); (d / 'img' / 'diagram.png').write_bytes(buf.getvalue())
    return d


def test_figures_tables_math_and_api_of_a_small_site(tmp_path):
    "Stored figures and tables are shown, math renders offline, exported functions get an entry, nothing trains."
    marker = tmp_path / 'trained.txt'
    nbs = tmp_path / 'nbs'; nbs.mkdir()
    site = build_site.build(tmp_path / '_docs', nbs=_synthetic_notebooks(nbs, marker), stage=tmp_path / 'stage', quiet=True)
    rep = check_site.check_site(site, expect={
        'index.html': {'min_tables': 1, 'table_texts': ['mini', '0.853']},
        '01_plots.html': {'min_output_images': 1, 'api': {'area': {'name': 'area', 'doc': 'Area of a disc.'}},
                          'texts': ['100%|##########| 3/3', 'the radius'], 'links': ['nbs/01_plots.ipynb', 'index.html']}})
    assert rep.ok, rep.summary()
    assert not marker.exists(), 'a training cell ran during the docs build'
    html = (site / '01_plots.html').read_text(encoding='utf-8')
    assert 'secret_setup' not in html and 'mathjax/tex-chtml.js' in html and (site / '_static/mathjax/tex-chtml.js').is_file()
    assert 'Exported source' in html     # the `#| exports` source is there, folded
    assert re.search(r'<img[^>]+alt="diagram"', html)   # loaded: check_site fails on images that do not load


# ------------------------------------------------------------------------------------------------
# The checker must be able to fail
# ------------------------------------------------------------------------------------------------
PNG = ('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')


def _mini_site(d: Path, broken: bool) -> Path:
    import base64
    (d / 'img.png').write_bytes(base64.b64decode(PNG))
    (d / 'page.html').write_text('<html><head><link rel="icon" href="data:,"></head><body>'
                                 '<h1 id="top">Page</h1><main><div class="cell_output"><img src="img.png"></div></main></body></html>')
    links = '<a href="page.html#top">ok</a> <a href="page.html">ok</a> <a href="#here">self</a>'
    extra = ''
    if broken:
        links += ' <a href="missing.html">gone</a> <a href="page.html#nowhere">bad anchor</a>'
        extra = '<img src="nope.png"><script>console.error("boom"); undefined_function();</script>'
    (d / 'index.html').write_text(f'<html><head><link rel="icon" href="data:,"></head><body id="here"><main>'
                                  f'{links}{extra}</main></body></html>')
    return d


def test_checker_passes_a_good_site(tmp_path):
    rep = check_site.check_site(_mini_site(tmp_path, broken=False), expect={'page.html': {'min_output_images': 1}})
    assert rep.ok, rep.summary()
    assert set(rep.pages) == {'index.html', 'page.html'}


def test_checker_catches_broken_links_console_errors_and_missing_figures(tmp_path):
    rep = check_site.check_site(_mini_site(tmp_path, broken=True), expect={'page.html': {'min_output_images': 2}})
    assert not rep.ok
    broken = {(u, why) for _, u, why in rep.broken}
    assert ('missing.html', 'missing file missing.html') in broken
    assert ('page.html#nowhere', 'missing anchor #nowhere') in broken
    assert ('nope.png', 'missing file nope.png') in broken
    errs = ' | '.join(rep.pages['index.html'])
    assert 'boom' in errs and 'undefined_function' in errs and '404' in errs
    assert any('1 figures shown, expected >= 2' in w for _, w in rep.failed)
    assert any('did not load' in w for _, w in rep.failed)


def test_checker_catches_a_broken_link_in_the_built_site(site, tmp_path):
    "Break one link of a real chapter page (in a copy) and one API entry: the checker reports both."
    import os, shutil
    copy = tmp_path / 'site'; shutil.copytree(site, copy, copy_function=os.link)   # hard links: fast
    chapter = sorted(copy.glob('0*.html'))[0]
    html = chapter.read_text(encoding='utf-8')
    chapter.unlink()                  # a new file, not the hard-linked one of the real site
    html = html.replace('<a class="reference internal" href="index.html"', '<a class="reference internal" href="indexx.html"', 1)
    m = re.search(r'<section id="([\w-]+)">\s*<h3>', html)
    html = html.replace(f'<section id="{m.group(1)}">', '<section id="renamed">', 1)
    chapter.write_text(html, encoding='utf-8')
    rep = check_site.check_site(copy, expect={chapter.name: {'ids': [m.group(1)]}}, only=[chapter.name])
    assert not rep.ok
    assert any(u == 'indexx.html' for _, u, _ in rep.broken), rep.summary()
    assert any(m.group(1) in w for _, w in rep.failed), rep.summary()


# ------------------------------------------------------------------------------------------------
# Pieces of the builder
# ------------------------------------------------------------------------------------------------
def test_google_docstring_rendering():
    doc = ('*Summary.*\n\nArgs:\n    size: a preset name, or a\n        tuple.\n    strict (bool): refuse off-grid.\n'
           '    **overrides: other fields.\n\nReturns:\n    The config,\n    checked.\n\nRaises:\n    ValueError: for bad sizes.')
    assert build_site.google_to_markdown(doc) == (
        '*Summary.*\n\n**Args:**\n\n- `size`: a preset name, or a tuple.\n- `strict` (*bool*): refuse off-grid.\n'
        '- `**overrides`: other fields.\n\n**Returns:** The config, checked.\n\n**Raises:**\n\n- `ValueError`: for bad sizes.')
    assert build_site.google_to_markdown('No sections here.\nArgs are fine: in prose.') == 'No sections here.\nArgs are fine: in prose.'


def test_showdoc_markdown_becomes_an_api_section():
    md = ('---\n\n[source](https://github.com/x/y/blob/main/pd_nb/core.py#L3){target="_blank" style="float:right"}\n\n'
          '### f\n\n```python\ndef f(\n    a:int\n)->int:\n```\n\n*Do it.*\n\nArgs:\n    a: the input.')
    name, cells = build_site.showdoc_cells(md)
    assert name == 'f' and cells[0].source == '### f'
    body = cells[1].source
    assert body.startswith('````{container} api-entry\n<a class="api-source" href="https://github.com/x/y/blob/main/pd_nb/core.py#L3"')
    assert '```python\ndef f(\n    a:int\n)->int:\n```' in body and '- `a`: the input.' in body and body.endswith('````')


def test_links_point_into_the_site():
    fix = build_site.LinkFixer('https://pd-nb.github.io/pd_nb', {'core': '00_core', 'index': 'index'},
                               {'00_core': {'student-config'}})
    assert fix('[`student_config`](https://pd-nb.github.io/pd_nb/core.html#student_config)') == '[`student_config`](00_core.html#student-config)'
    assert fix('[`x`](https://pd-nb.github.io/pd_nb/core.html#x)') == '[`x`](00_core.html)'        # no such entry: the page
    assert fix('see [`main`](https://pd-nb.github.io/pd_nb/cli.html#main)') == 'see `main`'          # no such page: dropped
    fix.pages['01_data'] = '01_data'
    assert fix('[data](01_data.ipynb#d_lm-readers) [web](https://e.org/a.ipynb) [nb](../nbs/01_data.ipynb)') == (
        '[data](01_data.html#d-lm-readers) [web](https://e.org/a.ipynb) [nb](01_data.html)')
    assert fix('[x](99_none.ipynb)') == '[x](99_none.ipynb)'      # not a page: left for the link checker


def test_quarto_options_split():
    assert build_site.split_quarto('#| code-fold: show\n#| code-summary: "Exported source"\nx = 1') == (
        {'code-fold': 'show', 'code-summary': 'Exported source'}, 'x = 1')


def test_training_cells_are_never_run_for_docs():
    "Only definitions, pure imports and show_doc calls run while nbdev renders the API docs."
    from execnb.nbio import NbCell
    from nbdev.process import extract_directives
    def cell(src):
        c = NbCell(0, {'cell_type': 'code', 'source': src, 'metadata': {'language': 'python'}, 'outputs': []})
        c.directives_ = extract_directives(c); return c
    wants = lambda s: build_site._wants_exec(cell(s), {'cuda', 'slow'})
    assert wants('#| export\ndef f(): pass') and wants('import torch') and wants('show_doc(f)')
    assert not wants('import torch\nlearn.fit(3)')        # nbdev itself would run this one
    assert not wants('learn.fit(3)') and not wants('#| slow\nimport x') and not wants('#| eval: false\nimport x')


# ------------------------------------------------------------------------------------------------
# Docstrings of the exported API: one style (Google)
# ------------------------------------------------------------------------------------------------
def test_docstyle_checker_can_fail():
    def numpy_style(x):
        """Do.

        Parameters
        ----------
        x : int
        """
    def stale(x, y):
        """Do.

        Args:
            x: one.
            z: gone.
        """
    def rest(x):
        """Do.

        :param x: one.
        """
    def good(x, *args, **kw):
        """Do.

        Args:
            x (int): one.
            *args: more.
            **kw: options.

        Returns:
            Nothing.
        """
    assert any('numpy' in p for p in docstyle.docstring_problems(numpy_style))
    assert any("'z'" in p for p in docstyle.docstring_problems(stale))
    assert any('reST' in p for p in docstyle.docstring_problems(rest))
    assert docstyle.docstring_problems(lambda: 0, 'f') == ['f: no docstring']
    assert docstyle.docstring_problems(good) == []


def test_exported_docstrings_are_google_style():
    api = docstyle.public_api()
    assert 'core.student_config' in api
    probs = docstyle.check()
    assert not probs, 'docstrings not in the Google style of the library:\n' + '\n'.join(probs)
