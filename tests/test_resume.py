"""Resume through DVC: a `dvc repro` killed mid-training continues where it stopped and ends bit-identical."""
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ['PATH']}"}
EPOCHS = 3
TINY = {
    'study': {'inits': ['scratch'], 'losses': ['dacl'], 'seeds': [0]},
    'pretrain': {'identities': 2, 'images_per_identity': 5, 'epochs': 1, 'batch_size': 4},
    'synth': {'n_train': 42, 'n_test': 14, 'videos': []},
    'model': {'input_size': 32, 'resize': 37},
    'train': {'epochs': EPOCHS, 'batch_size': 8},
    'optim': {'lr': 0.001},
}
STAGE, MODEL = 'train@scratch-dacl', Path('models/scratch-dacl/seed0')


def run(cmd, cwd, check=True):
    r = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope='module')
def clone(tmp_path_factory):
    "A copy of the repository's files with tiny params and the embedded data set, as in tests/test_pipeline.py."
    repo = tmp_path_factory.mktemp('resume') / 'fer_study'
    for f in run(['git', 'ls-files', '-co', '--exclude-standard'], ROOT).stdout.split():
        if (ROOT / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, repo / f)
    run(['git', 'init', '-q'], repo)
    run(['git', '-c', 'user.name=test', '-c', 'user.email=test@example.invalid', 'commit', '-qm', 'clone',
         '--allow-empty'], repo)
    params = yaml.safe_load((repo / 'params.yaml').read_text())
    for section, values in TINY.items(): params[section] = {**params[section], **values}
    (repo / 'params.yaml').write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / 'data.dvc').unlink()
    run(['fer-study', 'materialize'], repo)
    run(['dvc', 'add', '-q', 'data'], repo)
    return repo


def test_a_killed_repro_resumes_and_ends_as_an_uninterrupted_run(clone):
    last = clone / MODEL / 'last.pt'
    repro = subprocess.Popen(['dvc', 'repro', STAGE], cwd=clone, env=ENV, text=True, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = []
    try:
        for line in repro.stdout:  # the trainer flushes each epoch's lines; last.pt follows them
            seen.append(line)
            if any(l.startswith('[-] TRAIN [001/') for l in seen) and last.exists(): break
        else: raise AssertionError('dvc repro ended before an epoch was saved:\n' + ''.join(seen[-30:]))
    finally: os.killpg(repro.pid, signal.SIGKILL)
    repro.wait()
    cut_at = torch.load(last, weights_only=True)['meta']['epoch']
    assert 1 <= cut_at < EPOCHS

    resumed = run(['dvc', 'repro', STAGE], clone)
    assert re.search(rf'^\[\*\] resuming {MODEL} after epoch {cut_at}$', resumed.stdout, re.M), resumed.stdout[-3000:]
    assert 'starting afresh' not in resumed.stdout

    # the uninterrupted run: the stage's own command (every seed of study.seeds: here the one), into another folder
    run(['fer-study', 'train', '--init', 'scratch', '--loss', 'dacl', '--out', 'full', '--no-progress'], clone)
    for name in ('best.pt', 'last.pt'):
        got, want = (torch.load(clone / d / name, weights_only=True) for d in (MODEL, 'full/seed0'))
        assert got['model'].keys() == want['model'].keys() and got['meta'] == want['meta']
        assert all(torch.equal(got['model'][k], want['model'][k]) for k in want['model']), f'{name}: weights differ'
    assert (clone / MODEL / 'metrics.json').read_text() == (clone / 'full' / 'seed0' / 'metrics.json').read_text()


def test_a_bad_param_inside_repro_is_one_line_without_a_traceback(clone):
    original = (clone / 'params.yaml').read_text()
    params = yaml.safe_load(original)
    params['train']['epochs'] = 'ten'
    try:
        (clone / 'params.yaml').write_text(yaml.safe_dump(params, sort_keys=False))
        r = run(['dvc', 'repro', STAGE], clone, check=False)
    finally: (clone / 'params.yaml').write_text(original)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "error: params: 'train.epochs' must be int, got 'ten'\n" in out, out[-3000:]
    assert 'Traceback' not in out and 'torch.distributed' not in out, out[-3000:]
