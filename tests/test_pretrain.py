"""Synthetic pretraining: images and seeds disjoint from the expression set, labels that are landmarks and people (never
an expression), a checkpoint the study loads, a folder of somebody's files never replaced, and bad settings or
checkpoints named before any work."""
import csv
import hashlib
import io
import json
import re

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

import fer_study.pretrain as P
from fer_study.core import CLASSES, FerStudyError, ParamsError
from fer_study.model import CheckpointError, build_model
from fer_study.rafdb import LABEL_FILE, aligned_path
from fer_study.render import LANDMARKS, PROTOTYPES, sample_face
from fer_study.synth import _SPLIT_CODES, JPEG_QUALITY, make_synthetic_rafdb
from fer_study.testing import toy_subsets

SEED = 0  # the same seed setting for both sets: their streams must still differ
PARAMS = dict(pretrain=dict(task='landmarks', identities=3, images_per_identity=5, epochs=1, batch_size=4, lr=2e-3,
                            weight_decay=0.05, seed=SEED),
              model=dict(input_size=16, resize=20), normalize=dict(mean=[0.5752, 0.4495, 0.4012],
                                                                  std=[0.2086, 0.1911, 0.1827]),
              train=dict(precision='fp32'))


def read_index(folder) -> list[dict]:
    with open(folder / P.INDEX_FILE, newline='') as f: return list(csv.DictReader(f))


def expression_seeds(root) -> dict[str, tuple]:
    "Each expression-set image and its rendering seed, checked by rendering the image again from that seed."
    seeds = {}
    for line in (root / LABEL_FILE).read_text().split():
        if not line.endswith('.jpg'): continue
        split, number = line.split('_')[0], int(line.split('_')[1].split('.')[0])
        seeds[line] = (SEED, _SPLIT_CODES[split], number)
    return seeds


def normal(seed: tuple) -> tuple:
    "A seed as NumPy's SeedSequence sees it: trailing zeros do not count."
    seed = list(seed)
    while seed and seed[-1] == 0: seed.pop()
    return tuple(seed)


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
    d = tmp_path_factory.mktemp('sets')
    expr = make_synthetic_rafdb(d / 'synthetic', n_train=14, n_test=7, seed=SEED, workers=1)
    pre = P.render_pretrain_set(d / 'pretrain' / 'images', identities=3, per_identity=5, seed=SEED, workers=1)
    return expr, pre


def test_expression_seeds_are_the_ones_synth_renders_with(sets):
    expr, _ = sets
    lines = dict(line.split() for line in (expr / LABEL_FILE).read_text().splitlines())
    name = sorted(lines)[0]
    rng = np.random.default_rng(expression_seeds(expr)[name])
    buf = io.BytesIO()
    sample_face(CLASSES[int(lines[name]) - 1], rng).save(buf, 'JPEG', quality=int(rng.integers(*JPEG_QUALITY)))
    assert buf.getvalue() == aligned_path(expr, name).read_bytes()


def test_pretraining_images_share_no_file_and_no_seed_with_the_expression_set(sets):
    expr, pre = sets
    rows = read_index(pre)
    pre_files = [pre / r['file'] for r in rows]
    expr_files = sorted((expr / 'basic').rglob('*.jpg'))
    assert len(pre_files) == 15 and len(expr_files) == 21
    assert not any(p.resolve().is_relative_to(expr.resolve()) for p in pre_files)
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert not {digest(p) for p in pre_files} & {digest(p) for p in expr_files}

    pre_seeds = [tuple(int(x) for x in r['seed'].split('-')) for r in rows]
    pre_seeds += [P.person_seed(SEED, p) for p in range(3)]
    expr_seeds = list(expression_seeds(expr).values())
    assert not {normal(s) for s in pre_seeds} & {normal(s) for s in expr_seeds}
    state = lambda s: tuple(np.random.SeedSequence(list(s)).generate_state(4))
    assert not {state(s) for s in pre_seeds} & {state(s) for s in expr_seeds}


def test_recorded_seeds_made_the_images(sets):
    _, pre = sets
    for r in read_index(pre)[:3] + read_index(pre)[-2:]:
        seed = tuple(int(x) for x in r['seed'].split('-'))
        idn = P.random_identity(np.random.default_rng(P.person_seed(SEED, int(r['identity']))))
        jpeg, aus, points = P.render_shot(idn, seed)
        assert jpeg == (pre / r['file']).read_bytes()
        assert r['aus'] == ' '.join(f'{au}:{v:.3f}' for au, v in aus.items())
        assert np.allclose([float(r[f'{n}_{xy}']) for n in LANDMARKS for xy in 'xy'], points.ravel(), atol=1e-3)


def test_labels_are_landmarks_and_people_never_an_emotion(sets):
    _, pre = sets
    rows = read_index(pre)
    assert not {'expression', 'emotion', 'label'} & set(rows[0])  # no column could carry an emotion
    data = P.load_pretrain_set(pre, 40)
    people = torch.cat([data['train'][1], data['val'][1]])
    assert sorted(set(people.tolist())) == [0, 1, 2]
    assert sorted(people.tolist()) == sorted(int(r['identity']) for r in rows)
    points = torch.cat([data['train'][2], data['val'][2]])
    assert points.shape == (15, len(LANDMARKS), 2) and -0.2 < points.min() and points.max() < 1.2  # a chin may drop out
    # the moving units follow no emotion's recipe: no shot shows exactly a prototype's units
    shown = [frozenset(int(u.split(':')[0]) for u in r['aus'].split()) for r in rows]
    assert not set(shown) & {frozenset(v) for v in PROTOTYPES.values() if v}
    assert all(data[s][0].shape[1:] == (3, 40, 40) for s in data)


def test_checkpoint_loads_through_build_model_and_rerun_replaces_only_its_files(tmp_path):
    (tmp_path / 'keep.txt').write_text('not ours')
    P.run_pretrain(PARAMS, tmp_path, toy_subsets(n=28, size=20), progress=False, workers=1)
    first = (tmp_path / P.CHECKPOINT_FILE).read_bytes()
    info = P.run_pretrain({**PARAMS, 'pretrain': {**PARAMS['pretrain'], 'images_per_identity': 6}}, tmp_path,
                          toy_subsets(n=28, size=20), progress=False, workers=1)
    ckpt = tmp_path / P.CHECKPOINT_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['images', 'keep.txt', P.CHECKPOINT_FILE,
                                                                 P.SIDECAR_FILE])
    assert (tmp_path / 'keep.txt').read_text() == 'not ours'
    assert len(read_index(tmp_path / 'images')) == 18 and ckpt.read_bytes() != first

    sd = torch.load(ckpt, weights_only=True)
    assert set(sd) == set(resnet18(num_classes=44).state_dict()) and sd['fc.weight'].shape == (44, 512)
    model = build_model(str(ckpt), input_size=16)
    backbone = {k: v for k, v in sd.items() if not k.startswith('fc.')}
    assert all(torch.equal(model.resnet.state_dict()[k], v) for k, v in backbone.items())
    assert not torch.equal(build_model('scratch', 16).resnet.conv1.weight, sd['conv1.weight'])
    assert model.resnet.fc.out_features == len(CLASSES)

    side = json.loads((tmp_path / P.SIDECAR_FILE).read_text())
    assert side == info == P.pretrain_info(ckpt)
    assert side['what'] == 'synthetic pretraining, a stand-in for ImageNet'
    assert 'landmarks' in side['task'] and side['epochs'] == 1 and side['seeds']['seed'] == SEED
    assert side['images']['train_images'] + side['images']['val_images'] == 18
    assert side['val'] > 0 and side['precision'] == 'fp32'
    probe = side['probe']
    assert 0 <= probe['random_weights'] <= 1 and 0 <= probe['stand_in'] <= 1 and probe['test_images'] == 14


@pytest.mark.parametrize('theirs', ['images/holiday.jpg', 'images/index.csv', P.CHECKPOINT_FILE, P.SIDECAR_FILE])
def test_files_the_stage_did_not_write_stop_it_and_stay(tmp_path, theirs):
    "A folder or file in the way that is not the stage's own (no index of ours, no sidecar of ours) is named, kept."
    if theirs.startswith('images/'):
        P.run_pretrain(PARAMS, tmp_path, progress=False, workers=1)  # ours first: the user's file joins it
    (tmp_path / theirs).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / theirs).write_bytes(b'somebody else')
    before = {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()}
    with pytest.raises(FerStudyError, match='not (a pretraining set|written by `fer-study pretrain`)'):
        P.run_pretrain(PARAMS, tmp_path, progress=False, workers=1)
    assert {p: p.read_bytes() for p in tmp_path.rglob('*') if p.is_file()} == before


@pytest.mark.parametrize('key, value, message', [
    ('pretrain.identities', 1, "'pretrain.identities' must be at least 2"),
    ('pretrain.task', 'emotions', "'pretrain.task' must be one of ['landmarks', 'identity']"),
    ('train.precision', 'fp8', "'train.precision' must be one of ['auto', 'fp32', 'bf16']"),
    ('pretrain.images_per_identity', 4, "'pretrain.images_per_identity' must be at least 5"),
    ('pretrain.epochs', 0, "'pretrain.epochs' must be at least 1"),
    ('pretrain.batch_size', 1, "'pretrain.batch_size' must be at least 2"),
    ('pretrain.lr', float('nan'), "'pretrain.lr' must be a positive number"),
    ('pretrain.weight_decay', -1.0, "'pretrain.weight_decay' must be at least 0"),
    ('pretrain.seed', -3, "'pretrain.seed' must be at least 0"),
    ('pretrain.seed', 'zero', "'pretrain.seed' must be int"),
    ('pretrain.task', None, "missing key 'pretrain.task'"),
    ('model.resize', 8, "'model.resize' must be at least 'model.input_size' (16)"),
    ('normalize.std', [0.2, 0.0, 0.2], "'normalize.std' must be 3 positive numbers"),
])
def test_bad_settings_are_named_before_any_work(tmp_path, key, value, message):
    section, name = key.split('.')
    values = {**PARAMS[section], name: value}
    if value is None: del values[name]
    with pytest.raises(ParamsError, match=re.escape(message)):
        P.run_pretrain({**PARAMS, section: values}, tmp_path / 'out', progress=False, workers=1)
    assert not (tmp_path / 'out').exists()


def test_checkpoints_that_are_not_resnet18_are_named(tmp_path):
    good = resnet18().state_dict()
    torch.save(good, tmp_path / 'imagenet_like.pth')
    assert set(P.check_resnet18_checkpoint(tmp_path / 'imagenet_like.pth')) == {k for k in good if 'fc.' not in k}
    torch.save({k: v for k, v in good.items() if 'num_batches_tracked' not in k}, tmp_path / 'old.pth')
    P.check_resnet18_checkpoint(tmp_path / 'old.pth')

    torch.save({**good, 'layer2.0.conv1.weight': torch.zeros(128, 64, 5, 5)}, tmp_path / 'wrong_shape.pth')
    torch.save({**good, 'layer1.2.conv1.weight': torch.zeros(64, 64, 3, 3)}, tmp_path / 'resnet34.pth')  # 3rd block
    torch.save({**good, 'conv1.weight': torch.full((64, 3, 7, 7), float('nan'))}, tmp_path / 'nan.pth')
    torch.save({k: v for k, v in good.items() if k != 'bn1.weight'}, tmp_path / 'lacking.pth')
    torch.save({**good, 'fc.weight': torch.zeros(7, 256)}, tmp_path / 'fc.pth')
    (tmp_path / 'notes.pth').write_text('these are not weights')
    torch.save([1, 2, 3], tmp_path / 'list.pth')
    for name, message in [
            ('wrong_shape.pth', "not a ResNet-18 checkpoint: 'layer2.0.conv1.weight' is (128, 64, 5, 5)"),
            ('resnet34.pth', "it has 1 entries a ResNet-18 lacks, e.g. 'layer1.2.conv1.weight'"),
            ('nan.pth', "not a ResNet-18 checkpoint: 'conv1.weight' holds values that are not finite"),
            ('lacking.pth', "not a ResNet-18 checkpoint: it lacks the weights 'bn1.weight'"),
            ('fc.pth', "not a ResNet-18 checkpoint: 'fc.weight'"),
            ('notes.pth', 'cannot load weights'),
            ('list.pth', 'expected a state dict'),
            ('absent.pth', 'initialization checkpoint not found')]:
        with pytest.raises(CheckpointError) as e: P.check_resnet18_checkpoint(tmp_path / name)
        assert str(e.value).startswith(f'{tmp_path / name}: ') and message in str(e.value), str(e.value)
