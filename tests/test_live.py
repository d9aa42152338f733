"""fer-study live: a file played in real time, the dashboard in Chromium, Ctrl-C, a stream that stops, bad sources.

Loopback only. Nothing waits on a clock: each step waits for an output line, an update on the page, or a process."""
import asyncio
import contextlib
import itertools
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest

from fer_study.core import CLASSES
from fer_study.keyframes import ffmpeg_exe, keyframe_expr, probe_video, select_keyframes
from fer_study.live import LiveSource, main
from fer_study.summary import WindowBlock, check_summary, keyframe_spans, read_summary, summarize_faces
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint, make_test_video

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
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
    out = tmp_path / 'out'
    code = main(live_args(video, ckpt, out, '--realtime', '--jsonl', tmp_path / 'updates.jsonl', '--window', 2,
                          '--record', tmp_path / 'talk.mp4'))
    err = capsys.readouterr().err
    assert code == 0, err
    assert f'outputs in {out}/' in err and 'dropped while busy' in err and f'recorded to {tmp_path / "talk.mp4"}' in err
    summary = read_summary(out / 'summary.json')  # the analyze schema, key for key
    faces, kfs = pd.read_csv(out / 'faces.csv'), pd.read_csv(out / 'keyframes.csv')
    assert summary['participants_seen'] == 4 and len(faces) == summary['faces'] and len(kfs) >= 2
    updates = [json.loads(line) for line in (tmp_path / 'updates.jsonl').read_text().splitlines()]
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
    async with aiohttp.ClientSession() as http:
        async with http.put(f'{devtools}/json/new?{page}') as r: target = await r.json(content_type=None)
        async with http.ws_connect(target['webSocketDebuggerUrl'], max_msg_size=0) as ws:
            ids = itertools.count(1)
            async def evaluate(expression):
                for _ in range(20):  # a page still loading loses its context: ask again once the answer says so
                    await ws.send_json(dict(id=(call := next(ids)), method='Runtime.evaluate',
                                            params=dict(expression=expression, awaitPromise=True, returnByValue=True)))
                    while (answer := await ws.receive_json(timeout=120)).get('id') != call: pass
                    if 'exceptionDetails' not in answer.get('result', {'exceptionDetails': answer.get('error')}):
                        return answer['result']['result']['value']
                pytest.fail(f'the page never answered: {answer}')
            await evaluate("new Promise(done => document.getElementById('status') ? done(1) : "
                           "addEventListener('load', () => done(1)))")
            return await evaluate(snapshot % 1), await evaluate(snapshot % updates_between)


def test_the_dashboard_shows_each_participant_and_ctrl_c_saves(inputs, tmp_path):
    video, ckpt = inputs
    out = tmp_path / 'out'
    # the file played in a loop: a source that only Ctrl-C ends
    live = subprocess.Popen([*LIVE, *live_args(video, ckpt, out, '--realtime', '--input-option', 'stream_loop=-1',
                                                '--jsonl', tmp_path / 'updates.jsonl')],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    browser = None
    try:
        for line in live.stderr:
            if m := re.search(r'\[\*\] dashboard: (http://127\.0\.0\.1:\d+/)', line): break
        else: pytest.fail(f'no dashboard address; the command ended with {live.wait()}')
        assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: `make test` installs Debian's chromium package"
        browser = subprocess.Popen([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
                                    '--no-first-run', '--disable-background-networking', '--disable-component-update',
                                    '--disable-sync', f'--user-data-dir={tmp_path / "profile"}',
                                    '--remote-debugging-port=0', 'about:blank'],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in browser.stderr:
            if devtools := re.search(r'DevTools listening on ws://([\d.:]+)/', line): break
        else: pytest.fail('Chromium did not start its DevTools server')
        threading.Thread(target=browser.stderr.read, daemon=True).start()  # its later messages never fill the pipe
        first, later = asyncio.run(look_twice(f'http://{devtools[1]}', m[1]))
        live.send_signal(signal.SIGINT)
        rest = live.communicate(timeout=120)[1]
    finally:
        for p in (browser, live):
            if p and p.poll() is None: p.kill()
    assert len(first['tiles']) == len(later['tiles']) == 4, (first, later)
    assert first['tiles'] != later['tiles']  # seconds seen, if nothing else, have moved on
    assert 'live' in first['status'] and 'synthetic face set' in first['note']
    assert live.returncode == 0, rest
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
    assert code == 1 and senders[0].returncode == 0, err
    said = rf'error: {source}: lost for \d+ s \(no data for \d+ s\); what was seen until [\d.]+ s is saved in {out}/'
    assert re.search(said, err), err
    summary = read_summary(out / 'summary.json')
    assert summary['faces'] > 0 and summary['video']['path'] == source
    # the FFmpeg on a silent stream had to be killed: its recording still reads to the end of its last fragment
    assert len(list(select_keyframes(tmp_path / 'talk.mp4', fps=2))) >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out', 'talk.mp4']  # the tries that got nothing left nothing


def test_a_source_that_does_not_exist_fails_naming_it(inputs, tmp_path, capsys):
    _, ckpt = inputs
    closed = free_port()
    cases = {str(tmp_path / 'nowhere.mp4'): 'No such file or directory',
             f'tcp://127.0.0.1:{closed}': 'Connection refused'}
    for source, why in cases.items():
        assert main(live_args(source, ckpt, tmp_path / 'out')) == 2
        err = capsys.readouterr().err
        assert f'error: {source}: FFmpeg cannot open it' in err and why in err, err
    # a port nobody sends to: FFmpeg would wait for ever
    silent = f'udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}'
    assert main(live_args(silent, ckpt, tmp_path / 'out', '--reconnect', 1)) == 2
    assert f'error: {silent}: no video came within 1 s (--reconnect)' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()  # nothing written, not even the folder, for a source never seen


def test_a_port_in_use_is_an_error_naming_it(inputs, tmp_path, capsys):
    video, ckpt = inputs
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(live_args(video, ckpt, tmp_path / 'out', '--realtime', '--port', port)) == 2
    err = capsys.readouterr().err
    assert f'error: 127.0.0.1:{port}: cannot serve the dashboard there (Address already in use)' in err, err
