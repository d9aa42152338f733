"""Changed-only reading through the command line: unchanged faces reuse a reading, --classify-all computes every row."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_study.core import CLASSES
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint

FER = str(Path(sys.executable).parent / 'fer-study')


@pytest.fixture(scope='module')
def readings(tmp_path_factory):
    "A 2-second demo call read both ways at 10 keyframes a second: mode -> (faces.csv, summary.json, stdout)."
    d = tmp_path_factory.mktemp('changed')
    ckpt = demo_checkpoint(d / 'demo.pt')
    video = make_demo_video(d / 'call.mp4', 'single', seed=3, duration=2)
    out = {}
    for mode, extra in (('changed', []), ('all', ['--classify-all'])):
        r = subprocess.run([FER, 'analyze', str(video), '--model', str(ckpt), '--out', str(d / mode), '--fps', '10',
                            '--refresh', '0.5', '--device', 'cpu', '--no-progress', *extra],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        folder = d / mode / 'call'
        out[mode] = pd.read_csv(folder / 'faces.csv'), json.loads((folder / 'summary.json').read_text()), r.stdout
    return out


def test_changed_only_keeps_a_row_per_face_and_marks_the_reused_ones(readings):
    changed, summary, stdout = readings['changed']
    every = readings['all'][0]
    assert changed[['frame', 'participant']].equals(every[['frame', 'participant']])  # a row per face per keyframe
    reused = changed[changed.reused]
    computed = changed[~changed.reused]
    assert len(reused) and len(computed)
    assert (computed.source_frame == computed.frame).all()
    # a reused row carries the reading of an earlier computed row of the same participant, and says which
    source = changed.set_index(['participant', 'frame']).loc[list(zip(reused.participant, reused.source_frame))]
    assert not source.reused.any() and (reused.source_frame.to_numpy() < reused.frame.to_numpy()).all()
    assert np.array_equal(source[list(CLASSES)].to_numpy(), reused[list(CLASSES)].to_numpy())
    assert source.label.tolist() == reused.label.tolist()
    # a computed row saw the same crop as classify-all's row of that keyframe
    np.testing.assert_allclose(computed[list(CLASSES)], every.loc[computed.index, list(CLASSES)], atol=1e-5)
    r = summary['readings']
    assert (r['classify_all'], r['computed'], r['reused']) == (False, len(computed), len(reused))
    assert sum(r['reasons'].values()) == len(computed) and r['reasons']['new'] == 1
    assert r['refresh'] == 0.5 and summary['settings']['refresh'] == 0.5
    # never more than --refresh seconds between a reused row and the reading it takes
    times = changed.set_index('frame').time
    assert (reused.time.to_numpy() - times.loc[reused.source_frame].to_numpy()).max() < 0.5
    assert f"readings: {len(computed)} computed, {len(reused)} reused" in stdout


def test_classify_all_computes_every_row(readings):
    every, summary, stdout = readings['all']
    assert len(every) == 20 and not every.reused.any() and (every.source_frame == every.frame).all()
    r = summary['readings']
    assert (r['classify_all'], r['computed'], r['reused'], r['reasons']) == (True, 20, 0, None)
    assert summary['settings']['classify_all'] is True and 'readings:' not in stdout
    assert summary['faces'] == readings['changed'][1]['faces'] == 20  # the shares count every keyframe either way
