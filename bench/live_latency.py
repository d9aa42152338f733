"""Latency of `fer-study live` on a stream (a benchmark, not a test).

A second FFmpeg streams the synthetic grid call (four participants) in real time into a loopback UDP socket, in a
loop, for `--seconds`; `live` reads it with an untrained 224-px model at 2 frames a second, writing its updates as
JSON lines. Reported: the latency from a sampled frame's arrival (out of FFmpeg's pipe) to the update that
includes it, p50 / p95 overall and per third of the run (a growing backlog would show as a rising latency); frames
sampled, analysed and dropped; CPU use of `live` (with its FFmpeg) and of the sender; memory (RSS of `live` and its
FFmpeg) over time. Then Ctrl-C, and the tables are checked.

    .venv/bin/python bench/live_latency.py                  # 300 s, the issue's figure
    .venv/bin/python bench/live_latency.py --seconds 60 --size 64
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from fer_study.keyframes import ffmpeg_exe
from fer_study.summary import read_summary
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint

LIVE = [sys.executable, '-c', 'import sys; from fer_study.live import main; sys.exit(main())']


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tree(proc: psutil.Process) -> list[psutil.Process]:
    "A process and its children (live's FFmpeg)."
    try: return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess: return []


def cpu_seconds(procs) -> float:
    total = 0.0
    for p in procs:
        try: t = p.cpu_times(); total += t.user + t.system
        except psutil.NoSuchProcess: pass
    return total


def rss_mb(procs) -> float:
    total = 0
    for p in procs:
        try: total += p.memory_info().rss
        except psutil.NoSuchProcess: pass
    return total / 2**20


def watch(live: psutil.Process, sender: psutil.Process, samples: list, done: threading.Event, every: float = 5.0):
    "Every `every` s: time, CPU seconds of live (+ its FFmpeg) and of the sender, RSS of live and of its FFmpeg."
    start = time.monotonic()
    while not done.wait(every):
        procs = tree(live)
        samples.append(dict(t=time.monotonic() - start, live_cpu=cpu_seconds(procs), sender_cpu=cpu_seconds([sender]),
                            python_mb=rss_mb(procs[:1]), ffmpeg_mb=rss_mb(procs[1:])))


def pct(xs, q) -> float: return float(np.percentile(xs, q)) if len(xs) else float('nan')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=300.0, help='how long the stream runs (default 300)')
    ap.add_argument('--size', type=int, default=224, help='model input size (224: the study; 64: the CPU demo)')
    ap.add_argument('--fps', type=float, default=2.0, help='frames analysed a second')
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix='live-bench-'))
    video = make_demo_video(d / 'grid.mp4', 'grid', seed=1, duration=10)
    ckpt = demo_checkpoint(d / 'model.pt', args.size, round(args.size * 256 / 224))
    port = free_udp_port()
    print(f"CPU cores: {os.cpu_count()}, load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"model {args.size} px (untrained), {args.fps:g} frames/s, {args.seconds:g} s of the 4-person grid over UDP")
    live = subprocess.Popen([*LIVE, f'udp://127.0.0.1:{port}', '--model', str(ckpt), '--out', str(d / 'out'),
                             '--port', '0', '--fps', str(args.fps), '--jsonl', '-', '--conf-threshold', '0.2',
                             '--input-option', 'analyzeduration=500000'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = []
    for line in live.stderr:
        log.append(line)
        if line.startswith('[*] dashboard:'): break
    else: sys.exit(f"live did not start:\n{''.join(log)}")
    threading.Thread(target=lambda: log.extend(live.stderr), daemon=True).start()
    sender = subprocess.Popen([ffmpeg_exe(), '-nostdin', '-v', 'error', '-re', '-stream_loop', '-1', '-i', str(video),
                               '-t', str(args.seconds), '-c:v', 'libx264', '-preset', 'ultrafast',
                               '-tune', 'zerolatency', '-g', '25', '-f', 'mpegts',
                               f'udp://127.0.0.1:{port}?pkt_size=1316'])
    samples, done = [], threading.Event()
    threading.Thread(target=watch, args=(psutil.Process(live.pid), psutil.Process(sender.pid), samples, done),
                     daemon=True).start()
    updates, t0 = [], time.monotonic()
    read = lambda: updates.extend((time.monotonic() - t0, json.loads(line)) for line in live.stdout)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sender.wait()
    done.set()
    live.send_signal(signal.SIGINT)
    code = live.wait(timeout=120)
    reader.join(timeout=10)
    if code != 130: sys.exit(f"live ended with {code}, not 130 (stopped by Ctrl-C):\n{''.join(log)}")

    analysed, last = [], None
    for t, u in updates:  # the first update after each analysed frame
        if u['live']['frame'] != last and u['live']['latency'] is not None:
            analysed.append((t, u['live']['latency']))
        last = u['live']['frame']
    lat = np.array([l for _, l in analysed])
    final = updates[-1][1]['live']
    gaps = np.diff([t for t, u in updates if u['live']['state'] in ('live', 'reconnecting')])
    print(f"\nupdates: {len(updates)} (largest gap between two while live: {gaps.max():.2f} s); "
          f"frames sampled {final['sampled']}, analysed {final['keyframes']}, dropped {final['dropped']} "
          f"({final['dropped'] / max(1, final['sampled']):.0%})")
    print(f"latency, arrival -> update: p50 {pct(lat, 50):.2f} s, p95 {pct(lat, 95):.2f} s, max {lat.max():.2f} s "
          f"over {len(lat)} analysed frames")
    thirds = np.array_split(lat, 3)
    print('  per third of the run: ' + ', '.join(f"p50 {pct(x, 50):.2f} / p95 {pct(x, 95):.2f} s" for x in thirds))
    if len(samples) >= 2:
        a, b = samples[0], samples[-1]
        span = b['t'] - a['t']
        print(f"CPU: live + its FFmpeg {(b['live_cpu'] - a['live_cpu']) / span:.2f} cores, "
              f"sender FFmpeg {(b['sender_cpu'] - a['sender_cpu']) / span:.2f} cores (of {os.cpu_count()})")
        every = samples[::max(1, len(samples) // 12)]  # a dozen of them
        print('memory (MB), live python / its FFmpeg: ' + ', '.join(
            f"{s['t']:.0f} s: {s['python_mb']:.0f} / {s['ffmpeg_mb']:.0f}" for s in every))
        running = [s for s in samples if s['ffmpeg_mb'] > 0] or samples  # from the stream's start
        mem = [s['python_mb'] + s['ffmpeg_mb'] for s in running]
        print(f"memory of live + its FFmpeg: {mem[0]:.0f} MB at {running[0]['t']:.0f} s, {mem[-1]:.0f} MB at "
              f"{running[-1]['t']:.0f} s, at most {max(mem):.0f} MB")
    summary = read_summary(d / 'out' / 'summary.json')
    print(f"tables: {summary['faces']} faces of {summary['participants_seen']} participants in "
          f"{summary['keyframes']['keyframes']} keyframes; stages (s): {summary['timing']['stages']}")
    print(f"summary.json's live block: {json.dumps(summary['live'])}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == '__main__':
    main()
