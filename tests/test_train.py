"""Training runs end to end: resume after a kill, divergence, configuration guards."""
import json

import pytest
import torch

import fer_study.train as T
from fer_study.core import FerStudyError
from fer_study.model import read_checkpoint

CFG = T.TrainConfig(input_size=32, resize=40, epochs=3, batch_size=8, lr=0.0005)


@pytest.fixture(scope='module')
def toy():
    return T.toy_subsets(n=42)


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


def test_more_epochs_continue_a_finished_run(toy, tmp_path):
    T.train(toy, CFG, tmp_path, progress=False)
    longer = T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'epochs': 4}), tmp_path, progress=False)
    assert longer['epochs'] == 4


def test_checkpoint_of_other_settings_is_not_continued(toy, tmp_path):
    T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'epochs': 1}), tmp_path, progress=False)
    with pytest.raises(FerStudyError, match=r"another configuration \(differs in \['lr'\]\)"):
        T.train(toy, T.TrainConfig(**{**CFG.__dict__, 'lr': 0.1}), tmp_path, progress=False)


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
