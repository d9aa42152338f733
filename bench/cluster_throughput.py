"""Videos on a Dask cluster beside `--jobs`: throughput, the engine's per-video overhead, video-hours per machine-hour.

Generates N calls (the demo renderer: single faces and 2x2 galleries, 10-24 s) and a 224-px checkpoint (untrained
weights: the cost of a RAF-DB model), then reads them at the default sampling three ways in one run, each from
nothing (workers started, model loaded): `--jobs 1`, `--jobs 2` and `--cluster local:2`. It prints each one's wall
time, the video-seconds read per second, the ratio of the cluster to `--jobs 2`, the cluster's start-up and stop,
and, from a second pass on the same warm workers (their start and stop not timed), the engine's overhead per video
(wall time x workers minus the workers' own reading time, per video: submitting, gathering, writing, and the idle
tail). The tables of every way must agree with `--jobs 1` (labels equal, probabilities within 1e-5).

    python bench/cluster_throughput.py             # 8 calls
    python bench/cluster_throughput.py --videos 4  # quicker
    python bench/cluster_throughput.py --seconds 60  # a set where reading outweighs starting the workers
"""
import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def cpu_flags() -> str:
    "The CPU's model and the vector units the timings depend on."
    info = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    model = next((l.split(':', 1)[1].strip() for l in info.splitlines() if l.startswith('Model name')), '?')
    flags = [f for f in ('avx512_bf16', 'amx_bf16', 'avx512f', 'avx2') if f in info.split()]
    return f"{model}; {' '.join(flags)}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--videos', type=int, default=8)
    p.add_argument('--seconds', type=int, default=10, help="the shortest call's length; the others are 2-14 s longer")
    p.add_argument('--calls', type=Path, help='folder to keep the rendered calls in (reused when there)')
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix='cluster-bench-') as d:  # the model and the readings go with it
        measure(a, Path(d))


def measure(a: argparse.Namespace, d: Path) -> None:
    "Render the calls (unless kept in `a.calls`), read them the three ways into `d`, check and print the figures."
    from distributed import LocalCluster
    from fer_study.batch import analyze_many, usable_cpus
    from fer_study.cluster import ClusterSpec, analyze_on_cluster
    from fer_study.synth import make_demo_video
    from fer_study.testing import demo_checkpoint
    calls = a.calls or d
    calls.mkdir(parents=True, exist_ok=True)
    videos = [calls / f'call{i}-{a.seconds}s.mp4' for i in range(a.videos)]
    videos = [v if v.exists() else make_demo_video(v, 'grid' if i % 2 else 'single', seed=i,
                                                   duration=a.seconds + 2 * i % 15) for i, v in enumerate(videos)]
    model = demo_checkpoint(d / 'model.pt', input_size=224, resize=256)
    print(f"CPU: {cpu_flags()}; {usable_cpus()} usable; {len(videos)} calls, 224-px model")
    runs = {}
    for name in ('jobs 1', 'jobs 2', 'cluster local:2', 'cluster, warm'):
        start = time.perf_counter()
        if name.startswith('jobs'):
            outcomes, startup = analyze_many(videos, model, d / name, jobs=int(name[-1]), progress=False), None
        elif name == 'cluster local:2':  # from nothing: start the workers, load the model, read, stop
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, host='127.0.0.1', dashboard_address=None)
            startup = time.perf_counter() - start
            at = ClusterSpec(address=cluster.scheduler_address)
            outcomes = analyze_on_cluster(videos, model, d / name, cluster=at, progress=False)
            closing = time.perf_counter()
            cluster.close()
            closing = time.perf_counter() - closing
        else:  # the engine's own cost: the same workers, the model loaded, the same videos again (stopping not timed)
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, host='127.0.0.1', dashboard_address=None)
            at = ClusterSpec(address=cluster.scheduler_address)  # the next pass finds the model loaded in both workers
            analyze_on_cluster(videos[:2], model, d / 'warm-up', cluster=at, progress=False)
            start = time.perf_counter()
            outcomes, startup = analyze_on_cluster(videos, model, d / name, cluster=at, progress=False), None
        runs[name] = (time.perf_counter() - start, startup, outcomes)
    cluster.close()
    seconds = sum(o.summary['video']['duration'] for o in runs['jobs 1'][2])
    for name, (wall, startup, outcomes) in runs.items():
        assert all(o.error is None for o in outcomes), [o.error for o in outcomes]
        for v in videos:
            ref, got = (pd.read_csv(d / run / v.stem / 'faces.csv') for run in ('jobs 1', name))
            classes = outcomes[0].summary['model']['classes']
            assert list(ref.label) == list(got.label)
            assert np.abs(ref[classes].to_numpy() - got[classes].to_numpy()).max() <= 1e-5
        line = f"{name:16s} {wall:6.1f} s  {seconds / wall:5.2f} video-s/s (= video-hours per machine-hour)"
        if startup is not None: line += f"  (start-up {startup:.1f} s, stopping {closing:.1f} s)"
        if name == 'cluster, warm':
            reading = sum(o.summary['timing']['total'] for o in outcomes)
            line += f"  overhead {max(0.0, wall * 2 - reading) / len(videos):.2f} s a video (2 x wall - reading)"
        print(line)
    print(f"cluster local:2 from nothing / jobs 2 throughput: {runs['jobs 2'][0] / runs['cluster local:2'][0]:.2f}; "
          f"tables equal to --jobs 1 (labels; probabilities within 1e-5); {seconds:.0f} s of video")


if __name__ == '__main__':
    main()
