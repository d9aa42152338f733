"""Training runs end to end: resume after a kill, fresh starts, divergence, configuration and checkpoint guards."""
import argparse
import json
import re

import pytest
import torch

import fer_study.train as T
from fer_study.core import FerStudyError
from fer_study.model import DACL, load_model, model_meta, read_checkpoint
from fer_study.testing import toy_subsets

CFG = T.TrainConfig(input_size=32, resize=40, epochs=3, batch_size=8, lr=0.0005)


@pytest.fixture(scope='module')
def toy():
    return toy_subsets(n=42)


def test_resume_after_kill_matches_uninterrupted(toy, tmp_path, monkeypatch):
    full = T.train(toy, CFG, tmp_path / 'full', progress=False)

    real_save = T._save
    def killed_at_epoch_2(path, obj):
        if path.name == 'last.pt' and obj['meta']['epoch'] == 2: raise KeyboardInterrupt('killed')
        real_save(path, obj)
    monkeypatch.setattr(T, '_save', killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt): T.train(toy, CFG, tmp_path / 'cut', progress=False)
    assert read_checkpoint(tmp_path / 'cut' / 'last.pt')['meta']['epoch'] == 1
    assert not list((tmp_path / 'cut').glob('*.tmp')), 'a half-written checkpoint was left behind'
    monkeypatch.setattr(T, '_save', real_save)

    resumed = T.train(toy, CFG, tmp_path / 'cut', progress=False)
    assert resumed == full
    cut_hist = read_checkpoint(tmp_path / 'cut' / 'last.pt')['history']
    assert cut_hist == read_checkpoint(tmp_path / 'full' / 'last.pt')['history']
    live = lambda d: (d / 'live' / 'plots' / 'metrics' / 'val' / 'acc.tsv').read_text()
    assert live(tmp_path / 'cut') == live(tmp_path / 'full')


def test_more_epochs_continue_a_finished_run(toy, tmp_path, capsys):
    T.train(toy, CFG, tmp_path, progress=False)
    longer = T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'epochs': 4}), tmp_path, progress=False)
    assert longer['epochs'] == 4
    assert f'resuming {tmp_path} after epoch 3' in capsys.readouterr().out


def one_pixel_off(data: dict) -> dict:
    "`data` with one training pixel changed by one grey level."
    x = data['train'][0].clone()
    x[0, 0, 0, 0] ^= 1
    return {**data, 'train': (x, data['train'][1])}


@pytest.mark.parametrize('first_epochs, change, other_data, reason', [
    (1, dict(lr=0.001), False, 'was trained with other settings (lr)'),
    (1, {}, True, 'was trained on other data'),
    (2, {}, False, 'ran 2 epochs, more than the 1 asked for'),
])
def test_another_run_in_the_folder_is_kept_unless_restart_says_so(toy, tmp_path, capsys, first_epochs, change,
                                                                   other_data, reason):
    first = T.TrainConfig(**{**CFG.__dict__, 'epochs': first_epochs})
    T.train(toy, first, tmp_path, progress=False)
    (tmp_path / 'notes.txt').write_text("the user's")
    (tmp_path / 'live' / 'mine.txt').write_text('inside the folder the trainer owns')
    files = lambda: {p: p.read_bytes() for p in sorted(tmp_path.rglob('*')) if p.is_file()}
    before = files()
    capsys.readouterr()
    data, cfg = one_pixel_off(toy) if other_data else toy, T.TrainConfig(**{**first.__dict__, 'epochs': 1, **change})
    with pytest.raises(FerStudyError, match=f'{tmp_path}: holds another run \\(its last.pt {re.escape(reason)}\\); '
                                            'train into a fresh --out folder, or pass --restart'):
        T.train(data, cfg, tmp_path, progress=False)
    assert files() == before, 'a refused run changed the folder'

    summary = T.train(data, cfg, tmp_path, progress=False, restart='--restart')
    out = capsys.readouterr().out
    assert f'{tmp_path}: starting afresh (--restart): its last.pt {reason}' in out and 'resuming' not in out, out
    assert (tmp_path / 'notes.txt').read_text() == "the user's", 'a file the trainer did not write was touched'
    assert not (tmp_path / 'live' / 'mine.txt').exists()
    last = read_checkpoint(tmp_path / 'last.pt')
    assert summary['epochs'] == len(last['history']) == cfg.epochs and last['config']['lr'] == cfg.lr
    assert last['data'] == T.data_fingerprint(data)


def test_non_finite_loss_names_epoch_and_step(toy, tmp_path):
    with pytest.raises(T.TrainingDiverged, match=r'epoch 1, step \d+'):
        T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'lr': 1e12}), tmp_path, progress=False, log_every=1)
    assert not (tmp_path / 'last.pt').exists()


def test_metrics_file_says_where_data_came_from(toy, tmp_path):
    T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'epochs': 1}), tmp_path, dataset='synthetic', progress=False)
    summary = json.loads((tmp_path / 'metrics.json').read_text())
    assert summary['dataset'] == 'synthetic'
    meta = read_checkpoint(tmp_path / 'best.pt')['meta']
    assert meta['dataset'] == 'synthetic' and meta['resize'] == 40 and meta['input_size'] == 32
    assert set(summary['best_valid_test_selected']) == {'acc', 'rec', 'f1', 'aucpr', 'aucroc'}


def test_a_batch_of_one_is_refused_before_any_training(toy, tmp_path):
    with pytest.raises(FerStudyError, match=r"'train.batch_size' must be at least 2 x 'train.processes' = 2 .*, got 1"):
        T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'batch_size': 1}), tmp_path, progress=False)
    assert not (tmp_path / 'metrics.json').exists()


def write(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize('make, message', [
    (lambda p, sd, meta: write(p, {'model': sd, 'meta': meta, 'args': argparse.Namespace(lr=0.1)}),
     'not a fer_study checkpoint: it holds pickled Python objects'),
    (lambda p, sd, meta: write(p, sd), "a PyTorch file holding a dict without 'model' and 'meta'"),
    (lambda p, sd, meta: p.write_bytes(b'PK\x03\x04 cut short') and p, 'checkpoint: not a PyTorch file'),
    (lambda p, sd, meta: write(p, {'model': sd, 'meta': {k: v for k, v in meta.items() if k != 'mean'}}),
     "checkpoint meta lacks 'mean'"),
    (lambda p, sd, meta: write(p, {'model': sd, 'meta': {**meta, 'input_size': 64, 'resize': 73}}),
     "checkpoint 'model' entry 'attention.0.weight' is (3584, 512), but the meta's input_size 64"),
    (lambda p, sd, meta: write(p, {'model': sd, 'meta': {**meta, 'classes': ['calm', 'excited']}}),
     "checkpoint meta 'classes' has ['calm', 'excited'], which the study does not; lacks Surprise, Fear"),
])
def test_a_file_that_is_not_a_usable_checkpoint_gets_one_line(tmp_path, make, message):
    path = make(tmp_path / 'best.pt', DACL(input_size=32).state_dict(), model_meta(32, 40, [0.5] * 3, [0.2] * 3))
    with pytest.raises(FerStudyError) as e: load_model(path)
    assert str(e.value).startswith(f'{path}: ') and message in str(e.value), str(e.value)
    assert '\n' not in str(e.value) and 'weights_only' not in str(e.value)
