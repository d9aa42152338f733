"""The DistributedDataParallel path on the CPU: torchrun, gloo backend, two processes."""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

from fer_study.cli import main
from fer_study.study import run_data
from fer_study.core import load_params
from fer_study.model import read_checkpoint
from fer_study.testing import write_fake_rafdb

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = '''
import json
import sys
from pathlib import Path
import torch.distributed as dist
from fer_study.testing import toy_subsets
from fer_study.train import TrainConfig, train
cfg = TrainConfig(input_size=32, resize=40, epochs=2, batch_size=16, lr=0.0005, device='cpu', processes=2)
summary = train(toy_subsets(n=56), cfg, sys.argv[1], dataset='toy', progress=False)
# each process writes its own file: the two processes' stdout interleave at random
report = {'rank': dist.get_rank(), 'world': dist.get_world_size(), 'acc': summary['test']['acc']}
Path(sys.argv[2], f"rank{dist.get_rank()}.json").write_text(json.dumps(report))
'''


def test_two_process_training_with_gloo(tmp_path):
    script = tmp_path / 'ddp_train.py'
    script.write_text(SCRIPT)
    torchrun = Path(sys.executable).parent / 'torchrun'
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([str(torchrun), '--standalone', '--nproc_per_node', '2', str(script), str(tmp_path / 'out'), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    reports = [json.loads((tmp_path / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert [(x['rank'], x['world']) for x in reports] == [(0, 2), (1, 2)]
    assert reports[0]['acc'] == reports[1]['acc'], 'processes disagree on the result'
    assert r.stdout.count('[>] Best Valid') == 1, 'only the first process reports'
    ckpt = read_checkpoint(tmp_path / 'out' / 'last.pt')
    assert [h['epoch'] for h in ckpt['history']] == [1, 2]
    assert json.loads((tmp_path / 'out' / 'metrics.json').read_text())['epochs'] == 2


def test_killing_the_trainer_leaves_no_process_and_a_held_folder_refuses_a_second(tmp_path, monkeypatch, capsys):
    "`fer-study train` with 2 processes starts torchrun itself; SIGKILL of its process group ends every worker."
    monkeypatch.chdir(tmp_path)
    params = load_params(ROOT / 'params.yaml')
    params['data'].update(source='rafdb', root='rafdb')
    params['model'].update(input_size=32, resize=37)
    params['train'].update(epochs=1000, batch_size=8, device='cpu', processes=2)  # runs until killed
    Path('params.yaml').write_text(yaml.safe_dump(params))
    write_fake_rafdb('rafdb', per_class=3, size=40)
    run_data(params, 'data')
    train = ['train', '--init', 'scratch', '--loss', 'dacl', '--manifest', 'data/manifest.csv', '--out', 'model']
    trainer = subprocess.Popen([str(Path(sys.executable).parent / 'fer-study'), *train, '--no-progress'], text=True,
                               start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, 'OMP_NUM_THREADS': '1'})
    try:
        seen = []
        for line in trainer.stdout:  # until both processes have trained an epoch together
            seen.append(line)
            if line.startswith('[-] TRAIN [001/'): break
        else: raise AssertionError('training ended before its first epoch:\n' + ''.join(seen))
        assert main(train) == 2  # a second trainer on the same folder, while the first holds it
        assert "error: model/seed0: another `fer-study train` is training into this folder" in capsys.readouterr().err
        workers = psutil.Process(trainer.pid).children(recursive=True)
        assert len(workers) == 2, workers
    finally: os.killpg(trainer.pid, signal.SIGKILL)
    trainer.wait()
    _, alive = psutil.wait_procs(workers, timeout=60)  # the kernel kills them as their parent dies
    assert not alive, f'workers outlived the killed trainer: {alive}'


def test_two_machines_train_one_model_over_loopback(tmp_path):
    "`train.nodes: 2`: two `fer-study train` launchers (node ranks 0 and 1) meet at the rendezvous; machine 0 writes."
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    launchers = []
    for node in (0, 1):  # each "machine" with its own folder: its own params, data and run folder
        home = tmp_path / f'node{node}'
        home.mkdir()
        params = load_params(ROOT / 'params.yaml')
        params['data'].update(source='rafdb', root=str(home / 'rafdb'))
        params['model'].update(input_size=32, resize=37)
        params['train'].update(epochs=2, batch_size=8, device='cpu', processes=1, nodes=2,
                               rendezvous=f'127.0.0.1:{port}')
        (home / 'params.yaml').write_text(yaml.safe_dump(params))
        write_fake_rafdb(home / 'rafdb', per_class=3, size=40)
        run_data(params, home / 'data')
        cmd = [str(Path(sys.executable).parent / 'fer-study'), 'train', '--params', str(home / 'params.yaml'),
               '--init', 'scratch', '--loss', 'dacl', '--seed', '0', '--manifest', str(home / 'data' / 'manifest.csv'),
               '--out', str(home / 'model'), '--no-progress', '--node-rank', str(node)]
        launchers.append(subprocess.Popen(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          env={**os.environ, 'OMP_NUM_THREADS': '1'}, start_new_session=True))
    try: logs = [p.communicate(timeout=300)[0] for p in launchers]
    finally:
        for p in launchers:
            if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert [p.returncode for p in launchers] == [0, 0], logs
    summary = json.loads((tmp_path / 'node0' / 'model' / 'metrics.json').read_text())
    assert summary['epochs'] == 2
    assert read_checkpoint(tmp_path / 'node0' / 'model' / 'best.pt')['meta']['config']['nodes'] == 2
    assert not (tmp_path / 'node1' / 'model' / 'best.pt').exists(), 'only the first machine writes the run'
    assert logs[0].count('[>] Best Valid') == 1 and 'Best Valid' not in logs[1]
