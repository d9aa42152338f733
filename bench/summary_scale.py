"""Time and memory of the video summary on long, crowded per-face tables (a benchmark, not a test).

A generated table stands for a recording of `--hours` with `--people` faces in every keyframe at `--rate` keyframes a
second (every frame of a 25 fps video by default: 1.44 million rows for one hour of 16 people). Each case runs in a
fresh process, which reports the summary's wall time and the process's peak resident memory beside the memory the
table alone takes. The baseline is the summary as it was before (a rows x windows overlap matrix and one boolean
mask per window), run beside it on a table small enough for it to finish.

    .venv/bin/python bench/summary_scale.py
    .venv/bin/python bench/summary_scale.py --hours 1 --people 16 --rate 25 --windows 10 1
"""
import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from fer_study.core import CLASSES
from fer_study.summary import share_block, summarize_faces, _share_dict


def make_table(hours: float, people: int, rate: float, seed: int = 0) -> pd.DataFrame:
    "A per-face table: `people` faces in every keyframe, `rate` keyframes a second, labels drawn at random."
    rng = np.random.default_rng(seed)
    times = np.arange(0, hours * 3600, 1 / rate)
    span = np.full(len(times), 1 / rate)
    n = len(times) * people
    return pd.DataFrame({'time': np.repeat(times, people), 'span': np.repeat(span, people),
                         'participant': np.tile(np.arange(people), len(times)),
                         'label': np.asarray(CLASSES, object)[rng.integers(0, len(CLASSES), n)],
                         'uncertain': rng.random(n) < 0.1})


def baseline_summarize(table: pd.DataFrame, classes, window: float) -> list:
    "The windows of the summary as computed before: a dense rows x windows matrix of overlaps."
    t, span = table['time'].to_numpy(float), table['span'].to_numpy(float)
    labels, sure = table['label'].to_numpy(object), ~table['uncertain'].to_numpy(bool)
    end = float((t + span).max())
    edges = np.arange(0, max(1, math.ceil(end / window - 1e-9)) + 1) * window
    lo = np.maximum(t[sure][:, None], edges[None, :-1])
    overlap = np.clip(np.minimum((t[sure] + span[sure])[:, None], edges[None, 1:]) - lo, 0, None)
    windows = []
    for j in range(len(edges) - 1):
        in_window = (t[sure] >= edges[j]) & (t[sure] < edges[j + 1])
        block = share_block(labels[sure], overlap[:, j], classes)
        counts = np.array([(labels[sure][in_window] == c).sum() for c in classes])
        block.update(faces=int(in_window.sum()), share_per_keyframe=_share_dict(counts, classes))
        windows.append(block)
    return windows


def rss_mib() -> float:
    "Peak resident memory of this process so far, MiB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    table = make_table(args.hours, args.people, args.rate)
    table_mib = rss_mib()
    start = time.perf_counter()
    if args.case == 'baseline': windows = baseline_summarize(table, CLASSES, args.window)
    else: windows = summarize_faces(table, CLASSES, args.window)['windows']
    seconds = time.perf_counter() - start
    print(json.dumps(dict(rows=len(table), windows=len(windows), seconds=seconds, table_mib=table_mib, peak_mib=rss_mib(),
                          first=windows[0]['share_time_weighted'])))


def run_case(case: str, hours: float, people: int, rate: float, window: float) -> dict:
    cmd = [sys.executable, __file__, '--child', case, '--hours', str(hours), '--people', str(people), '--rate', str(rate),
           '--window', str(window)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--hours', type=float, default=1.0)
    ap.add_argument('--people', type=int, default=16)
    ap.add_argument('--rate', type=float, default=25.0, help='keyframes a second')
    ap.add_argument('--windows', type=float, nargs='+', default=[10.0, 1.0], help='window lengths in seconds')
    ap.add_argument('--baseline-hours', type=float, default=0.1, help='length of the table the baseline runs on')
    ap.add_argument('--child', choices=['baseline', 'sweep']); ap.add_argument('--window', type=float)
    args = ap.parse_args()
    if args.child: return child(argparse.Namespace(case=args.child, **{k: v for k, v in vars(args).items() if k != 'child'}))
    print(f"{'case':<9} {'hours':>5} {'rows':>10} {'windows':>8} {'seconds':>8} {'table MiB':>9} {'peak MiB':>9}")
    for window in args.windows:
        small = {c: run_case(c, args.baseline_hours, args.people, args.rate, window) for c in ('baseline', 'sweep')}
        big = run_case('sweep', args.hours, args.people, args.rate, window)
        for name, r, h in (('baseline', small['baseline'], args.baseline_hours), ('sweep', small['sweep'], args.baseline_hours),
                           ('sweep', big, args.hours)):
            print(f"{name:<9} {h:>5g} {r['rows']:>10,} {r['windows']:>8,} {r['seconds']:>8.2f} {r['table_mib']:>9.0f} {r['peak_mib']:>9.0f}")
        gap = max(abs(small['baseline']['first'][c] - small['sweep']['first'][c]) for c in CLASSES)
        extra = lambda r: r['peak_mib'] - r['table_mib']
        print(f"  window {window:g} s: sweep vs baseline on the same table: {small['baseline']['seconds'] / small['sweep']['seconds']:.1f}x "
              f"faster, {extra(small['baseline']):.0f} vs {extra(small['sweep']):.0f} MiB beyond the table; "
              f"largest share difference in the first window {gap:.1e}")


if __name__ == '__main__':
    main()
