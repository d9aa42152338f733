"""The project's web files: the dashboard's shipped in the wheel, and its part of the talk drawn in Chromium; the page
`dvc plots show` fills, made from the npm packages pinned in package-lock.json (how it draws offline is checked on the
study in test_pipeline.py)."""
import asyncio
import json
import math
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from fer_study.core import CLASSES
from fer_study.dashboard import Dashboard
from fer_study.live_session import LiveParts, LiveView
from fer_study.segments import TalkSegment
from conftest import Tab, chromium

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / 'fer_study' / 'static'
MAKE_TEMPLATE = [sys.executable, str(ROOT / 'tools' / 'plots_template.py')]


def test_the_wheel_ships_the_dashboards_web_files(tmp_path):
    src = tmp_path / 'src'
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard'], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:  # the committed files and the working tree's, as a fresh clone would have them
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', str(src),
                        '-w', str(tmp_path / 'wheel')], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    with zipfile.ZipFile(next((tmp_path / 'wheel').glob('fer_study-*.whl'))) as wheel:
        shipped = {n: wheel.read(n) for n in wheel.namelist() if n.startswith('fer_study/static/')}
    assert shipped == {f'fer_study/static/{p.name}': p.read_bytes() for p in STATIC.iterdir()}
    assert set(shipped) == {f'fer_study/static/dashboard.{ext}' for ext in ('html', 'css', 'js')}


def test_the_plots_page_inlines_the_pinned_vega_libraries(tmp_path):
    r = subprocess.run([*MAKE_TEMPLATE, '--out', str(tmp_path / 'plots.html')], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == '', r.stderr
    page = (tmp_path / 'plots.html').read_text()
    pins = json.loads((ROOT / 'package-lock.json').read_text())['packages']
    want = [f"/* {name} {pins[f'node_modules/{name}']['version']} */" for name in ('vega', 'vega-lite', 'vega-embed')]
    assert re.findall(r'/\* vega[-a-z]* [0-9.]+ \*/', page) == want  # each once, in the order they need each other
    assert page.count('{plot_divs}') == 1 and '{scripts}' not in page  # {scripts}: DVC's tags that load from a CDN
    markup = re.sub(r'<script>.*?</script>', '', page, flags=re.S)  # the page without its scripts' code
    assert not re.search(r' (src|href)=', markup)  # no tag loads anything
    assert page.count('<script>') == page.count('</script>') == 4  # the three libraries and the embedding's wrapper


def test_the_plots_page_needs_npm_ci_and_writes_nothing_without_it(tmp_path):
    modules = tmp_path / 'node_modules'
    shutil.copytree(ROOT / 'node_modules' / 'vega', modules / 'vega')  # vega-lite and vega-embed missing
    r = subprocess.run([*MAKE_TEMPLATE, '--modules', str(modules), '--out', str(tmp_path / 'plots.html')],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f'error: {modules}/vega-lite/build/vega-lite.min.js: cannot read it (No such file or ' \
                       'directory); run `npm ci` first\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['node_modules']


# the page once `condition` holds: whether the part of the talk is hidden, the part, the table's rows (class, cells)
SNAPSHOT = ("new Promise(done => { const $ = (id) => document.getElementById(id), look = () => (%s) && "
            "done({hidden: $('parts').hidden, segment: $('segment').textContent, rows: [...document.querySelectorAll("
            "'#segments tbody tr')].map(r => [r.className, ...[...r.cells].map(c => c.textContent)])}); "
            "if (!look()) addEventListener('fer:update', look); })")


def test_the_dashboard_shows_the_part_of_the_talk_and_the_parts_so_far(tmp_path):
    agenda = [TalkSegment('opening', 0, 5, 'file'), TalkSegment('<b>questions</b>', 6, math.inf, 'file')]
    view, plain = LiveView(CLASSES, 4, LiveParts(agenda)), LiveView(CLASSES, 4)
    for k in range(16):  # a keyframe every half second: happy until 5 s, then sad
        rows = [dict(participant=0, time=k / 2, frame=k, label='Happiness' if k < 10 else 'Sadness', confidence=0.9,
                     uncertain=False)]
        view.add(k / 2, rows); plain.add(k / 2, rows)
    status = dict(state='live', sampling='2/s', latency=0.2, dropped=0, note=None, outputs=None)
    part = lambda text: SNAPSHOT % f"$('segment').textContent === {json.dumps(text)}"

    async def look(url: str) -> list:
        async with Tab(devtools, url) as tab:
            await tab.evaluate("new Promise(done => document.getElementById('segment') ? done(1) : "
                               "addEventListener('load', () => done(1)))")
            seen = [await tab.evaluate(part('opening'))]
            board.publish(view.update(5.5, **status))
            seen.append(await tab.evaluate(part('between parts')))
            board.publish(view.update(7.5, **status))
            seen.append(await tab.evaluate(part('<b>questions</b>')))
            board.publish(plain.update(8.0, **status))  # a talk not cut: no part, no table
            seen.append(await tab.evaluate(SNAPSHOT % "$('parts').hidden"))
            return seen

    with Dashboard(port=0) as board, chromium(tmp_path / 'profile') as devtools:
        board.publish(view.update(3.0, **status))
        opening, gap, questions, uncut = asyncio.run(look(board.url))
    assert opening == dict(hidden=False, segment='opening', rows=[['current', 'opening', '0:00–now', '6', '100%',
                                                                   'Happiness']])
    assert gap['rows'] == [['', 'opening', '0:00–0:05', '10', '100%', 'Happiness']]  # shown as text, newest first
    assert questions['rows'] == [['current', '<b>questions</b>', '0:06–now', '3', '0%', 'Sadness'], gap['rows'][0]]
    assert uncut['hidden'] and uncut['rows'] == []
