"""Many recordings: folders expand to their videos, --jobs N runs them in worker processes, one bad file fails alone."""
import contextlib
import io
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from multiprocessing.connection import wait

import pandas as pd
import pytest

from fer_study import batch
from fer_study.cli import main
from fer_study.core import CLASSES
from fer_study.settings import VideoSettings
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint, make_test_video

FAST = ['--fps', '2', '--no-progress']
PROB_TOLERANCE = 1e-5  # ONNX Runtime with another thread count may sum in another order: the 6th decimal may move


@pytest.fixture(scope='module')
def talks(tmp_path_factory):
    "A folder of two short videos with a face each and a file that only looks like a video, and a checkpoint."
    d = tmp_path_factory.mktemp('batch')
    folder = d / 'talks'
    folder.mkdir()
    make_demo_video(folder / 'a.mp4', 'single', seed=2, duration=2)
    make_demo_video(folder / 'b.MOV', 'single', seed=5, duration=2)  # a phone's upper-case suffix counts too
    (folder / 'c.mp4').write_text('not a video at all\n')
    return folder, demo_checkpoint(d / 'demo.pt')


def leftovers(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob('*'))


@pytest.fixture(scope='module')
def runs(talks, tmp_path_factory):
    "`fer-study analyze <folder>` with --jobs 2 and with --jobs 1: (exit status, stdout, stderr, out folder) each."
    folder, ckpt = talks
    results = {}
    for jobs in (2, 1):
        out, stdout, stderr = tmp_path_factory.mktemp(f'jobs{jobs}'), io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):  # a module fixture has no capsys
            code = main(['analyze', str(folder), '--model', str(ckpt), '--out', str(out), '--jobs', str(jobs), *FAST])
        results[jobs] = code, stdout.getvalue(), stderr.getvalue(), out
    return results


@pytest.mark.parametrize('jobs', [2, 1])
def test_a_bad_file_fails_alone_and_the_run_exits_2(talks, runs, jobs):
    folder, _ = talks
    code, out, err, out_dir = runs[jobs]
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith(f"error: {folder / 'c.mp4'}: not a video"), err
    assert 'a.mp4:' in out and 'b.MOV:' in out  # both summaries printed
    # nothing for c, no temporary file
    assert leftovers(out_dir) == ['a', 'a/faces.csv', 'a/keyframes.csv', 'a/summary.json',
                                  'b', 'b/faces.csv', 'b/keyframes.csv', 'b/summary.json']


def test_two_jobs_give_the_same_tables_as_one(runs):
    two, one = runs[2][3], runs[1][3]
    for name in ('a', 'b'):
        a, b = (pd.read_csv(d / name / 'faces.csv') for d in (two, one))
        assert len(a) > 0 and list(a.columns) == list(b.columns)
        classes = list(CLASSES)  # the demo checkpoint's
        pd.testing.assert_frame_equal(a.drop(columns=classes), b.drop(columns=classes))  # labels, boxes, times
        assert (a[classes] - b[classes]).abs().max().max() <= PROB_TOLERANCE
        assert (pd.read_csv(two / name / 'keyframes.csv')).equals(pd.read_csv(one / name / 'keyframes.csv'))


@pytest.mark.parametrize('args, message', [
    (['{folder}/empty'], 'empty: no video in this folder'),
    (['{folder}/talks', '{folder}/nope.mp4'], 'nope.mp4: no such file or folder'),
    (['{folder}/talks', '--jobs', '0'], 'jobs (--jobs) must be a whole number, at least 1, got 0'),
    (['{folder}/talks', '--model', '{folder}/none.pt'], 'none.pt: checkpoint not found'),
    (['{folder}/talks', '--jobs', '2', '--model', '{folder}/none.pt'], 'none.pt: checkpoint not found'),
])
def test_errors_about_the_whole_run_stop_it_before_any_work(talks, tmp_path, capsys, args, message):
    folder, ckpt = talks
    (folder.parent / 'empty').mkdir(exist_ok=True)
    argv = ['analyze', *[a.format(folder=folder.parent) for a in args], '--out', str(tmp_path / 'out'), *FAST]
    if '--model' not in args: argv += ['--model', str(ckpt)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'out').exists()


def test_folders_expand_to_their_videos_sorted_not_recursively(talks, tmp_path):
    folder, _ = talks
    (tmp_path / 'sub').mkdir()
    for name in ('z.mkv', 'Y.Mp4', 'notes.txt', '.hidden.mp4', 'sub/deeper.mp4'): (tmp_path / name).touch()
    assert batch.video_files([folder, tmp_path]) == [folder / 'a.mp4', folder / 'b.MOV', folder / 'c.mp4',
                                                      tmp_path / 'Y.Mp4', tmp_path / 'z.mkv']
    assert batch.video_files([tmp_path / 'notes.txt']) == [tmp_path / 'notes.txt']  # a file named is taken as given


@pytest.mark.parametrize('jobs, videos, cpus, plan', [
    (1, 5, 8, (1, 8)), (4, 10, 8, (4, 2)), (3, 10, 8, (3, 2)),
    (8, 3, 16, (3, 5)),  # no more processes than videos
    (8, 10, 2, (2, 1)),  # nor than CPUs: each still needs a core to decode and detect
])
def test_jobs_are_capped_and_the_cpus_shared_out(jobs, videos, cpus, plan):
    assert batch.worker_plan(jobs, videos, cpus) == plan


def test_a_worker_that_dies_costs_only_its_video(talks, tmp_path, monkeypatch):
    folder, ckpt = talks
    calls = []
    def kill_the_first_worker(conns, *a, **k):
        if not calls: os.kill(mp.active_children()[0].pid, signal.SIGKILL)
        calls.append(1)
        return wait(conns, *a, **k)
    monkeypatch.setattr(batch, 'wait', kill_the_first_worker)
    videos = [folder / 'a.mp4', folder / 'b.MOV']
    outcomes = dict(batch.in_workers(videos, ['a', 'b'], 1, 1, ckpt, tmp_path, VideoSettings(fps=2)))
    assert outcomes[0].error == (f"{videos[0]}: the worker process analysing it was killed by signal 9 "
                                 "(out of memory?)")
    assert outcomes[1].error is None and outcomes[1].summary['faces'] > 0  # a fresh worker took the next video
    assert leftovers(tmp_path) == ['b', 'b/faces.csv', 'b/keyframes.csv', 'b/summary.json']
    assert mp.active_children() == []


def test_interrupt_stops_the_workers_and_leaves_nothing_half_written(talks, tmp_path, monkeypatch):
    folder, ckpt = talks
    calls = []
    def interrupt_after_the_first_video(conns, *a, **k):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt  # the second video has been handed out: it is under way
        return wait(conns, *a, **k)
    monkeypatch.setattr(batch, 'wait', interrupt_after_the_first_video)
    done = []
    with pytest.raises(KeyboardInterrupt):
        for i, outcome in batch.in_workers([folder / 'a.mp4', folder / 'b.MOV'], ['a', 'b'], 1, 1, ckpt, tmp_path,
                                           VideoSettings(fps=2)):
            done.append(i)
    assert done == [0] and mp.active_children() == []
    # the first video's results are whole; the second's folder, made for it, is gone again with its temporaries
    assert leftovers(tmp_path) == ['a', 'a/faces.csv', 'a/keyframes.csv', 'a/summary.json']


ANALYZE = [sys.executable, '-c', 'import sys; from fer_study.cli import main; sys.exit(main())', 'analyze']
# no face, and every keyframe searched whole at twice its size: tens of seconds of work, so each worker's FFmpeg is
# still feeding it when the command is stopped
SLOW = ['--fps', '2', '--detect-every', '0', '--upsample', '1', '--precision', 'fp32', '--no-progress']
STOPPED = {signal.SIGINT: 'interrupted: nothing was half-written; earlier results are as they were',
           signal.SIGTERM: 'stopped by SIGTERM: nothing was half-written; earlier results are as they were'}


@pytest.fixture(scope='module')
def slow_talks(tmp_path_factory):
    d = tmp_path_factory.mktemp('slow')
    for name in ('a', 'b'): make_test_video(d / f'{name}.mp4', 'testsrc=size=1280x720:rate=25:duration=10')
    return d


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=['ctrl-c', 'sigterm', 'sigkill'])
def test_a_stopped_analyze_leaves_no_process_behind(talks, slow_talks, tmp_path, process_table, sig):
    _, ckpt = talks
    out = tmp_path / 'out'
    # a session of its own, as a terminal gives a command: Ctrl-C goes to its whole process group
    proc = subprocess.Popen([*ANALYZE, str(slow_talks), '--model', str(ckpt), '--out', str(out), '--jobs', '2', *SLOW],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=process_table.default_signals)
    try:
        decoding = lambda: len(process_table.descendants(proc.pid, 'rawvideo')) == 2  # not a probe: a decoder
        process_table.wait_for(decoding, 'an FFmpeg decoding in each worker', proc)
        started = process_table.descendants(proc.pid)  # the workers, their FFmpeg, multiprocessing's resource tracker
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), err
    if sig != signal.SIGKILL: assert err.splitlines() == [STOPPED[sig]], err
    assert len(started) >= 5 and process_table.still_running(started) == [], started
    # no table was finished; nothing of one is there (a killed worker may leave the empty folder made for its video)
    assert [p for p in out.rglob('*') if not p.is_dir()] == []
    if sig != signal.SIGKILL: assert leftovers(out) == []
