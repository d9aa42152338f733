"""The papermill reports: run by the command line, every figure there, no error cell, and a page that renders in Chromium;
user text shown as text; an interrupted report keeps the earlier one and leaves nothing behind."""
import asyncio
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import Tab, chromium

from fer_study.cli import main
from fer_study.core import CLASSES, folder_name
from fer_study.screen import slide_truth_path
from fer_study.synth import make_demo_video, make_screenshare_video
from fer_study.testing import demo_checkpoint

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}"}
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
VIDEO_FIGURES = 6  # shares, against the truth (the demo call has one), timeline, participants, contact sheet, reactions


def fer_study(*args, env=ENV):
    return subprocess.run(['fer-study', *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('report')
    ckpt = demo_checkpoint(d / 'tiny.pt', input_size=64, resize=73)
    return d, make_demo_video(d / 'call.mp4', 'grid', seed=1, duration=3), ckpt


@pytest.fixture(scope='module')
def video_report(inputs):
    d, video, ckpt = inputs
    # conf-threshold 0: an untrained model is unsure of every face, and the figures should have something to draw
    r = fer_study('report', video, '--model', ckpt, '--out', d / 'out', '--fps', 2, '--conf-threshold', 0, '--title', 'Monday stand-up',
                  '--metrics', d / 'call.metrics.json')
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
    assert '>Against the ground truth<' in page and 'Scored against the ground truth in call.truth.csv: ' in page


def test_video_report_writes_the_metrics_of_its_video(video_report):
    metrics = json.loads((video_report.parents[1] / 'call.metrics.json').read_text())
    truth = json.loads((video_report / 'summary.json').read_text())['truth']
    assert metrics['found'] == truth['faces']['found_share'] == 1 and metrics['agree'] == truth['agreement']['share']
    assert {'found', 'agree', 'share_gap'} <= set(metrics) <= {'found', 'agree', 'low', 'high', 'share_gap'}
    assert all(isinstance(v, (int, float)) for v in metrics.values()), metrics


SEGMENT_ROWS = """[...document.querySelectorAll('tr.segment')].map(r => ({
    label: r.querySelector('b').textContent, thumb: r.querySelector('img.thumb')?.naturalWidth ?? 0,
    ratio: (r.querySelector('img.thumb')?.naturalWidth ?? 0) / (r.querySelector('img.thumb')?.naturalHeight || 1),
    bar: r.querySelector('.bar').getBoundingClientRect().width, colours: r.querySelectorAll('.bar span').length}))"""


async def segment_rows(devtools: str, page: str) -> list[dict]:
    "Each segment row of the report as Chromium lays it out: label, thumbnail width, bar width, coloured parts."
    async with Tab(devtools) as tab:
        await tab.call('Page.enable')
        await tab.call('Page.navigate', url=page)
        await tab.wait_for('Page.loadEventFired')
        return await tab.evaluate(SEGMENT_ROWS)


def test_a_report_cut_by_an_agenda_has_a_row_per_item_with_thumbnail_and_bar(inputs, tmp_path):
    d, video, ckpt = inputs
    agenda = tmp_path / 'agenda.csv'
    agenda.write_text('start,label\n0,welcome\n0:01.5,questions\n')
    r = fer_study('report', video, '--model', ckpt, '--out', tmp_path / 'out', '--fps', 2, '--conf-threshold', 0,
                  '--segments', agenda)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    folder = tmp_path / 'out' / 'call'
    summary = json.loads((folder / 'summary.json').read_text())
    assert [s['label'] for s in summary['segments']['items']] == ['welcome', 'questions']
    assert set(pd.read_csv(folder / 'keyframes.csv').segment) == {'welcome', 'questions'}
    page = (folder / 'report.html').read_text()
    assert '>By agenda item<' in page and "positive share" in page
    with chromium(tmp_path / 'profile') as devtools:
        rows = asyncio.run(segment_rows(devtools, (folder / 'report.html').as_uri()))
    assert [r['label'] for r in rows] == ['welcome', 'questions']
    assert all(r['thumb'] > 0 and r['bar'] > 100 and r['colours'] > 0 for r in rows), rows


def test_a_report_cut_by_slides_shows_each_slide_cropped_to_the_shared_screen(inputs, tmp_path):
    d, _, ckpt = inputs
    call = make_screenshare_video(tmp_path / 'talk.mp4', seed=0, duration=9)
    r = fer_study('report', call, '--model', ckpt, '--out', tmp_path / 'out', '--fps', 2, '--conf-threshold', 0,
                  '--slides', 'auto')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    folder = tmp_path / 'out' / 'talk'
    block = json.loads((folder / 'summary.json').read_text())['segments']
    slides = len(slide_truth_path(call).read_text().splitlines()) - 1  # the truth: a row per slide shown
    assert [s['label'] for s in block['items']] == [f'slide {k}' for k in range(1, slides + 1)]
    x, y, w, h = block['region']
    assert '>By slide<' in (folder / 'report.html').read_text()
    with chromium(tmp_path / 'profile') as devtools:
        rows = asyncio.run(segment_rows(devtools, (folder / 'report.html').as_uri()))
    assert len(rows) == slides and all(r['thumb'] > 0 and r['bar'] > 100 for r in rows), rows
    assert all(abs(r['ratio'] - w / h) < 0.05 for r in rows), (rows, w / h)  # the screen's shape, not the frame's


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
    assert not [p.name for p in out.rglob('.*')], 'no temporary file left behind'


def test_bad_input_fails_before_any_report(inputs, tmp_path):
    d, video, ckpt = inputs
    r = fer_study('report', video, tmp_path / 'nowhere.mp4', '--model', ckpt, '--out', tmp_path / 'out')
    assert r.returncode == 2 and 'nowhere.mp4: no such file' in r.stderr, r.stderr
    r = fer_study('report', video, '--model', tmp_path / 'missing.pt', '--out', tmp_path / 'out')
    assert r.returncode == 2 and 'missing.pt: checkpoint not found' in r.stderr, r.stderr
    assert not (tmp_path / 'out').exists()


# an empty room (quick to read) whose file name and title are HTML: no faces, and user text that must stay text
SCRIPT, IMG = '<script>alert(1)</script>', '<img src=x onerror=alert(1)>'
SCRIPT_TEXT, IMG_TEXT = '&lt;script&gt;alert(1)&lt;/script&gt;', '&lt;img src=x onerror=alert(1)&gt;'


@pytest.fixture(scope='module')
def blank_report(inputs):
    from fer_study.testing import make_test_video
    d, _, ckpt = inputs
    blank = make_test_video(d / f'{IMG}.mp4', 'color=c=gray:s=320x240:r=25:d=1')
    r = fer_study('report', blank, '--model', ckpt, '--out', d / 'blank', '--title', SCRIPT)
    assert r.returncode == 0, r.stderr[-3000:]
    return d / 'blank' / folder_name(IMG)  # a name from outside made one folder name (no '<', '>')


def test_a_video_without_faces_gives_a_report_that_says_so(blank_report):
    nb = nbformat.read(blank_report / 'report.ipynb', as_version=4)
    assert figures(nb) == []
    page = (blank_report / 'report.html').read_text()
    assert f'no faces were found in 1 keyframe of {IMG_TEXT}.mp4, so there is nothing to report about emotions' in page
    assert page.count('Nothing to draw') == VIDEO_FIGURES - 1 and 'ground truth' not in page  # no truth, no such section


def test_report_files_have_the_mode_of_the_other_outputs(video_report):
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in video_report.iterdir()}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask), modes
    assert {'report.ipynb', 'report.html', 'faces.csv'} <= set(modes)


def test_a_report_that_cannot_be_written_leaves_the_earlier_set_whole(inputs, blank_report, small_disk):
    """Issue 19, class 10, on a real full disk: a rerun (--fps 1) whose page does not fit changes none of the set."""
    d, _, ckpt = inputs
    out = small_disk.path / 'out'
    shutil.copytree(blank_report, out / blank_report.name)  # the earlier report and its tables, the same video's
    before = files(out)
    small_disk.fill(64 * 1024)  # the new tables fit; the page does not
    r = fer_study('report', d / f'{IMG}.mp4', '--model', ckpt, '--out', out, '--fps', 1, '--precision', 'fp32')
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr == (f"error: {out / blank_report.name}: cannot write report.ipynb, report.html and the template's "
                        "files there (No space left on device); nothing there was changed\n"), r.stderr[-3000:]
    assert files(out) == before, 'the tables and the page are one set: all as before'


def test_a_checkpoint_whose_classes_are_not_the_seven_is_refused(inputs, tmp_path, capsys):
    """Issue 19, class 14: class names reach the page, so a checkpoint carrying others is refused when loaded."""
    import torch
    d, video, ckpt = inputs
    hostile = torch.load(ckpt, weights_only=True)
    hostile['meta']['classes'][3] = IMG
    torch.save(hostile, tmp_path / 'hostile.pt')
    for command in ('report', 'analyze'):
        assert main([command, str(video), '--model', str(tmp_path / 'hostile.pt'), '--out', str(tmp_path / 'out')]) == 2
        assert capsys.readouterr().err == (
            f"error: {tmp_path / 'hostile.pt'}: checkpoint meta 'classes' has ['{IMG}'], which the study does not; "
            f"lacks Happiness; a fer_study checkpoint has the study's seven, in order: {', '.join(CLASSES)}\n")
    assert not (tmp_path / 'out').exists()


def test_a_file_name_that_is_not_utf8_is_analysed_written_and_reported(inputs, tmp_path):
    """Issue 19, class 9: a Latin-1 name is read by its own bytes and shown with U+FFFD in text, JSON and the page."""
    d, video, ckpt = inputs
    latin1 = os.fsencode(tmp_path) + b'/caf\xe9.mp4'
    shutil.copyfile(video, latin1)
    env = {**ENV, 'LC_ALL': 'C.UTF-8'}  # a UTF-8 terminal: printing an undecodable name used to raise
    for command, out in (('analyze', tmp_path / 'analyzed'), ('report', tmp_path / 'reported')):
        r = subprocess.run([BIN / 'fer-study', command, latin1, '--model', ckpt, '--out', out, '--fps', '1',
                            '--precision', 'fp32'], capture_output=True, env=env)
        assert r.returncode == 0, r.stderr.decode(errors='replace')[-3000:]
        assert 'caf\ufffd' in r.stdout.decode('utf-8')
        folder = out / 'caf\ufffd'
        summary = json.loads((folder / 'summary.json').read_text(encoding='utf-8'))
        assert (summary['video']['name'], summary['source']['folder']) == ('caf\ufffd.mp4', 'caf\ufffd')
        assert summary['faces'] > 0 and set(pd.read_csv(folder / 'faces.csv').video) == {'caf\ufffd.mp4'}
    page = (tmp_path / 'reported' / 'caf\ufffd' / 'report.html').read_bytes().decode('utf-8')
    assert '<title>How the audience felt: caf\ufffd.mp4</title>' in page and '<strong>caf\ufffd.mp4</strong>' in page


def test_user_text_in_the_page_is_text(blank_report):
    page = (blank_report / 'report.html').read_text()
    assert f'<title>{SCRIPT_TEXT}: {IMG_TEXT}.mp4</title>' in page
    assert f'>{SCRIPT_TEXT}<' in page, 'the heading shows the title as text'
    assert f'<strong>{IMG_TEXT}.mp4</strong>, ' in page, 'the summary names the video as text'
    assert SCRIPT not in page and IMG not in page and '<script>alert' not in page and '<img src=x' not in page


# A template whose first cell sends its kernel's pid through a FIFO and then waits for good: once the pid has arrived,
# the kernel has started and the report is under way, which is when an interruption can do harm.
BLOCKING_TEMPLATE = """import os, threading
with open(os.environ['FER_STUDY_TEST_FIFO'], 'w') as f: f.write(str(os.getpid()))
threading.Event().wait()"""


def kernel_pid(proc, fifo) -> int:
    "Wait (no timeout) until the template's first cell sends its kernel's pid through `fifo`; fail if fer-study ends first."
    fd, err = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK), b''
    try:
        while True:
            ready = select.select([fd, proc.stderr], [], [])[0]
            if fd in ready: return int(os.read(fd, 32))
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, f"fer-study ended before the template ran: {err.decode()[-3000:]}"
            err += chunk
    finally: os.close(fd)


def running(pid: int) -> bool:
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except FileNotFoundError: return False


def files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None for p in folder.rglob('*')}


def default_signals():
    # a test run in the background inherits SIGINT ignored; the command must see it as a terminal's Ctrl-C would send it
    for s in (signal.SIGINT, signal.SIGTERM): signal.signal(s, signal.SIG_DFL)


STOPPED = {signal.SIGINT: 'interrupted: nothing was half-written; earlier results are as they were\n',
           signal.SIGTERM: 'stopped by SIGTERM: nothing was half-written; earlier results are as they were\n'}


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=['ctrl-c', 'sigterm', 'sigkill'])
def test_an_interrupted_report_keeps_the_earlier_one_and_leaves_nothing(inputs, video_report, tmp_path, process_table, sig):
    d, video, ckpt = inputs
    out, templates, tmp = tmp_path / 'out', tmp_path / 'templates', tmp_path / 'tmp'
    shutil.copytree(video_report, out / 'call')  # an earlier, complete report
    templates.mkdir(), tmp.mkdir()
    # the real template's parameters, so that papermill has nothing to say about those it is given
    real = nbformat.read(Path(__file__).parents[1] / 'nbs' / 'reports' / 'video_report.ipynb', as_version=4)
    parameters = next(c.source for c in real.cells if 'parameters' in c.metadata.get('tags', []))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(parameters), nbformat.v4.new_code_cell(BLOCKING_TEMPLATE)],
                                  metadata={'kernelspec': {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}})
    nb.cells[0].metadata['tags'] = ['parameters']
    nbformat.write(nb, templates / 'video_report.ipynb')
    fifo = tmp_path / 'started'
    os.mkfifo(fifo)
    before = files(out)
    env = {**ENV, 'FER_STUDY_REPORTS': str(templates), 'FER_STUDY_TEST_FIFO': str(fifo), 'TMPDIR': str(tmp)}
    proc = subprocess.Popen(['fer-study', 'report', video, '--model', ckpt, '--out', out], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=default_signals)
    kernel = None
    try:
        kernel = kernel_pid(proc, fifo)
        started = process_table.descendants(proc.pid)  # the kernel, and anything it runs
        proc.send_signal(sig)
        err = proc.communicate()[1].decode()
        if sig == signal.SIGKILL: assert proc.returncode == -signal.SIGKILL
        else: assert (proc.returncode, err) == (128 + sig, STOPPED[sig]), 'one line, and nothing after it'
        assert started and process_table.still_running(started) == [], 'the kernel ends with the command, however it ends'
        assert files(out) == before, 'the earlier report is as it was, and nothing was added beside it or in its folder'
        assert not list(tmp.rglob('*.ipynb')), 'papermill kept no working copy of the notebook'
    finally:
        if kernel and running(kernel): os.kill(kernel, signal.SIGKILL)
        if proc.poll() is None: proc.kill(), proc.communicate()
