"""The papermill reports: run by the command line, every figure there, no error cell, and a page that renders in Chromium."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from PIL import Image

from fer_study.model import DACL, model_meta
from fer_study.synth import make_demo_video

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}"}
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
VIDEO_FIGURES = 5  # shares, timeline, participants, contact sheet, strongest reactions


def fer_study(*args, env=ENV):
    return subprocess.run(['fer-study', *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('report')
    torch.manual_seed(0)
    ckpt = d / 'tiny.pt'
    torch.save({'model': DACL(input_size=64).state_dict(),
                'meta': model_meta(64, 73, [0.5752, 0.4495, 0.4012], [0.2086, 0.1911, 0.1827], dataset='synthetic')}, ckpt)
    return d, make_demo_video(d / 'call.mp4', 'grid', seed=1, duration=3), ckpt


@pytest.fixture(scope='module')
def video_report(inputs):
    d, video, ckpt = inputs
    # conf-threshold 0: an untrained model is unsure of every face, and the figures should have something to draw
    r = fer_study('report', video, '--model', ckpt, '--out', d / 'out', '--fps', 2, '--conf-threshold', 0, '--title', 'Monday stand-up')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return d / 'out' / 'call'


def figures(nb):
    return [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if 'image/png' in o.get('data', {})]


def test_video_report_has_every_figure_and_no_error(video_report):
    for name in ('report.ipynb', 'report.html', 'faces.csv', 'keyframes.csv', 'summary.json'):
        assert (video_report / name).is_file(), name
    nb = nbformat.read(video_report / 'report.ipynb', as_version=4)
    assert not [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if o.output_type == 'error']
    assert len(figures(nb)) == VIDEO_FIGURES
    page = (video_report / 'report.html').read_text()
    assert page.count('src="data:image/png;base64,') == VIDEO_FIGURES
    assert '<title>Monday stand-up: call.mp4</title>' in page
    assert 'Synthetic model.' in page and '4 people seen' in page
    assert 'analyze_video(' not in page, 'code is hidden in the HTML'
    assert json.loads((video_report / 'summary.json').read_text())['participants_seen'] == 4


def saturated_fraction(png: Path) -> float:
    "Share of the screenshot's pixels in clear colour (figures), as opposed to text and background greys."
    hsv = np.asarray(Image.open(png).convert('RGB').convert('HSV'), dtype=float) / 255
    return float(((hsv[..., 1] > 0.25) & (hsv[..., 2] > 0.2)).mean())


def screenshot(page: Path, png: Path, profile: Path) -> Path:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make test` installs Debian's chromium package"
    # the background-networking flags keep Chromium from calling out on a closed network
    subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars',
                    f'--user-data-dir={profile}', '--window-size=1100,5000', f'--screenshot={png}', page.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    return png


def test_video_report_renders_its_figures_in_chromium(video_report, tmp_path):
    shot = screenshot(video_report / 'report.html', tmp_path / 'report.png', tmp_path / 'profile')
    # the same page with its figures taken out: what a page whose images failed would look like
    blank = tmp_path / 'no_figures.html'
    blank.write_text((video_report / 'report.html').read_text().replace('src="data:image/png;base64,', 'src="data:image/png;base64,broken'))
    control = screenshot(blank, tmp_path / 'no_figures.png', tmp_path / 'profile')
    with_figures, without = saturated_fraction(shot), saturated_fraction(control)
    assert with_figures > 0.03, f"only {with_figures:.2%} of the page is in colour: figures did not render"
    assert with_figures > 5 * without, (with_figures, without)


def test_failing_cell_fails_the_command_and_leaves_no_stale_report(inputs, video_report, tmp_path):
    d, video, ckpt = inputs
    out = tmp_path / 'out'
    shutil.copytree(video_report, out / 'call')  # an earlier, complete report
    templates = tmp_path / 'templates'
    templates.mkdir()
    nb = nbformat.read(Path(__file__).parents[1] / 'nbs/reports/video_report.ipynb', as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('the timeline broke')"))
    nbformat.write(nb, templates / 'video_report.ipynb')
    r = fer_study('report', video, '--model', ckpt, '--out', out, '--fps', 2, env={**ENV, 'FER_STUDY_REPORTS': str(templates)})
    assert r.returncode == 2
    assert 'RuntimeError: the timeline broke' in r.stderr and 'report.failed.ipynb' in r.stderr, r.stderr
    assert not (out / 'call' / 'report.html').exists() and not (out / 'call' / 'report.ipynb').exists()
    failed = nbformat.read(out / 'call' / 'report.failed.ipynb', as_version=4)
    assert any(o.output_type == 'error' for c in failed.cells if c.cell_type == 'code' for o in c.outputs)


def test_bad_input_fails_before_any_report(inputs, tmp_path):
    d, video, ckpt = inputs
    r = fer_study('report', video, tmp_path / 'nowhere.mp4', '--model', ckpt, '--out', tmp_path / 'out')
    assert r.returncode == 2 and 'nowhere.mp4: no such file' in r.stderr, r.stderr
    r = fer_study('report', video, '--model', tmp_path / 'missing.pt', '--out', tmp_path / 'out')
    assert r.returncode == 2 and 'missing.pt: checkpoint not found' in r.stderr, r.stderr
    assert not (tmp_path / 'out').exists()


def test_a_video_without_faces_gives_a_report_that_says_so(inputs, tmp_path):
    d, _, ckpt = inputs
    from fer_study.keyframes import make_test_video
    blank = make_test_video(tmp_path / 'empty_room.mp4', 'color=c=gray:s=320x240:r=25:d=1')
    r = fer_study('report', blank, '--model', ckpt, '--out', tmp_path / 'out')
    assert r.returncode == 0, r.stderr[-3000:]
    nb = nbformat.read(tmp_path / 'out' / 'empty_room' / 'report.ipynb', as_version=4)
    assert figures(nb) == []
    page = (tmp_path / 'out' / 'empty_room' / 'report.html').read_text()
    assert 'no faces were found in 1 keyframe of empty_room.mp4, so there is nothing to report about emotions' in page
    assert page.count('Nothing to draw') == VIDEO_FIGURES
