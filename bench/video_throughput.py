"""Throughput of the video analysis on the synthetic demo videos (a benchmark, not a test).

For each demo video: the wall time of the whole analysis against the video's duration (real-time factor) and
against decoding the same video alone with the same FFmpeg (the floor), and the time per stage. The model is at
its CPU demo size (input 64, resize 73) with untrained weights: speed does not depend on the weights.

    .venv/bin/python bench/video_throughput.py                 # default threshold 0.003, then 2 keyframes/s
    .venv/bin/python bench/video_throughput.py --duration 12 --fps 5 --threads 1
"""
import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from fer_study.faces import face_detector, landmark_predictor
from fer_study.keyframes import ffmpeg_exe, select_keyframes
from fer_study.model import load_model
from fer_study.settings import VideoSettings
from fer_study.testing import demo_checkpoint
from fer_study.synth import make_demo_video
from fer_study.video import analyze_video

STAGES = ('decode+select', 'detect', 'align', 'classify')


def decode_alone(video: Path) -> float:
    "Seconds FFmpeg takes to decode every frame of `video` and throw it away: the floor of any analysis."
    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), '-nostdin', '-v', 'error', '-i', str(video), '-f', 'null', '-'], check=True)
    return time.perf_counter() - start


def select_alone(video: Path, **kw) -> tuple[float, int]:
    "Seconds to stream the keyframes of `video` through the pipe with no analysis, and how many there were."
    start = time.perf_counter()
    n = sum(1 for _ in select_keyframes(video, **kw))
    return time.perf_counter() - start, n


def bench(video: Path, model, meta, out: Path, threshold: float, fps: float | None) -> dict:
    "One timed analysis with its floors; print a line per figure."
    settings = VideoSettings(threshold=threshold, fps=fps)
    floor = min(decode_alone(video) for _ in range(2))
    selected, n = select_alone(video, threshold=threshold, fps=fps)
    start = time.perf_counter()
    s = analyze_video(video, model, meta, out, settings, progress=False)
    wall = time.perf_counter() - start
    dur = s['video']['duration']
    stages = s['timing']['stages']
    other = wall - sum(stages.values())
    mode = f'{fps:g} keyframes/s' if fps else f'scene > {threshold:g}'
    print(f"\n{video.name} ({mode}): {dur:.1f} s video, {s['keyframes']['frames_decoded']} frames, "
          f"{s['keyframes']['keyframes']} keyframes, {s['faces']} faces")
    print(f"  whole analysis   {wall:6.2f} s   = {dur / wall:5.1f}x faster than real time")
    print(f"  decode alone     {floor:6.2f} s   (ffmpeg -f null; the floor)   analysis / floor = {wall / floor:.1f}x")
    print(f"  decode + select  {selected:6.2f} s   (keyframes through the pipe, no analysis; {n} keyframes)")
    for k in STAGES: print(f"    {k:<14} {stages.get(k, 0):6.2f} s  {stages.get(k, 0) / wall:5.1%}")
    print(f"    {'other':<14} {other:6.2f} s  {other / wall:5.1%}   (tracking, tables, summary, writing)")
    limit = max(STAGES, key=lambda k: stages.get(k, 0))
    per = {'detect': f"; {1000 * stages['detect'] / max(1, n):.0f} ms per keyframe (dlib HOG, one core)",
           'align': f"; {1000 * stages['align'] / max(1, s['faces']):.0f} ms per face",
           'classify': f"; {1000 * stages['classify'] / max(1, s['faces']):.0f} ms per face (torch, {torch.get_num_threads()} threads)",
           'decode+select': ': FFmpeg decodes every frame to score scene changes; the analysis waits on it'}
    print(f"  limited by: {limit} ({stages[limit] / wall:.0%} of the wall time){per[limit]}")
    return dict(video=video.name, mode=mode, wall=wall, duration=dur, floor=floor, limit=limit)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--duration', type=float, default=24.0, help='seconds of each demo video (default 24)')
    ap.add_argument('--fps', type=float, default=2.0, help='also run a fixed-rate pass at this many keyframes/s (0: skip)')
    ap.add_argument('--threshold', type=float, default=0.003)
    ap.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch decides)')
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, load average before: "
          f"{os.getloadavg()[0]:.1f} (other processes skew every figure), FFmpeg: {ffmpeg_exe()}")
    start = time.perf_counter(); face_detector(); landmark_predictor()
    print(f"one-off: loading dlib's detector and landmark model took {time.perf_counter() - start:.2f} s (once per process, not in the figures)")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        t = time.perf_counter()
        videos = [make_demo_video(d / f'{layout}.mp4', layout, seed=0, duration=args.duration) for layout in ('single', 'grid')]
        print(f"demo videos made in {time.perf_counter() - t:.0f} s (not part of any figure below)")
        model, meta = load_model(demo_checkpoint(d / 'demo.pt'))
        rows = []
        for video in videos:
            for fps in (None, args.fps or None) if args.fps else (None,):
                rows.append(bench(video, model, meta, d / 'out' / f'{video.stem}-{fps}', args.threshold, fps))
        print('\nsummary (real-time factor = video seconds per analysis second; goal: single, default threshold >= 2x)')
        for r in rows:
            print(f"  {r['video']:<11} {r['mode']:<16} {r['duration'] / r['wall']:6.1f}x real time, {r['wall'] / r['floor']:5.1f}x the decode floor, limited by {r['limit']}")
        goal = rows[0]['duration'] / rows[0]['wall']
        print(f"goal {'met' if goal >= 2 else 'NOT met'}: single-participant demo at the default threshold runs {goal:.1f}x faster than real time")
        if any(r['limit'] == 'classify' for r in rows) and torch.get_num_threads() > 1:
            print("hint: torch's OpenMP threads compete with FFmpeg (and any other busy process) for the cores; "
                  "on a small or busy CPU try --threads 1")


if __name__ == '__main__':
    main()
