"""The study as a site (`make docs`): each notebook's page in Chromium shows its title, its code without nbdev's
directives and the figures the notebook keeps; each module has its API page; every link inside the site resolves."""
import asyncio
import importlib.util
import itertools
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site'
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
NOTEBOOKS = sorted(ROOT.glob('nbs/*.ipynb')) + sorted(ROOT.glob('nbs/reports/*.ipynb'))
MODULES = sorted(p.stem for p in ROOT.glob('fer_study/*.py') if not p.stem.startswith('_'))

# what a page shows, read once it has loaded (images included): its title, the figures in cell outputs (each loaded
# or not), the code blocks, the links to the API reference. A new tab starts on about:blank, where the answer waits
# until the page replaces it (and the question is asked again there).
LOOK = """new Promise(done => { if (location.protocol !== 'file:') return; const look = () => done({
    h1: [...document.querySelectorAll('article h1')].map(h => h.firstChild.textContent.trim()),
    figures: [...document.querySelectorAll('article .cell_output img')].map(i => i.complete && i.naturalWidth > 0),
    code: [...document.querySelectorAll('article .cell_input pre')].map(p => p.innerText),
    api: [...document.querySelectorAll('article a')].filter(a => a.href.includes('/api/')).length});
  document.readyState === 'complete' ? look() : addEventListener('load', look); })"""


@pytest.fixture(scope='module')
def site():
    "The site as `make docs` builds it (nothing to do when it is up to date, as after `make test`'s own build)."
    r = subprocess.run(['make', '-s', 'docs'], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return SITE


def page_of(nb: Path) -> Path:
    return SITE / nb.relative_to(ROOT / 'nbs').with_suffix('.html')


def shown_code_cells(nb: dict) -> int:
    "Code cells whose code nbdev's own site would show: a line that is not a directive, no `#| hide` and the like."
    def shown(src):
        return not re.search(r'^\s*#\|\s*(hide\b|include:\s*false|echo:\s*false)', src, re.M) and any(
            line.strip() and not line.lstrip().startswith('#|') for line in src.splitlines())
    return sum(shown(''.join(c['source'])) for c in nb['cells'] if c['cell_type'] == 'code')


async def look_at(devtools: str, pages: list[Path]) -> dict[Path, dict]:
    "Open each page in the browser behind `devtools` (a tab each, closed after) and read what it shows."
    seen = {}
    async with aiohttp.ClientSession() as http:
        for page in pages:
            async with http.put(f'{devtools}/json/new?{page.as_uri()}') as r: target = await r.json(content_type=None)
            async with http.ws_connect(target['webSocketDebuggerUrl'], max_msg_size=0) as ws:
                ids = itertools.count(1)
                for _ in range(20):  # a page still loading loses its context: ask again once the answer says so
                    await ws.send_json(dict(id=(call := next(ids)), method='Runtime.evaluate',
                                            params=dict(expression=LOOK, awaitPromise=True, returnByValue=True)))
                    while (answer := await ws.receive_json(timeout=120)).get('id') != call: pass
                    if 'exceptionDetails' not in answer.get('result', {'exceptionDetails': answer.get('error')}):
                        seen[page] = answer['result']['result']['value']
                        break
                else: pytest.fail(f'{page.name} never answered: {answer}')
            async with http.get(f"{devtools}/json/close/{target['id']}"): pass
    return seen


@pytest.fixture(scope='module')
def shown(site, tmp_path_factory):
    "What Chromium shows on each notebook's page and each module's API page."
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make test` installs Debian's chromium package"
    profile = tmp_path_factory.mktemp('chromium')
    # the background-networking flags keep Chromium from calling out on a closed network
    browser = subprocess.Popen([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                                '--no-first-run', '--disable-background-networking', '--disable-component-update',
                                '--disable-sync',
                                f'--user-data-dir={profile}', '--remote-debugging-port=0', 'about:blank'],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in browser.stderr:
            if devtools := re.search(r'DevTools listening on ws://([\d.:]+)/', line): break
        else: pytest.fail('Chromium did not start its DevTools server')
        threading.Thread(target=browser.stderr.read, daemon=True).start()  # its later messages never fill the pipe
        pages = [page_of(nb) for nb in NOTEBOOKS] + [SITE / f'api/fer_study/{m}/index.html' for m in MODULES]
        assert not (missing := [str(p.relative_to(SITE)) for p in pages if not p.is_file()]), missing
        return asyncio.run(look_at(f'http://{devtools[1]}', pages))
    finally:
        browser.kill()
        browser.wait()


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_page_shows_its_title_code_and_figures(shown, nb):
    cells = json.loads(nb.read_text())
    title = next(line[2:].strip() for c in cells['cells'] if c['cell_type'] == 'markdown'
                 for line in ''.join(c['source']).splitlines() if line.startswith('# '))
    kept = sum(any(k.startswith('image/') for k in o.get('data', {}))
               for c in cells['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    page = shown[page_of(nb)]
    assert page['h1'] == [title], page['h1']
    assert page['figures'] == [True] * kept, f"{kept} figures kept, the page shows {page['figures']} (loaded or not)"
    assert len(page['code']) == shown_code_cells(cells), 'a code cell lost or a hidden one shown'
    assert not [c for c in page['code'] if re.search(r'^\s*#\|', c, re.M)], "nbdev's directives are not shown"
    if nb.stem[0].isdigit(): assert page['api'], 'a notebook that exports a module links to its API'


def test_figures_are_checked_somewhere():
    # the test above asserts every figure of a notebook; it means something only while some notebook keeps figures
    assert sum(json.dumps(json.loads(nb.read_text())).count('"image/png"') for nb in NOTEBOOKS) >= 3


@pytest.mark.parametrize('module', MODULES)
def test_each_module_has_its_api_page(shown, module):
    page = shown[SITE / f'api/fer_study/{module}/index.html']
    assert page['h1'] == [f'fer_study.{module}'], page['h1']


class Links(HTMLParser):
    "The links (href, src) and the anchors (id, name) of one page."
    def __init__(self):
        super().__init__()
        self.links, self.anchors = [], set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ('href', 'src') and v: self.links.append(v)
            if k in ('id', 'name') and v: self.anchors.add(v)


def read_links(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text())
    return parser


def test_every_link_inside_the_site_resolves_and_every_page_is_reached(site):
    root, pages, broken, todo = site.resolve(), {}, [], [site.resolve() / 'index.html']
    def parsed(page):
        if page not in pages: pages[page] = read_links(page)
        return pages[page]
    walked = set()
    while todo:  # a walk from the home page over the site's own links
        page = todo.pop()
        if page in walked: continue
        walked.add(page)
        for link in parsed(page).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc: continue  # outside the site, or a data: URL
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir(): target = target / 'index.html'
            if not target.is_file() or not target.is_relative_to(root):
                broken.append((str(page.relative_to(root)), link))
            elif target.suffix == '.html':
                todo.append(target)
                if parts.fragment and unquote(parts.fragment) not in parsed(target).anchors:
                    broken.append((str(page.relative_to(root)), link))
    assert not broken, broken[:20]
    reached = {p.relative_to(root) for p in walked}
    want = {page_of(nb).relative_to(SITE) for nb in NOTEBOOKS}
    want |= {Path(f'api/fer_study/{m}/index.html') for m in MODULES}
    assert not want - reached, sorted(map(str, want - reached))
    assert len(reached) > len(want)  # the indexes and each class's page too


def load_conf():
    spec = importlib.util.spec_from_file_location('docs_conf', ROOT / 'docs' / 'conf.py')
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def code(src: str, **meta) -> dict:
    return {'cell_type': 'code', 'source': src, 'metadata': meta, 'outputs': []}


def test_nbdev_directives_on_a_page():
    page = load_conf().page_cells([
        code('#| default_exp faces'), code('#| hide\nimport secret'), code('#|include: false\nsetup()'),
        code('#| export\ndef f(): pass'), code('#| echo: false\nplot()'), code('#| output: false\nnoisy()'),
        code('x = 1\nprint(x)  #|hide_line\nx'), code('#| eval: false'),
        {'cell_type': 'markdown', 'source': 'Uses `find_faces` and `nothing_of_ours`.', 'metadata': {}}], 'faces')
    linked = 'Uses {py:obj}`find_faces <fer_study.faces.find_faces>` and `nothing_of_ours`.'
    assert [c['source'] for c in page] == ['def f(): pass', 'plot()', 'noisy()', 'x = 1\nx', linked]
    assert [c['metadata']['tags'] for c in page[:3]] == [[], ['remove-input'], ['remove-output']]
