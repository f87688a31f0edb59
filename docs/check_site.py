"""Open a built docs site in headless Chromium and check it as a reader would.

Chromium (Debian's `chromium`) is driven over the DevTools protocol (a websocket, `websocket-client`);
the site is served by a local HTTP server on 127.0.0.1. For every page of the site it records console
errors, uncaught exceptions and failed loads, and checks that every internal link (and `#anchor`)
resolves; pages can also be given expectations (tables, loaded figures, element ids, texts). It can save
screenshots. Usage: `python docs/check_site.py _docs [--screenshots test-output/docs]` (exit 1 on problems).
"""
from __future__ import annotations
import argparse, base64, functools, http.server, inspect, json, os, re, shutil, subprocess, sys, tempfile, threading, time
import urllib.parse, urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']


def find_chromium() -> str:
    "Path of the Chromium binary (`$CHROMIUM`, else Debian's `chromium`), with a clear error when missing."
    for c in (os.environ.get('CHROMIUM'), shutil.which('chromium'), shutil.which('chromium-browser')):
        if c and Path(c).exists(): return c
    raise FileNotFoundError("Chromium not found: run `make chromium` (apt-get install chromium) or set CHROMIUM")


class Chromium:
    "A headless Chromium with one page, driven over the DevTools protocol."
    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 1000, timeout: float = 30):
        self.binary, self.size, self.timeout = binary or find_chromium(), (width, height), timeout
        self._id, self.events = 0, []

    def __enter__(self):
        import websocket   # websocket-client
        self.profile = tempfile.mkdtemp(prefix='pd_nb-chromium-')
        self.proc = subprocess.Popen(
            [self.binary, *CHROMIUM_FLAGS, '--remote-debugging-port=0', f'--user-data-dir={self.profile}',
             f'--window-size={self.size[0]},{self.size[1]}', '--no-first-run', '--no-default-browser-check',
             '--disable-extensions', '--hide-scrollbars', '--mute-audio', 'about:blank'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, t0 = Path(self.profile) / 'DevToolsActivePort', time.time()
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            if self.proc.poll() is not None: raise RuntimeError(f'{self.binary} exited with {self.proc.returncode}')
            if time.time() - t0 > self.timeout: raise TimeoutError('Chromium did not open its DevTools port')
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f'http://127.0.0.1:{port}/json/list', timeout=self.timeout))
        page = next(t for t in targets if t['type'] == 'page')
        self.ws = websocket.create_connection(page['webSocketDebuggerUrl'], timeout=self.timeout, suppress_origin=True)
        for m in ('Page.enable', 'Runtime.enable', 'Log.enable', 'Network.enable'): self.send(m)
        self.send('Emulation.setDeviceMetricsOverride', width=self.size[0], height=self.size[1],
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc):
        try: self.ws.close()
        except Exception: pass
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _recv(self, timeout: float):
        self.ws.settimeout(max(timeout, 0.01))
        return json.loads(self.ws.recv())

    def send(self, method: str, **params):
        "Call a DevTools method and return its result (events that arrive meanwhile are queued)."
        self._id += 1; i = self._id
        self.ws.send(json.dumps({'id': i, 'method': method, 'params': params}))
        t0 = time.time()
        while True:
            m = self._recv(self.timeout - (time.time() - t0))
            if m.get('id') == i:
                if 'error' in m: raise RuntimeError(f'{method}: {m["error"]}')
                return m.get('result', {})
            self.events.append(m)

    def drain(self, seconds: float):
        "Collect events for `seconds`."
        import websocket
        t_end = time.time() + seconds
        while (left := t_end - time.time()) > 0:
            try: self.events.append(self._recv(left))
            except websocket.WebSocketTimeoutException: break

    def wait_event(self, name: str, timeout: float | None = None):
        import websocket
        t_end = time.time() + (timeout or self.timeout)
        for e in self.events:
            if e.get('method') == name: return e
        while (left := t_end - time.time()) > 0:
            try: e = self._recv(left)
            except websocket.WebSocketTimeoutException: break
            self.events.append(e)
            if e.get('method') == name: return e
        raise TimeoutError(f'no {name} within {timeout or self.timeout}s')

    def eval(self, js: str):
        "Evaluate a JS expression in the page and return its (JSON) value."
        r = self.send('Runtime.evaluate', expression=js, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r: raise RuntimeError(f'JS error in {js[:80]!r}: {r["exceptionDetails"]}')
        return r['result'].get('value')

    def open(self, url: str, settle: float = 0.3) -> list[str]:
        "Load `url`, wait for its load event (and MathJax), return its console errors and failed loads."
        self.events = []
        self.send('Page.navigate', url=url)
        self.wait_event('Page.loadEventFired')
        js_idle = ("(window.MathJax && MathJax.startup && MathJax.startup.promise) ?"
                   " Promise.race([MathJax.startup.promise.then(() => true), new Promise(r => setTimeout(r, 10000))])"
                   " : true")
        self.eval(js_idle)
        self.drain(settle)
        return console_errors(self.events)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params = {'format': 'png'}
        if full_page:
            w, h = self.eval('[document.documentElement.scrollWidth, document.documentElement.scrollHeight]')
            params.update(captureBeyondViewport=True, clip={'x': 0, 'y': 0, 'width': w, 'height': min(h, 8000), 'scale': 1})
        data = self.send('Page.captureScreenshot', **params)['data']
        path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def console_errors(events: list[dict]) -> list[str]:
    "Console errors, uncaught exceptions and failed resource loads among DevTools events."
    errs = []
    for e in events:
        m, p = e.get('method'), e.get('params', {})
        if m == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
            errs.append('console.error: ' + ' '.join(str(a.get('value', a.get('description', ''))) for a in p.get('args', [])))
        elif m == 'Runtime.exceptionThrown':
            d = p.get('exceptionDetails', {})
            errs.append('exception: ' + (d.get('exception', {}).get('description') or d.get('text', '')))
        elif m == 'Log.entryAdded' and p.get('entry', {}).get('level') == 'error':
            en = p['entry']; errs.append(f'{en.get("source")}: {en.get("text")} {en.get("url", "")}'.strip())
        elif m == 'Network.loadingFailed' and not p.get('canceled'):
            errs.append(f'network: {p.get("errorText")} ({p.get("type")})')
    return list(dict.fromkeys(errs))


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__(); self.ids = set()
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k == 'id' or (k == 'name' and tag == 'a'): self.ids.add(v)


@functools.lru_cache(maxsize=None)
def _ids_of(path: Path) -> frozenset:
    p = _Ids(); p.feed(path.read_text(encoding='utf-8', errors='replace')); return frozenset(p.ids)


def resolve(root: Path, base_url: str, url: str) -> str | None:
    "None when the internal `url` resolves to a file (and its `#anchor` to an id of it), else why not."
    u = urllib.parse.urlsplit(url)
    rel = urllib.parse.unquote(u.path)[len(urllib.parse.urlsplit(base_url).path):]
    target = (root / rel).resolve()
    if root.resolve() not in (target, *target.parents): return 'outside the site'
    if target.is_dir(): target = target / 'index.html'
    if not target.is_file(): return f'missing file {target.relative_to(root.resolve())}'
    frag = urllib.parse.unquote(u.fragment)
    if frag and target.suffix == '.html' and frag not in _ids_of(target): return f'missing anchor #{frag}'
    return None


@dataclass
class Report:
    pages: dict = field(default_factory=dict)      # page -> list of console errors
    broken: list = field(default_factory=list)     # (page, url, why)
    failed: list = field(default_factory=list)     # (page, expectation that failed)
    screenshots: list = field(default_factory=list)
    search_hits: int | None = None

    @property
    def ok(self) -> bool:
        return not (self.broken or self.failed or any(self.pages.values()))

    def summary(self) -> str:
        lines = [f'{len(self.pages)} pages opened, {len(self.broken)} broken links, '
                 f'{sum(map(len, self.pages.values()))} console errors, {len(self.failed)} failed expectations']
        lines += [f'  console error on {p}: {e}' for p, es in self.pages.items() for e in es]
        lines += [f'  broken link on {p}: {u} ({why})' for p, u, why in self.broken]
        lines += [f'  failed on {p}: {what}' for p, what in self.failed]
        return '\n'.join(lines)


_JS_LINKS = ("[...document.querySelectorAll('a[href]')].map(a => a.href).concat("
             "[...document.querySelectorAll('img[src], script[src]')].map(e => e.src),"
             "[...document.querySelectorAll('link[rel=stylesheet][href]')].map(e => e.href))")
_JS_PAGE = """(() => {
  const imgs = [...document.querySelectorAll('main img, article img, .bd-article img')];
  const tables = [...document.querySelectorAll('.cell_output table')];
  return {title: document.title,
          images: imgs.length, images_loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
          output_images: [...document.querySelectorAll('.cell_output img')].filter(i => i.complete && i.naturalWidth > 0).length,
          tables: tables.map(t => t.innerText),
          text: (document.querySelector('main') || document.body).innerText};
})()"""


def _cells(nb: Path) -> list[dict]:
    return json.loads(nb.read_text(encoding='utf-8'))['cells']


def _directives(src: str) -> dict:
    d = {}
    for l in src.splitlines():
        m = re.match(r'^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$', l)
        if not m: break
        d[m.group(1)] = m.group(2)
    return d


def _visible_outputs(nb: Path):
    "Outputs of the cells the page shows (not hidden, not `export`ed, not `include: false`/`output: false`)."
    for c in _cells(nb):
        if c['cell_type'] != 'code': continue
        d = _directives(''.join(c['source']))
        if {'hide', 'export', 'exporti', 'default_exp'} & d.keys() or d.get('include') == 'false' or d.get('output') == 'false': continue
        yield from c.get('outputs', [])


class _Cells(HTMLParser):
    "Texts of the <td>/<th> cells of an HTML table."
    def __init__(self):
        super().__init__(); self.texts, self._in = [], False
    def handle_starttag(self, tag, attrs):
        if tag in ('td', 'th'): self._in = True; self.texts.append('')
    def handle_endtag(self, tag):
        if tag in ('td', 'th'): self._in = False
    def handle_data(self, data):
        if self._in: self.texts[-1] += data


def stored_tables(nb: Path) -> list[list[str]]:
    "Cell texts of each HTML table (pandas DataFrames) stored in the visible outputs of `nb`."
    out = []
    for o in _visible_outputs(nb):
        html = o.get('data', {}).get('text/html')
        html = ''.join(html) if isinstance(html, list) else html
        if html and '<table' in html:
            p = _Cells(); p.feed(html); out.append([t.strip() for t in p.texts if t.strip()])
    return out


def stored_figures(nb: Path) -> int:
    return sum(any(k.startswith('image/') for k in o.get('data', {})) for o in _visible_outputs(nb))


def api_expectations(nb: Path) -> dict:
    "id -> {'name', 'doc'} for every function/class that the notebook's module exports."
    from docutils.nodes import make_id
    m = next((re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source'])) for c in _cells(nb)
              if c['cell_type'] == 'code' and 'default_exp' in ''.join(c['source'])), None)
    if not m: return {}
    if str(Path(__file__).resolve().parent) not in sys.path: sys.path.insert(0, str(Path(__file__).resolve().parent))
    import docstyle
    api = {n.split('.', 1)[1]: o for n, o in docstyle.public_api().items() if n.split('.', 1)[0] == m.group(1)}
    res = {}
    for n, o in api.items():
        doc = (inspect.getdoc(o) or '').strip()
        if inspect.isclass(o) and doc.startswith(f'{n}('): doc = ''
        res[make_id(n)] = {'name': n, 'doc': doc.split('\n')[0]}
    return res


def notebook_expectations(nbs: Path) -> dict:
    """What each page must show, from the notebooks in `nbs` (for `check_site`'s `expect`): the home page its
    stored tables and the chapters in order in the sidebar; every page a link to its notebook, its stored
    figures, and an API entry (signature + docstring) for each function/class its module exports."""
    paths = sorted((p for p in Path(nbs).glob('*.ipynb') if not p.name.startswith(('_', '.'))),
                   key=lambda p: (p.stem != 'index', p.name))
    exp = {}
    for p in paths:
        e = exp[f'{p.stem}.html'] = {'links': [f'{Path(nbs).name}/{p.name}'], 'min_output_images': stored_figures(p),
                                     'api': api_expectations(p)}
        tables = stored_tables(p)
        if tables: e.update(min_tables=len(tables), table_texts=sorted({t for tab in tables for t in tab}))
    if 'index.html' in exp:
        exp['index.html']['nav_order'] = [f'{p.stem}.html' for p in paths if p.stem != 'index']
    return exp


def _norm(s: str) -> str: return re.sub(r'\W+', '', s or '')


def _api_problems(b: Chromium, id_: str, name: str, doc: str = '') -> list[str]:
    "An API entry: a section `#id_` whose `.api-entry` box shows `name(` (the signature) and the docstring."
    e = b.eval(f"""(() => {{ const s = document.getElementById({json.dumps(id_)}); if (!s) return null;
        const a = s.querySelector('.api-entry'); if (!a) return {{pre: '', text: ''}};
        return {{pre: [...a.querySelectorAll('pre')].map(p => p.innerText).join('\\n'), text: a.innerText}}; }})()""")
    if e is None: return ['missing']
    probs = []
    if not re.search(rf'\b(def|class)\s+{re.escape(name)}\b|\b{re.escape(name)}\s*\(', e['pre']): probs.append(f'no signature of {name}')
    if doc and _norm(doc) not in _norm(e['text']): probs.append(f'docstring not shown: {doc[:60]!r}')
    return probs


def _serve(root: Path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def check_site(root: Path, expect: dict | None = None, screenshots: dict | None = None,
               search: str | None = None, browser: str | None = None, only: list | None = None) -> Report:
    """Open every page of the site at `root` in headless Chromium.

    Args:
        root: the built site (the folder with index.html).
        expect: page (e.g. '00_core.html') -> expectations checked on that page: 'min_tables' (output
            tables), 'table_texts' (strings some output table shows), 'min_output_images' (loaded figures),
            'ids' (element ids), 'texts', 'links' (hrefs present), 'nav_order' (sidebar hrefs, in order),
            'api' ({id: {'name': short name, 'doc': docstring summary}}: section with signature + docstring).
        screenshots: page -> png path to save (viewport at 1280x1000).
        search: a word to look up with the site's search page; it must find at least one page.
        browser: the Chromium binary (default: `find_chromium()`).
        only: open just these pages (no crawl); default: every page of the site and every page linked.

    Returns:
        A `Report` (its `ok` is False when anything failed).
    """
    root, expect, screenshots = Path(root).resolve(), expect or {}, screenshots or {}
    if not (root / 'index.html').is_file(): raise FileNotFoundError(f'{root}/index.html: build the site first (make docs)')
    _ids_of.cache_clear()
    rep, srv = Report(), _serve(root)
    base = f'http://127.0.0.1:{srv.server_address[1]}/'
    pages = sorted(p.relative_to(root).as_posix() for p in root.glob('*.html'))
    queue, seen = list(only) if only else ['index.html'] + [p for p in pages if p != 'index.html'], set()
    try:
        with Chromium(browser) as b:
            while queue:
                page = queue.pop(0)
                if page in seen: continue
                seen.add(page)
                rep.pages[page] = b.open(base + page)
                checked = set()
                for url in b.eval(_JS_LINKS) or []:
                    if not url.startswith(base) or url in checked: continue
                    checked.add(url)
                    why = resolve(root, base, url)
                    if why: rep.broken.append((page, url[len(base):], why)); continue
                    target = urllib.parse.urlsplit(url).path[1:] or 'index.html'
                    if not only and target.endswith('.html') and target not in seen and target not in queue: queue.append(target)
                info = b.eval(_JS_PAGE)
                if info['images_loaded'] < info['images']:
                    rep.failed.append((page, f'{info["images"] - info["images_loaded"]} of {info["images"]} images did not load'))
                for k, v in expect.get(page, {}).items():
                    if k == 'min_tables' and len(info['tables']) < v:
                        rep.failed.append((page, f'{len(info["tables"])} output tables, expected >= {v}'))
                    elif k == 'table_texts':
                        for t in v:
                            if not any(t in tab for tab in info['tables']):
                                rep.failed.append((page, f'no output table shows {t!r}'))
                    elif k == 'min_output_images' and info['output_images'] < v:
                        rep.failed.append((page, f'{info["output_images"]} figures shown, expected >= {v}'))
                    elif k == 'ids':
                        missing = [i for i in v if not b.eval(f'!!document.getElementById({json.dumps(i)})')]
                        if missing: rep.failed.append((page, f'missing API entries (ids): {missing}'))
                    elif k == 'texts':
                        for t in v:
                            if t not in info['text']: rep.failed.append((page, f'text not shown: {t!r}'))
                    elif k == 'links':
                        hrefs = set(b.eval("[...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"))
                        for h in v:
                            if h not in hrefs: rep.failed.append((page, f'no link to {h}'))
                    elif k == 'nav_order':
                        nav = b.eval("[...document.querySelectorAll('.bd-sidenav a')].map(a => a.getAttribute('href'))")
                        got = [h for h in nav if h in v]
                        if got != list(v): rep.failed.append((page, f'sidebar order {got}, expected {list(v)}'))
                    elif k == 'api':
                        for i, e in v.items():
                            rep.failed += [(page, f'API entry #{i}: {w}') for w in _api_problems(b, i, **e)]
                if page in screenshots: rep.screenshots.append(b.screenshot(screenshots[page]))
            if search:
                errs = b.open(base + 'search.html?q=' + urllib.parse.quote(search))
                t0, hits = time.time(), 0
                while time.time() - t0 < 15:
                    hits = b.eval("document.querySelectorAll('#search-results li, ul.search li').length")
                    done = b.eval("!!document.querySelector('#search-results p.search-summary, #search-results > p')")
                    if hits or done: break
                    time.sleep(0.1)
                errs += console_errors(b.events)
                rep.search_hits = hits
                rep.pages[f'search.html?q={search}'] = list(dict.fromkeys(errs))
                if not hits: rep.failed.append(('search.html', f'searching {search!r} found nothing'))
    finally:
        srv.shutdown(); srv.server_close()
    return rep


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('site', nargs='?', default='_docs')
    ap.add_argument('--screenshots', help='folder for screenshots of the home page and the first chapter')
    ap.add_argument('--search', default='student_config')
    ap.add_argument('--nbs', default='nbs', help='the notebooks the site was built from (for what each page must show)')
    a = ap.parse_args()
    root = Path(a.site)
    shots = {}
    if a.screenshots:
        chapters = sorted(p.name for p in root.glob('[0-9]*.html'))
        shots = {'index.html': Path(a.screenshots) / 'home.png'}
        if chapters: shots[chapters[0]] = Path(a.screenshots) / f'{Path(chapters[0]).stem}.png'
    nbs = Path(a.nbs)
    rep = check_site(root, expect=notebook_expectations(nbs) if nbs.is_dir() else None, screenshots=shots, search=a.search)
    print(rep.summary())
    for s in rep.screenshots: print(f'screenshot: {s}')
    sys.exit(0 if rep.ok else 1)
