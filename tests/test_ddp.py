"""The DistributedDataParallel path on the CPU: torchrun, gloo backend, two processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

from fer_study.model import read_checkpoint

SCRIPT = '''
import json
import sys
from pathlib import Path
import torch.distributed as dist
from fer_study.train import TrainConfig, toy_subsets, train
summary = train(toy_subsets(n=56), TrainConfig(input_size=32, resize=40, epochs=2, batch_size=16, lr=0.0005, device='cpu'),
                sys.argv[1], dataset='toy', progress=False)
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
