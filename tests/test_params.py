"""Parameters: the paper's setting is one documented step away, and bad values are named."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fer_study.cli import main
from fer_study.core import load_params
from fer_study.rafdb import IMAGE_DIR, LABEL_FILE
from fer_study.testing import write_fake_rafdb
from fer_study.train import train_config

ROOT = Path(__file__).resolve().parents[1]
FER = str(Path(sys.executable).parent / 'fer-study')

# The official code's hyperparameters (amirhfarzaneh/dacl, main.py and the paper), written out independently.
OFFICIAL = dict(input_size=224, resize=256, mean=(0.5752, 0.4495, 0.4012), std=(0.2086, 0.1911, 0.1827),
                lamb=0.01, alpha=0.5, optimizer='sgd', schedule='step', lr=0.01, momentum=0.9, weight_decay=5e-4,
                step_size=20, gamma=0.1, epochs=60, batch_size=64)


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
    (lambda p: p['study'].update(seeds=[]), WEIGHTS, "'study.seeds' must be a non-empty list of distinct whole numbers"),
    (lambda p: p['study'].update(seeds=['zero', 1]), WEIGHTS, "'study.seeds' must be a non-empty list"),
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


def test_an_init_that_is_not_a_resnet18_fails_before_training_naming_the_file(tmp_path):
    import torch
    params = load_params(ROOT / 'params.yaml')
    params['study']['inits'] = {'scratch': 'scratch', 'mine': 'mine.pth'}
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(params))
    torch.save({'conv1.weight': torch.zeros(8, 3, 3, 3)}, tmp_path / 'mine.pth')
    r = subprocess.run([FER, *WEIGHTS, '--params', 'params.yaml'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'mine.pth: not a ResNet-18 checkpoint' in r.stderr, r.stderr
    assert not (tmp_path / 'w').exists()


def test_missing_dataset_is_named(tmp_path):
    params = load_params(ROOT / 'params.yaml')
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(params))
    r = subprocess.run([FER, 'data', '--params', 'params.yaml', '--out', 'out'], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and 'data/synthetic: dataset folder not found' in r.stderr and "'data.root'" in r.stderr
    assert not (tmp_path / 'out').exists()


# values of the right type that no run should start with (each used to train silently or end in a traceback)
UNTRAINABLE = [
    ('train.batch_size', 1, "'train.batch_size' must be at least 2 x 'train.processes' = 2"),
    ('train.batch_size', 0, "'train.batch_size' must be at least 2 x 'train.processes' = 2"),
    ('train.epochs', 0, "'train.epochs' must be at least 1, got 0"),
    ('train.epochs', 'ten', "'train.epochs' must be int, got 'ten'"),
    ('optim.step_size', 0, "'optim.step_size' must be at least 1"),
    ('optim.lr', -0.01, "'optim.lr' must be a positive number, got -0.01"),
    ('optim.momentum', -0.9, "'optim.momentum' must be in [0, 1), got -0.9"),
    ('optim.weight_decay', -0.0005, "'optim.weight_decay' must be at least 0, got -0.0005"),
    ('optim.gamma', 0, "'optim.gamma' must be in (0, 1], got 0.0"),
    ('optim.gamma', 2, "'optim.gamma' must be in (0, 1], got 2.0"),
    ('loss.lamb', -0.01, "'loss.lamb' must be at least 0"),
    ('loss.alpha', 0, "'loss.alpha' must be in (0, 1], got 0.0"),
    ('loss.alpha', 1.5, "'loss.alpha' must be in (0, 1], got 1.5"),
    ('train.processes', 0, "'train.processes' must be at least 1, got 0"),
    ('train.processes', 'two', "'train.processes' must be int, got 'two'"),
    ('train.processes', 2.0, "'train.processes' must be int, got 2.0"),
]


@pytest.mark.parametrize('key, value, message', UNTRAINABLE)
def test_untrainable_values_fail_in_one_line_naming_the_key(tmp_path, capsys, key, value, message):
    params = load_params(ROOT / 'params.yaml')
    section, name = key.split('.')
    params[section][name] = value
    (tmp_path / 'params.yaml').write_text(yaml.safe_dump(params))
    code = main(['train', '--params', str(tmp_path / 'params.yaml'), '--init', 'scratch', '--loss', 'dacl',
                 '--manifest', str(tmp_path / 'data' / 'manifest.csv'), '--out', str(tmp_path / 'w')])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: params: ') and message in err and err.count('\n') == 1, err
    assert not (tmp_path / 'w').exists()


@pytest.fixture
def fake_rafdb(tmp_path, monkeypatch):
    "A tiny RAF-DB tree of noise images (no faces) and params pointing at it, in the working folder."
    monkeypatch.chdir(tmp_path)
    params = load_params(ROOT / 'params.yaml')
    params['data'].update(source='rafdb', root='rafdb')
    params['model'].update(input_size=32, resize=37)
    Path('params.yaml').write_text(yaml.safe_dump(params))
    return write_fake_rafdb(tmp_path / 'rafdb', per_class=3, size=40)


def test_an_unreadable_training_image_stops_the_data_stage_naming_it(fake_rafdb, capsys):
    for jpg in (fake_rafdb / IMAGE_DIR).glob('train_*'): jpg.write_bytes(jpg.read_bytes()[:120])  # cut short
    assert main(['data', '--out', 'out']) == 2
    err = capsys.readouterr().err
    image = r'rafdb/basic/Image/aligned/train_\d{5}_aligned\.jpg'
    assert re.fullmatch(rf'error: {image}: cannot read image \(.*\)\n', err), err
    assert not Path('out').exists(), 'a failed data stage wrote outputs'


def test_a_class_without_training_images_is_named_before_training(fake_rafdb, capsys):
    label_file = fake_rafdb / LABEL_FILE
    label_file.write_text(''.join(l + '\n' for l in label_file.read_text().split('\n')
                                  if l and not (l.startswith('train_') and l.endswith(' 2'))))  # no Fear to train on
    assert main(['data', '--out', 'out']) == 0
    assert json.loads(Path('out/dataset.json').read_text())['per_class']['train']['Fear'] == 0
    train = ['train', '--init', 'scratch', '--loss', 'dacl', '--manifest', 'out/manifest.csv', '--out', 'model']
    assert main(train) == 2
    err = capsys.readouterr().err
    assert err.endswith('error: out/manifest.csv: the train subset has no images of Fear; '
                        'every class needs training images\n'), err
    assert not Path('model').exists()


def test_a_skipped_variant_replaces_an_earlier_run_only_when_told(fake_rafdb, capsys):
    assert main(['data', '--out', 'out']) == 0
    model = Path('model')
    for name in ('best.pt', 'last.pt', 'metrics.json', 'live/metrics.json', 'notes.txt'):
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_text('an earlier run' if name != 'notes.txt' else "the user's")
    # an initialization whose weights are missing: the variant is skipped, but the earlier run is not ours to remove
    train = ['train', '--init', 'msceleb.pth', '--loss', 'dacl', '--seed', '0', '--manifest', 'out/manifest.csv',
             '--out', 'model']
    assert main(train) == 2
    err = capsys.readouterr().err
    assert 'model: holds a trained run (last.pt, best.pt, metrics.json, live) and msceleb.pth has no weights' in err
    assert sorted(p.name for p in model.iterdir()) == ['best.pt', 'last.pt', 'live', 'metrics.json', 'notes.txt']
    assert main([*train, '--restart']) == 0
    assert 'skipped (--restart), so no model of an earlier run keeps the name' in capsys.readouterr().out
    assert sorted(p.name for p in model.iterdir()) == ['notes.txt', 'skipped.json']
