"""`fer-study analyze --cluster`: the videos read on a Dask cluster, written here; a killed worker costs only a redo."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from fer_study.cli import main
from fer_study.cluster import ClusterSpec, analyze_on_cluster
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint

CLASSES = ['Surprise', 'Fear', 'Disgust', 'Happiness', 'Sadness', 'Anger', 'Neutral']


@pytest.fixture(scope='module')
def calls(tmp_path_factory):
    "Six short generated calls of different lengths, a checkpoint, and a running two-worker cluster on loopback."
    d = tmp_path_factory.mktemp('calls')
    videos = [make_demo_video(d / f'call{i}.mp4', 'grid' if i % 3 == 0 else 'single', seed=i, duration=1 + i % 3)
              for i in range(6)]
    with LocalCluster(n_workers=2, threads_per_worker=1, host='127.0.0.1', dashboard_address=None) as cluster:
        yield d, videos, demo_checkpoint(d / 'model.pt'), cluster


def test_a_cluster_reads_exactly_what_one_process_reads(calls, capsys):
    d, videos, model, cluster = calls
    analyze = ['analyze', *map(str, videos[:3]), '--model', str(model), '--no-progress', '--out']
    assert main([*analyze, str(d / 'one')]) == 0
    assert main([*analyze, str(d / 'cl'), '--cluster', cluster.scheduler_address]) == 0
    for v in videos[:3]:
        one, cl = (pd.read_csv(d / run / v.stem / 'faces.csv') for run in ('one', 'cl'))
        assert len(one) > 0 and list(one.label) == list(cl.label)
        assert np.abs(one[CLASSES].to_numpy() - cl[CLASSES].to_numpy()).max() <= 1e-5
        summary = json.loads((d / 'cl' / v.stem / 'summary.json').read_text())
        assert summary['video']['path'] == str(v) and summary['model']['checkpoint'] == str(model)
        assert summary['outputs']['folder'] == str(d / 'cl' / v.stem)  # the submitter's paths, not a worker's
        one_summary = json.loads((d / 'one' / v.stem / 'summary.json').read_text())
        assert summary['source'] == one_summary['source'] and summary['source']['path'] == str(v)  # whose they are


def test_a_worker_killed_mid_run_costs_only_a_redo(calls):
    d, videos, model, cluster = calls
    (d / 'kill').mkdir()
    (d / 'kill' / 'notes.txt').write_text('mine')
    killed, seen = [], []
    with Client(cluster) as client:
        pids = client.run(os.getpid)
        def kill_a_busy_worker(i, outcome):
            seen.append(i)
            if not killed and (busy := [w for w, keys in client.processing().items() if keys and w in pids]):
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
        outcomes = analyze_on_cluster(videos, model, d / 'kill', cluster=ClusterSpec(address=cluster.scheduler_address),
                                      progress=False, on_outcome=kill_a_busy_worker)
    assert killed, 'no worker was busy when the first video came back'
    assert [o.error for o in outcomes] == [None] * len(videos) and sorted(seen) == list(range(len(videos)))
    assert sorted(p.name for p in (d / 'kill').iterdir()) == sorted([v.stem for v in videos] + ['notes.txt'])
    for v in videos:  # each written once, whole: the three files and nothing half-written beside them
        assert sorted(p.name for p in (d / 'kill' / v.stem).iterdir()) == ['faces.csv', 'keyframes.csv', 'summary.json']


def test_cluster_flags_are_checked_before_any_work(calls, capsys):
    d, videos, model, _ = calls
    for bad, says in ((['--cluster', 'local:0'], '--cluster local:0: a local cluster needs at least 1 worker'),
                      (['--cluster', 'nowhere'], '--cluster nowhere: give local:N'),
                      (['--cluster', 'local:2', '--jobs', '2'], '--jobs and --cluster: give one')):
        assert main(['analyze', str(videos[0]), '--model', str(model), '--out', str(d / 'bad'), *bad]) == 2
        assert says in capsys.readouterr().err
    assert not (d / 'bad').exists()


def test_a_bad_checkpoint_is_refused_and_the_started_videos_dropped(calls, capsys):
    "The checkpoint is checked while the workers start on the videos: a bad one still ends in one line, nothing written."
    d, videos, _, cluster = calls
    (d / 'junk.pt').write_bytes(b'not a checkpoint')
    for model, says in ((d / 'junk.pt', 'junk.pt: not a fer_study checkpoint'),
                        (d / 'none.pt', 'none.pt: checkpoint not found'), (d, 'is a folder')):
        args = ['analyze', *map(str, videos[:2]), '--model', str(model), '--out', str(d / 'refused'), '--no-progress']
        assert main([*args, '--cluster', cluster.scheduler_address]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (d / 'refused').exists()


def test_without_cluster_dask_is_not_imported(calls, tmp_path):
    d, videos, model, _ = calls
    code = ('import sys; from fer_study.cli import main; '
            f'code = main(["analyze", {str(videos[1])!r}, "--model", {str(model)!r}, "--out", {str(tmp_path)!r}, '
            '"--no-progress"]); sys.exit(code or 10 * ("distributed" in sys.modules or "dask" in sys.modules))')
    assert subprocess.run([sys.executable, '-c', code], capture_output=True).returncode == 0
