"""The project's web files: the dashboard's shipped in the wheel; the page `dvc plots show` fills, made from the npm
packages pinned in package-lock.json (how it draws offline is checked on the study in test_pipeline.py)."""
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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
