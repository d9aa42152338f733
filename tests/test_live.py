"""fer-study live: a file played in real time, the slides of a shared screen, the dashboard in Chromium, Ctrl-C, a
stream that stops, bad sources, the files it must not replace, the processes it must not leave behind, the names its
dashboard answers to.

Loopback only. Nothing waits on a clock: each step waits for an output line, an update on the page, or a process."""
import asyncio
import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import aiohttp
import numpy as np
import pandas as pd
import pytest

from fer_study.core import CLASSES
from fer_study.keyframes import ffmpeg_exe, keyframe_expr, probe_video, select_keyframes
from fer_study.live import main
from fer_study.live_source import LiveSource
from fer_study.screen import slide_truth_path
from fer_study.slides import match_changes
from fer_study.summary import WindowBlock, check_summary, keyframe_spans, read_summary, summarize_faces
from fer_study.synth import make_demo_video, make_screenshare_video, truth_paths
from fer_study.testing import demo_checkpoint, make_test_video
from conftest import Tab, chromium

LIVE = [sys.executable, '-c', 'import sys; from fer_study.live import main; sys.exit(main())']


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp('live')
    return make_demo_video(d / 'call.mp4', 'grid', seed=1, duration=6, fps=10), demo_checkpoint(d / 'demo.pt')


def live_args(source, ckpt, out, *more):
    # conf-threshold 0.2: an untrained model is unsure of most faces, and the shares should have something to count
    return [str(source), '--model', str(ckpt), '--out', str(out), '--port', '0', '--conf-threshold', '0.2',
            *map(str, more)]


def assert_same_shares(got: dict, want: dict) -> None:
    "Share blocks equal up to the rounding of their numbers."
    for k, v in want.items():
        if isinstance(v, (dict, float)): assert got[k] == pytest.approx(v, abs=1e-4), (k, got, want)
        else: assert got[k] == v, (k, got, want)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_a_file_in_real_time_gives_updates_that_agree_with_the_tables(inputs, tmp_path, capsys):
    video, ckpt = inputs
    out, earlier = tmp_path / 'out', '{"end": 1.0, "an": "earlier session"}\n'
    (tmp_path / 'updates.jsonl').write_text(earlier)  # --jsonl-append: the updates go after it
    code = main(live_args(video, ckpt, out, '--realtime', '--jsonl', tmp_path / 'updates.jsonl', '--jsonl-append',
                          '--window', 2, '--record', tmp_path / 'talk.mp4', '--truth', truth_paths(video)[0]))
    err = capsys.readouterr().err
    assert code == 0, err
    assert f'outputs in {out}/' in err and 'dropped while busy' in err and f'recorded to {tmp_path / "talk.mp4"}' in err
    summary = read_summary(out / 'summary.json')  # the analyze schema, key for key
    faces, kfs = pd.read_csv(out / 'faces.csv'), pd.read_csv(out / 'keyframes.csv')
    assert summary['participants_seen'] == 4 and len(faces) == summary['faces'] and len(kfs) >= 2
    # scored against the call's truth, frame for frame: every face of the truth at the keyframes is found
    found = summary['truth']['faces']
    assert found['truth'] == 4 * len(kfs) and found['found'] == found['truth'] and found['spurious'] == 0, found
    kept, *lines = (tmp_path / 'updates.jsonl').read_text().splitlines(keepends=True)
    assert kept == earlier
    updates = [json.loads(line) for line in lines]
    # summary.json's live block: the run's frames, how it ended, and the latency of the update after each frame
    run, final = summary['live'], updates[-1]['live']
    assert (run['source'], run['state'], run['analysed']) == (str(video), 'ended', len(kfs))
    assert (run['sampled'], run['dropped']) == (final['sampled'], final['dropped'])
    assert run['analysed'] + run['dropped'] <= run['sampled']
    latency = {u['live']['frame']: u['live']['latency'] for u in updates if u['live']['latency'] is not None}
    assert len(latency) == len(kfs)
    assert [run['latency_p50'], run['latency_p95']] == pytest.approx(np.percentile([*latency.values()], [50, 95]),
                                                                     abs=1e-3)
    assert {u['live']['keyframes'] for u in updates} >= set(range(1, len(kfs) + 1))  # an update after each keyframe
    assert updates[-1]['live']['state'] == 'ended' and updates[-1]['live']['outputs'] == str(out)
    for u in updates:
        live = u.pop('live')
        check_summary(u, WindowBlock, 'update')  # a summary.json window
        # the rows the update had: keyframes analysed by then, each until the next, the last until the update's end
        seen = kfs[kfs.frame <= live['frame']]
        spans = dict(zip(seen.frame, keyframe_spans(seen.time, u['end'])))
        rows = faces[faces.frame.isin(spans)].assign(span=lambda t: t.frame.map(spans))
        # moved so that the update's window starts at 2 s, they give summarize_faces's second window of 2 s
        shift = 2 - u['start']
        moved = rows.assign(time=(rows.time + shift).round(4))
        window = summarize_faces(moved, CLASSES, 2, max(4, u['end'] + shift))['windows'][1]
        assert_same_shares(u, {k: v for k, v in window.items() if k not in ('start', 'end')})
        assert live['uncertain_faces'] == rows[rows.time >= u['start']].uncertain.sum()
        lasting = rows[(rows.time + rows.span).round(4) > u['start']]  # faces whose keyframe lasts into the window
        assert [p['id'] for p in live['participants']] == sorted(set(lasting.participant))
    assert abs(probe_video(tmp_path / 'talk.mp4').duration - 6) < 0.5  # the recording holds the whole stream


def test_the_slides_of_a_shared_screen_cut_the_live_talk(inputs, tmp_path, capsys):
    _, ckpt = inputs
    out, jsonl = tmp_path / 'out', tmp_path / 'updates.jsonl'
    talk = make_screenshare_video(tmp_path / 'talk.mp4', seed=0, duration=9)  # its screen: the left 70 %
    code = main(live_args(talk, ckpt, out, '--realtime', '--slides', '0,0,0.7,1', '--jsonl', jsonl))
    err = capsys.readouterr().err
    assert code == 0 and 'slides in 0,0,448,360;' in err, err
    updates = [json.loads(line) for line in jsonl.read_text().splitlines()]
    # the current slide in each update: slide 1 from the start, then each next one, never back
    numbers = [int(u['live']['segment'].split()[1]) for u in updates]
    assert numbers[0] == 1 and numbers[-1] >= 3 and all(0 <= b - a <= 1 for a, b in zip(numbers, numbers[1:])), numbers
    # saved: the slides analyze finds, where the truth has them
    block = read_summary(out / 'summary.json')['segments']
    truth = [float(r['time']) for r in csv.DictReader(open(slide_truth_path(talk)))][1:]
    m = match_changes([s['start'] for s in block['items'][1:]], truth)
    assert m['found'] == 1 and m['spurious'] == 0 and m['max_offset'] <= 0.5, (m, block['items'])
    assert block['region'] == [0, 0, 448, 360] and {s['source'] for s in block['items']} == {'slides'}
    # the last update's table: a row per saved slide, by the same definitions, the current one open
    rows, items = updates[-1]['live']['segments'], block['items']
    assert [(r['label'], r['start'], r['faces'], r['dominant']) for r in rows] == \
        [(s['label'], s['start'], s['faces'], s['dominant']) for s in items]
    assert [r['positive_share'] for r in rows] == pytest.approx([s['positive_share'] for s in items], abs=1e-4)
    assert [r['end'] for r in rows] == [s['end'] for s in items[:-1]] + [None]
    for table in ('faces.csv', 'keyframes.csv'):
        assert set(pd.read_csv(out / table)['segment']) == {s['label'] for s in items}, table


def test_a_slide_region_outside_the_frame_is_refused_naming_slides(inputs, tmp_path, capsys):
    video, ckpt = inputs
    assert main(live_args(video, ckpt, tmp_path / 'out', '--realtime', '--slides', '0,0,900,100')) == 2
    err = capsys.readouterr().err
    said = 'error: --slides 0,0,900,100: the region 0,0 to 900,100 leaves the 640x360 frame'
    assert err.splitlines()[-1] == said, err
    assert not (tmp_path / 'out').exists()


def test_each_frame_has_its_own_number_and_time(tmp_path):
    # frame n is grey level 4n, and its timestamps jump by 0.6 s after frame 24: the stamps that come through
    # FFmpeg's log are those of the frame they come with, as the keyframe pass of analyze reads them
    ramp = make_test_video(tmp_path / 'ramp.mp4', "color=c=black:s=32x32:r=25:d=2,geq=lum='16+4*N':cb=128:cr=128",
                           vfr_gap=0.6)
    source, frames = LiveSource(str(ramp), keyframe_expr(fps=10), realtime=True, reconnect=5).start(), []
    with contextlib.suppress(EOFError):
        while True: frames.append(source.slot.get(5))
    known = {k.index: round(k.time, 4) for k in select_keyframes(ramp, fps=10)}
    assert source.sampled == len(known) == len(frames) + source.slot.dropped and len(frames) >= 2
    assert [(f.index, f.time) for f in frames] == [(n, t) for n, t in known.items() if n in {f.index for f in frames}]
    assert [round(f.image.mean() / 4.66) for f in frames] == [f.index for f in frames]
    assert frames[-1].time == known[max(known)] > 2.5 and source.state == 'ended'


async def look_twice(devtools: str, page: str, updates_between: int = 4) -> tuple[dict, dict]:
    "Open `page` in the browser behind `devtools`: the page at the first update with faces, `updates_between` later."
    snapshot = ("new Promise(done => { let n = %d; addEventListener('fer:update', function seen() { "
                "if (!document.querySelector('.tile') || --n > 0) return; "
                "removeEventListener('fer:update', seen); "
                "done({tiles: [...document.querySelectorAll('.tile')].map(t => t.innerText), "
                "status: document.getElementById('status').innerText, "
                "note: document.getElementById('note').innerText}); }); })")
    async with Tab(devtools, page) as tab:
        await tab.evaluate("new Promise(done => document.getElementById('status') ? done(1) : "
                           "addEventListener('load', () => done(1)))")
        return await tab.evaluate(snapshot % 1), await tab.evaluate(snapshot % updates_between)


def test_the_dashboard_shows_each_participant_and_ctrl_c_saves(inputs, tmp_path):
    video, ckpt = inputs
    out = tmp_path / 'out'
    # the file played in a loop: a source that only Ctrl-C ends
    live = subprocess.Popen([*LIVE, *live_args(video, ckpt, out, '--realtime', '--input-option', 'stream_loop=-1',
                                                '--jsonl', tmp_path / 'updates.jsonl')],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in live.stderr:
            if m := re.search(r'\[\*\] dashboard: (http://127\.0\.0\.1:\d+/)', line): break
        else: pytest.fail(f'no dashboard address; the command ended with {live.wait()}')
        with chromium(tmp_path / 'profile') as devtools:
            first, later = asyncio.run(look_twice(devtools, m[1]))
            # the same page by the name `localhost`: the dashboard answers to it (and to no name of another site)
            by_name, _ = asyncio.run(look_twice(devtools, m[1].replace('127.0.0.1', 'localhost'), 1))
        live.send_signal(signal.SIGINT)
        rest = live.communicate(timeout=120)[1]
    finally:
        if live.poll() is None: live.kill()
    assert len(first['tiles']) == len(later['tiles']) == 4, (first, later)
    assert first['tiles'] != later['tiles']  # seconds seen, if nothing else, have moved on
    assert 'live' in first['status'] and 'synthetic face set' in first['note'] and len(by_name['tiles']) == 4
    assert live.returncode == 130, rest  # stopped by Ctrl-C, after saving
    assert f'outputs in {out}/' in rest
    assert read_summary(out / 'summary.json')['participants_seen'] == 4
    assert json.loads((tmp_path / 'updates.jsonl').read_text().splitlines()[-1])['live']['state'] == 'stopped'


def test_a_stream_that_stops_is_saved_and_exits_non_zero(inputs, tmp_path, capsys, monkeypatch):
    video, ckpt = inputs
    port, out = free_port(socket.SOCK_DGRAM), tmp_path / 'out'
    source = f'udp://127.0.0.1:{port}'
    # a second FFmpeg streams the call over loopback UDP in real time, then ends: the stream stops mid-way.
    # It starts when live has started its FFmpeg on the port (UDP has no handshake to wait on).
    listening, senders = threading.Event(), []
    connect = LiveSource._connect
    def connect_and_tell(self):
        listening.set()
        return connect(self)
    monkeypatch.setattr(LiveSource, '_connect', connect_and_tell)
    def send():
        if listening.wait(60):
            senders.append(subprocess.run([ffmpeg_exe(), '-nostdin', '-v', 'error', '-re', '-i', str(video),
                                           '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-f', 'mpegts',
                                           f'{source}?pkt_size=1316']))
    sender = threading.Thread(target=send)
    sender.start()
    try:
        code = main(live_args(source, ckpt, out, '--reconnect', 5, '--input-option', 'analyzeduration=500000',
                              '--record', tmp_path / 'talk.mp4'))
    finally:
        listening.set()
        sender.join()
    err = capsys.readouterr().err
    assert code == 2 and senders[0].returncode == 0, err
    said = (rf'error: {source}: lost for \d+ s \(no data for \d+ s; \d+ attempts? to reconnect\); '
            rf'what was seen until [\d.]+ s is saved in {out}/')
    assert re.search(said, err), err
    summary = read_summary(out / 'summary.json')
    assert summary['faces'] > 0 and summary['video']['path'] == source
    # the FFmpeg on a silent stream had to be killed: its recording still reads to the end of its last fragment
    assert len(list(select_keyframes(tmp_path / 'talk.mp4', fps=2))) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out', 'talk.mp4']  # the tries that got nothing left nothing


def test_a_source_that_cannot_be_opened_is_tried_for_reconnect_seconds(inputs, tmp_path, capsys):
    _, ckpt = inputs
    (tmp_path / 'notes.mp4').write_text('not a video at all\n')  # a file: it will not change, so it fails at once
    assert main(live_args(tmp_path / 'notes.mp4', ckpt, tmp_path / 'out', '--jsonl', tmp_path / 'new.jsonl')) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'notes.mp4'}: FFmpeg cannot open it (" in err and 'attempt' not in err, err
    # any other source is opened again until --reconnect has passed, whatever the failure, each attempt said:
    # a connection refused, a path that is not there (yet), a port nobody sends to (where FFmpeg would wait for ever)
    cases = {f'tcp://127.0.0.1:{free_port()}': (3, 'Connection refused', 2),  # fails at once: tried again and again
             str(tmp_path / 'nowhere.mp4'): (1, 'No such file or directory', 1),
             f'udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}': (1, r'no data for \d+ s', 1)}
    for source, (seconds, why, least) in cases.items():
        assert main(live_args(source, ckpt, tmp_path / 'out', '--reconnect', seconds)) == 2
        err = capsys.readouterr().err
        final = re.search(rf'error: {re.escape(source)}: no video came within \d+ s \((\d+) attempts?, the last: '
                          rf'.*{why}.*; --reconnect {seconds}\)', err)
        assert final and int(final[1]) >= least, err
        retries = re.findall(rf'\[!\] {re.escape(source)}: .*{why}.*; trying again, attempt (\d+) ', err)
        assert [int(n) for n in retries] == list(range(2, int(final[1]) + 1)), err  # each attempt after the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ['notes.mp4']  # no folder, and no --jsonl file it made


def test_a_port_in_use_is_an_error_naming_it(inputs, tmp_path, capsys):
    video, ckpt = inputs
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(live_args(video, ckpt, tmp_path / 'out', '--realtime', '--port', port)) == 2
    err = capsys.readouterr().err
    assert f'error: 127.0.0.1:{port}: cannot serve the dashboard there (Address already in use)' in err, err


@pytest.mark.parametrize('flags, message', [
    (['--port', 70000], '--port must be a whole number from 0 to 65535 (0: any free port), got 70000'),
    (['--port', -5], '--port must be a whole number from 0 to 65535 (0: any free port), got -5'),
    (['--reconnect', 0], '--reconnect must be a positive number of seconds, got 0.0'),
    (['--jsonl-append'], '--jsonl-append adds to the file --jsonl names: give --jsonl FILE'),
    (['--truth', 'call.truth.csv'], '--truth call.truth.csv: only a file read with --realtime has frames a truth file '
                                    'can name'),
    (['--slides', 'auto'], '--slides auto: a live source cannot be sampled ahead; give the region x,y,w,h (pixels, or '
                           'fractions of the frame such as 0,0,0.7,1)'),
    (['--slides', '0,0,300.5,2'], '--slides 0,0,300.5,2: pixels are whole numbers; fractions of the frame are all four '
                                  'in [0, 1]'),
    (['--segments', 'agenda.txt'], 'agenda.txt: expected a .csv or .json segments file'),
])
def test_settings_are_checked_before_anything_starts(inputs, tmp_path, capsys, flags, message):
    video, ckpt = inputs
    assert main(live_args(video, ckpt, tmp_path / 'out', *flags)) == 2
    assert capsys.readouterr().err == f'error: {message}\n'
    assert not (tmp_path / 'out').exists()


def test_jsonl_never_replaces_a_file(inputs, tmp_path, capsys):
    video, ckpt = inputs
    (out := tmp_path / 'out').mkdir()
    files = {'old.jsonl': b'{"end": 1.0}\n', 'talk.mp4': video.read_bytes(), 'out/summary.json': b'{"faces": 3}',
             'model.pt': b'not really weights'}
    for name, data in files.items(): (tmp_path / name).write_bytes(data)
    (tmp_path / 'alias.mp4').symlink_to(tmp_path / 'talk.mp4')
    src, model = tmp_path / 'talk.mp4', tmp_path / 'model.pt'
    refused = {  # the file --jsonl names: what it is, with --jsonl-append too where that matters
        ('old.jsonl',): 'old.jsonl: exists already; --jsonl never replaces a file (--jsonl-append adds to its end)',
        ('talk.mp4', '--jsonl-append'): 'talk.mp4: --jsonl names the source as well',
        ('alias.mp4', '--jsonl-append'): 'alias.mp4: --jsonl names the source as well',
        ('model.pt', '--jsonl-append'): 'model.pt: --jsonl names --model as well',
        ('out/summary.json', '--jsonl-append'): 'summary.json: --jsonl names --out summary.json as well',
        ('rec.mp4', '--record', tmp_path / 'rec.mp4'): 'rec.mp4: --record names --jsonl as well',
    }
    for (name, *more), message in refused.items():
        assert main([str(src), '--model', str(model), '--out', str(out), '--port', '0', '--realtime',
                     '--jsonl', str(tmp_path / name), *map(str, more)]) == 2
        err = capsys.readouterr().err
        assert err.startswith('error: ') and message in err and len(err.splitlines()) == 1, err
    # a session that fails after its start leaves a file it was to add to as it was
    assert main(live_args(tmp_path / 'nowhere.mp4', ckpt, out, '--reconnect', 0.5, '--jsonl', tmp_path / 'old.jsonl',
                          '--jsonl-append')) == 2
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ['alias.mp4', 'model.pt', 'old.jsonl', 'out', 'talk.mp4']


STOPPED_BEFORE_ANY_VIDEO = {signal.SIGINT: 'interrupted: nothing was half-written; earlier results are as they were',
                            signal.SIGTERM: 'stopped by SIGTERM: nothing was half-written; earlier results are as they were'}


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=['ctrl-c', 'sigterm', 'sigkill'])
def test_a_stopped_live_leaves_no_ffmpeg_on_its_port(inputs, tmp_path, process_table, sig):
    _, ckpt = inputs
    port = free_port(socket.SOCK_DGRAM)
    # waiting for a source that says nothing: FFmpeg holds the port; a session of its own, as a terminal gives it
    live = subprocess.Popen([*LIVE, *live_args(f'udp://127.0.0.1:{port}', ckpt, tmp_path / 'out', '--reconnect', 600)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=process_table.default_signals)
    def port_taken() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try: s.bind(('127.0.0.1', port))
            except OSError: return True
            return False
    try:
        process_table.wait_for(lambda: process_table.descendants(live.pid, 'udp://127.0.0.1:%d' % port) and port_taken(),
                               "its FFmpeg on the port", live)
        started = process_table.descendants(live.pid)
        os.killpg(live.pid, sig) if sig == signal.SIGINT else live.send_signal(sig)  # Ctrl-C: the terminal's group
        err = live.communicate(timeout=120)[1]
    finally:
        if live.poll() is None: live.kill()
    assert live.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), err
    if sig != signal.SIGKILL: assert err.splitlines()[-1] == STOPPED_BEFORE_ANY_VIDEO[sig], err
    assert started and process_table.still_running(started) == [], started
    assert not port_taken()  # the next `live` can have it
    # nothing was seen, so nothing is saved: no folder (a `live` killed outright cannot remove the empty one it made)
    assert [p.name for p in tmp_path.rglob('*')] == (['out'] if sig == signal.SIGKILL else [])


def test_the_dashboard_answers_only_to_its_own_names():
    from fer_study.dashboard import Dashboard

    async def statuses(url: str, requests: list[tuple[str, dict]]) -> list[int]:
        async with aiohttp.ClientSession() as http:
            out = []
            for path, headers in requests:
                async with http.get(url + path, headers=headers) as r: out.append(r.status)
            return out
    with Dashboard(port=0) as board:
        board.publish({'end': 1.0, 'positive_share': 0.5})
        host, port = f'127.0.0.1:{board.port}', board.port
        asked = [('', {'Host': host}), ('', {'Host': f'localhost:{port}'}), ('', {'Host': f'[::1]:{port}'}),
                 ('', {'Host': f'rebound.example:{port}'}), ('', {'Host': f'127.0.0.1:{port + 1}'}),
                 ('events', {'Host': f'rebound.example:{port}'}),
                 ('events', {'Host': host, 'Origin': 'http://rebound.example'}),
                 ('events', {'Host': host, 'Origin': f'http://localhost:{port}'})]
        got = asyncio.run(statuses(board.url, asked))
    assert got == [200, 200, 200, 403, 403, 403, 403, 200]
