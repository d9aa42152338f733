"""The synthetic data is byte-for-byte what it was when `synth` was one module (before the split into `render`,
the face renderer, and `synth`, the writer): the hashes below were taken from that module for the same seeds.

A deliberate change of the images or videos must bump `GENERATOR_VERSION` and record new hashes here. The MP4
hashes also depend on the FFmpeg that `imageio-ffmpeg` bundles and the JPEG ones on Pillow's libjpeg: both are
pinned in requirements-lock.txt."""
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fer_study.synth import gallery_tiles, make_demo_video, make_gallery_video, make_synthetic_rafdb, truth_paths


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_sha256(root: Path) -> str:
    "One hash over every file under `root`: its relative path and the hash of its bytes, in sorted order."
    h = hashlib.sha256()
    for p in sorted(root.rglob('*')):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b'\0' + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


@pytest.mark.parametrize('kw, expected', [
    (dict(n_train=28, n_test=14, seed=0), '4f8220a90cf460af353ae35a1892ef791048ac6fb8245a3437fcf702ff2ed660'),
    (dict(n_train=14, n_test=7, seed=1, label_noise=0.3, workers=1),
     'c14c154afc5122c4ddbce48def5e306f4266f685c3cbc00e87e5cd807c5a71ca'),
], ids=['seed0', 'label_noise'])
def test_synthetic_rafdb_unchanged(tmp_path, kw, expected):
    assert tree_sha256(make_synthetic_rafdb(tmp_path / 'raf', **kw)) == expected


# 8 seconds at 2 frames per second: every participant's script has holds and transitions, in few frames. The study's
# demo calls have the webcam look (params.yaml synth.videos); the plain ones are what they were before it existed.
@pytest.mark.parametrize('layout, webcam, expected', [
    ('single', False, ('04840a942b44c085e642c039754a3fe16bff528cbf2a85780d9362e7e08a9f7c',
                       '663579ac0ec4e2e6a474a7a9e1864344f4e8e33da360e1fcb994f8c5f60d8735',
                       'b1762664cd04d90111c33111f291b36d86e00ec66f2f977eeef204095bac6a3b')),
    ('grid', False, ('fccb877718349ff857a547734f38967f3d089e02063e3a1f9df26f41b895915e',
                     'a44cc5b63beb3716c6fe8cbad55f59803546a74ffb47ad7d73b960ba14cc14cd',
                     'c8facd0a970644debc69ac07abed83612f506b9b6ffc967b2f2e4a04b623fff8')),
    ('single', True, ('a0cbfe2532acf79abfd8f9f537d74af0bdaf4e6908f040ef92f2926b5941d8b5',
                      '1c33e724d894be2e540e6e8aa68140c58d39ad2099605b53ac0d928e838f9ef7',
                      'daeafc05b93f2ab97732743c0db9e479f725c45ea457b6c9a493574f3f81f7db')),
    ('grid', True, ('cf6dce8bbc431672787531c19111f6839741cb6aa95af17b1010e3a24346098c',
                    '95540ddd655d63ea43bd1080cbc0344fd728b75888b6573406dd1eaeb2cabfc9',
                    '81becc4f3fbc814195e537d7a16713006136f2f6c67d6da75b4a61894b36751a')),
], ids=['single', 'grid', 'single-webcam', 'grid-webcam'])
def test_demo_video_unchanged(tmp_path, layout, webcam, expected):
    video = make_demo_video(tmp_path / f'{layout}.mp4', layout, seed=0, duration=8, fps=2, webcam=webcam)
    assert tuple(sha256(p) for p in (video, *truth_paths(video))) == expected


def test_the_study_demo_calls_have_the_webcam_look():
    params = yaml.safe_load((Path(__file__).parents[1] / 'params.yaml').read_text())
    assert [(v['layout'], v['webcam']) for v in params['synth']['videos']] == [('single', True), ('grid', True)]


def test_gallery_truth(tmp_path):
    "One row per visible participant per frame, each box inside its tile, late joiners absent until their second."
    joins = {'P2': 0.5, 'P9': 0.75}
    video = make_gallery_video(tmp_path / 'g.mp4', 3, 3, (384, 216), seed=1, duration=1, fps=4, joins=joins)
    truth, summary = pd.read_csv(truth_paths(video)[0]), json.loads(truth_paths(video)[1].read_text())
    tiles = dict(zip(summary['participants'], gallery_tiles(3, 3, (384, 216))))
    assert summary['tiles'] == {k: list(v) for k, v in tiles.items()} and summary['joins'] == joins
    assert not truth.duplicated(['frame', 'participant']).any()
    for frame, rows in truth.groupby('frame'):
        t = frame / 4
        assert set(rows['participant']) == {p for p in tiles if t >= joins.get(p, 0)}, frame
    x0, y0, x1, y1 = (truth['participant'].map({p: r[k] for p, r in tiles.items()}) for k in range(4))
    assert ((x0 <= truth.x0) & (truth.x0 < truth.x1) & (truth.x1 <= x1)).all()
    assert ((y0 <= truth.y0) & (truth.y0 < truth.y1) & (truth.y1 <= y1)).all()
    assert len(truth) == 9 * 4 - 2 - 3


GALLERY_SHA256 = ('1cb55d7835f034a83ab4dbc87fe4ad8ae614c3567b405a3c9a3ca0b542143c6b',
                  '2a1b058d509dcba2f087909f0518429bb87a66f91b2587affcf8b8bf1be74c2e',
                  '158eda0b637dbe23ded4e2d3325a21edcc740387650777aec4fb168dc4db60a9')


def test_gallery_video_unchanged(tmp_path):
    "The gallery, late joiners and the webcam look keep their bytes too (same rule as above)."
    video = make_gallery_video(tmp_path / 'g.mp4', 2, 3, (384, 216), seed=0, duration=1, fps=4, joins={'P4': 0.5},
                               webcam=True)
    assert tuple(sha256(p) for p in (video, *truth_paths(video))) == GALLERY_SHA256
