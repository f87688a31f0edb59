"""Sphinx configuration of the pd_nb docs site (used by docs/build_site.py; the notebooks are pre-processed there).

Sphinx + MyST-NB renders the notebooks with their stored outputs (execution off); sphinx-book-theme
gives the sidebar, search box and source buttons; MathJax is served from the site itself
(sphinx-mathjax-offline ships it), so the pages need no network at all.
"""
import os, shutil
from importlib.util import find_spec
from pathlib import Path
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
cfg = get_config(path=ROOT)

project = cfg.title
author = cfg.author
copyright = cfg.copyright
release = version = cfg.version

extensions = ['myst_nb', 'sphinx.ext.mathjax']
root_doc = 'index'
exclude_patterns = ['_build', 'jupyter_execute', '**.ipynb_checkpoints']

# MyST-NB: never execute; show what the notebooks stored
nb_execution_mode = 'off'
nb_merge_streams = True
nb_output_stderr = 'show'
nb_ipywidgets_js = {}           # no widget JS from a CDN
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_all_links_external = True  # docs/build_site.py already turned every link into a relative .html link
suppress_warnings = ['myst.header']

# MathJax 3, served from the site itself: the files of the sphinx-mathjax-offline package are copied
# into _static/mathjax (see setup below); no CDN, so the pages work, and test clean, offline
mathjax_path = 'mathjax/tex-chtml.js'

html_theme = 'sphinx_book_theme'
html_title = cfg.lib_name
html_favicon = '_static/favicon.svg'
html_context = {'default_mode': 'light'}
html_static_path = ['_static']
html_css_files = ['custom.css']
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options = {
    'repository_url': cfg.git_url,
    'repository_branch': cfg.branch,
    'path_to_docs': os.environ.get('PD_NB_DOCS_NBS', 'nbs'),   # the "source" button opens nbs/NN_name.ipynb
    'use_repository_button': True,
    'use_source_button': True,
    'use_download_button': False,
    'use_issues_button': False,
    'home_page_in_toc': True,
    'show_toc_level': 2,
    'navigation_with_keys': False,
}


def _copy_mathjax(app, exc):
    if exc is not None or app.builder.format != 'html': return
    spec = find_spec('sphinx-mathjax-offline')   # a package whose folder name has dashes
    if spec is None: raise ModuleNotFoundError('sphinx-mathjax-offline (pip install sphinx-mathjax-offline)')
    src = Path(spec.submodule_search_locations[0]) / 'static' / 'mathjax'
    shutil.copytree(src, Path(app.outdir) / '_static' / 'mathjax', dirs_exist_ok=True)


def setup(app):
    app.connect('build-finished', _copy_mathjax)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
