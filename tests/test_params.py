"""Parameters: the paper's setting is one documented step away, and bad values are named."""
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fer_study.core import load_params
from fer_study.train import train_config

ROOT = Path(__file__).resolve().parents[1]
FER = str(Path(sys.executable).parent / 'fer-study')

# The official code's hyperparameters (amirhfarzaneh/dacl, main.py and the paper), written out independently.
OFFICIAL = dict(input_size=224, resize=256, mean=(0.5752, 0.4495, 0.4012), std=(0.2086, 0.1911, 0.1827),
                lamb=0.01, alpha=0.5, lr=0.01, momentum=0.9, weight_decay=5e-4, step_size=20, gamma=0.1,
                epochs=60, batch_size=64)


def readme_overrides() -> dict:
    "The `-S key=value` overrides of the README's paper-setting command."
    line = next(l for l in (ROOT / 'README.md').read_text().splitlines() if l.startswith('.venv/bin/dvc exp run'))
    args = shlex.split(line)
    return dict(args[i + 1].split('=', 1) for i, a in enumerate(args) if a == '-S')


def test_readme_paper_setting_gives_the_official_hyperparameters():
    params = load_params(ROOT / 'params.yaml')
    overrides = readme_overrides()
    for key, value in overrides.items():
        section, name = key.split('.')
        assert name in params[section], f'README overrides unknown key {key}'
        params[section][name] = yaml.safe_load(value)
    assert params['data'] == {**params['data'], 'source': 'rafdb', 'root': 'data/rafdb'}
    cfg = train_config(params, 'imagenet', 'dacl')
    assert {k: getattr(cfg, k) for k in OFFICIAL} == OFFICIAL
    assert train_config(params, 'scratch', 'softmax').center_lamb == 0


def test_readme_is_generated_from_the_index_notebook():
    made = subprocess.run([str(Path(sys.executable).parent / 'jupyter'), 'nbconvert', '--log-level=ERROR', '--to', 'markdown',
                           '--stdout', str(ROOT / 'nbs/index.ipynb')], capture_output=True, text=True, check=True).stdout
    assert made == (ROOT / 'README.md').read_text(), 'README.md is out of step with nbs/index.ipynb: run `make readme`'


WEIGHTS, TRAIN, DATA = ['weights', '--out', 'w'], ['train', '--init', 'scratch', '--loss', 'dacl', '--out', 'w'], ['data', '--out', 'w']


@pytest.mark.parametrize('edit, command, message', [
    (lambda p: p['study'].update(losses=['focal']), WEIGHTS, "'study.losses' has unknown loss 'focal'"),
    (lambda p: p['study'].update(inits=['imagenet21k']), WEIGHTS, "'study.inits' has unknown initialization 'imagenet21k'"),
    (lambda p: p['optim'].update(lr='fast'), TRAIN, "'optim.lr' must be float"),
    (lambda p: p['data'].update(source='affectnet'), DATA, "'data.source' must be one of"),
])
def test_bad_params_fail_naming_the_key(tmp_path, edit, command, message):
    params = load_params(ROOT / 'params.yaml')
    edit(params)
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(params))
    r = subprocess.run([FER, command[0], '--params', 'params.yaml', *command[1:]], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / 'w').exists(), 'a failed stage left outputs behind'


def test_missing_dataset_is_named(tmp_path):
    params = load_params(ROOT / 'params.yaml')
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(params))
    r = subprocess.run([FER, 'data', '--params', 'params.yaml', '--out', 'out'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'data/synthetic: dataset folder not found' in r.stderr and "'data.root'" in r.stderr
    assert not (tmp_path / 'out').exists()
