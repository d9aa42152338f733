"""The project's web files: the dashboard's shipped in the wheel."""
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / 'fer_study' / 'static'


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
