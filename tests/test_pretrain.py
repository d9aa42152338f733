"""Synthetic pretraining: images and seeds disjoint from the expression set, labels that are people, a checkpoint the
study loads, and bad settings or checkpoints named before any work."""
import csv
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from torchvision.models import resnet18

import fer_study.pretrain as P
from fer_study.core import CLASSES, ParamsError
from fer_study.model import CheckpointError, build_model
from fer_study.rafdb import LABEL_FILE, aligned_path
from fer_study.render import sample_face
from fer_study.synth import _SPLIT_CODES, JPEG_QUALITY, make_synthetic_rafdb

SEED = 0  # the same seed setting for both sets: their streams must still differ
PARAMS = dict(pretrain=dict(identities=3, images_per_identity=5, epochs=1, batch_size=4, lr=0.05, seed=SEED),
              model=dict(input_size=16, resize=20), normalize=dict(mean=[0.5752, 0.4495, 0.4012],
                                                                  std=[0.2086, 0.1911, 0.1827]))


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
        jpeg, expression = P.render_shot(idn, seed)
        assert jpeg == (pre / r['file']).read_bytes() and expression == r['expression']


def test_labels_are_people_not_expressions(sets):
    _, pre = sets
    rows = read_index(pre)
    data = P.load_pretrain_set(pre, 40)
    labels = torch.cat([data['train'][1], data['val'][1]])
    assert sorted(set(labels.tolist())) == [0, 1, 2]
    assert sorted(labels.tolist()) == sorted(int(r['identity']) for r in rows)
    # expressions vary within a person, so the label does not tell the expression (nor the reverse)
    shown = {p: {r['expression'] for r in rows if r['identity'] == str(p)} for p in range(3)}
    assert all(len(s) >= 2 for s in shown.values()), shown
    assert set(r['expression'] for r in rows) <= set(CLASSES)
    assert all(data[s][0].shape[1:] == (3, 40, 40) for s in data)


def test_checkpoint_loads_through_build_model_and_rerun_replaces_only_its_files(tmp_path):
    (tmp_path / 'keep.txt').write_text('not ours')
    P.run_pretrain(PARAMS, tmp_path, progress=False, workers=1)
    first = (tmp_path / P.CHECKPOINT_FILE).read_bytes()
    info = P.run_pretrain({**PARAMS, 'pretrain': {**PARAMS['pretrain'], 'images_per_identity': 6}}, tmp_path,
                          progress=False, workers=1)
    ckpt = tmp_path / P.CHECKPOINT_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['images', 'keep.txt', P.CHECKPOINT_FILE,
                                                                 P.SIDECAR_FILE])
    assert (tmp_path / 'keep.txt').read_text() == 'not ours'
    assert len(read_index(tmp_path / 'images')) == 18 and ckpt.read_bytes() != first

    sd = torch.load(ckpt, weights_only=True)
    assert set(sd) == set(resnet18(num_classes=3).state_dict()) and sd['fc.weight'].shape == (3, 512)
    model = build_model(str(ckpt), input_size=16)
    backbone = {k: v for k, v in sd.items() if not k.startswith('fc.')}
    assert all(torch.equal(model.resnet.state_dict()[k], v) for k, v in backbone.items())
    assert not torch.equal(build_model('scratch', 16).resnet.conv1.weight, sd['conv1.weight'])
    assert model.resnet.fc.out_features == len(CLASSES)

    side = json.loads((tmp_path / P.SIDECAR_FILE).read_text())
    assert side == info == P.pretrain_info(ckpt)
    assert side['what'] == 'synthetic pretraining, a stand-in for ImageNet'
    assert 'identity' in side['task'] and side['epochs'] == 1 and side['seeds']['seed'] == SEED
    assert side['images']['train_images'] + side['images']['val_images'] == 18
    assert 0 <= side['train_acc'] <= 1 and 0 <= side['val_acc'] <= 1


@pytest.mark.parametrize('key, value, message', [
    ('pretrain.identities', 1, "'pretrain.identities' must be at least 2"),
    ('pretrain.images_per_identity', 4, "'pretrain.images_per_identity' must be at least 5"),
    ('pretrain.epochs', 0, "'pretrain.epochs' must be at least 1"),
    ('pretrain.batch_size', 1, "'pretrain.batch_size' must be at least 2"),
    ('pretrain.lr', float('nan'), "'pretrain.lr' must be a positive number"),
    ('pretrain.seed', -3, "'pretrain.seed' must be at least 0"),
    ('pretrain.seed', 'zero', "'pretrain.seed' must be int"),
    ('pretrain.identities', None, "missing key 'pretrain.identities'"),
    ('model.resize', 8, "'model.resize' must be at least 'model.input_size' (16)"),
    ('normalize.std', [0.2, 0.0, 0.2], "'normalize.std' must be 3 positive numbers"),
])
def test_bad_settings_are_named_before_any_work(tmp_path, key, value, message):
    section, name = key.split('.')
    values = {**PARAMS[section], name: value}
    if value is None: del values[name]
    with pytest.raises(ParamsError, match=message.replace('(', r'\(').replace(')', r'\)')):
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
