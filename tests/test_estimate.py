"""The cost estimate against the real keyframe pass: fixed-rate counts, exact counts when the sample is the whole video,
the same errors as the analysis for bad files, and the printed lines for a long video."""
import io
import re

import pytest

import fer_study.estimate as estimate
from fer_study.estimate import alternative_settings, announce_cost, estimate_cost
from fer_study.inference import FaceInference
from fer_study.keyframes import VideoError, select_keyframes
from fer_study.model import load_model
from fer_study.settings import VideoSettings
from fer_study.testing import BAD_VIDEOS, demo_checkpoint, make_bad_videos, make_test_video


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('estimate')
    model, meta = load_model(demo_checkpoint(d / 'demo.pt'))
    engine = FaceInference(model, meta, 'cpu', 'fp32')
    noisy = make_test_video(d / 'noisy.mp4', 'testsrc=size=96x64:rate=25:duration=12,noise=alls=12:allf=t')
    make_bad_videos(d, noisy)
    return d, engine, noisy


def count(path, s: VideoSettings) -> int:
    return sum(1 for _ in select_keyframes(path, s.threshold, s.fps, s.min_gap, max_width=32))


def test_fixed_rate_prediction_matches_the_pass(files):
    d, engine, noisy = files
    s = VideoSettings(fps=7, min_gap=0.2)  # a rate that does not divide 25 frames a second, and a gap
    est = estimate_cost(noisy, s, engine, seconds=4, chunks=4)  # a sample of a third of the video
    assert not est.exact and est.sampled_seconds < 5
    assert abs(est.keyframes - count(noisy, s)) <= 1
    alternatives = dict(alternative_settings(s))
    assert [p.flags for p in est.alternatives][:2] == ['--fps 2', '--fps 1']
    for plan in est.alternatives:
        if plan.flags.startswith('--fps'): assert abs(plan.keyframes - count(noisy, alternatives[plan.flags])) <= 1


@pytest.mark.parametrize('kw', [dict(), dict(threshold=0.002, min_gap=0)])
def test_a_sample_of_the_whole_video_counts_exactly(files, kw):
    d, engine, noisy = files
    s = VideoSettings(**kw)
    est = estimate_cost(noisy, s, engine)
    assert est.exact and est.keyframes == count(noisy, s)
    assert {p.flags for p in est.alternatives} >= {'--fps 2', '--fps 1'}
    assert [p.keyframes for p in est.alternatives if p.flags == '--fps 1'] == [12]


@pytest.mark.parametrize('name', [n for n in BAD_VIDEOS if n != 'cut.mp4'])  # cut.mp4 fails mid-decode, in the run
def test_bad_video_fails_as_the_analysis_does(files, name):
    d, engine, _ = files
    with pytest.raises(VideoError, match=rf'{re.escape(str(d / name))}: {re.escape(BAD_VIDEOS[name])}'):
        estimate_cost(d / name, VideoSettings(), engine)


def test_announce_prints_for_a_long_video_only(files, monkeypatch):
    d, engine, noisy = files
    out = io.StringIO()
    assert announce_cost(noisy, VideoSettings(), engine, file=out) is None and out.getvalue() == ''
    monkeypatch.setattr(estimate, 'ESTIMATE_FROM_SECONDS', 10.0)
    est = announce_cost(noisy, VideoSettings(), engine, file=out)
    first = out.getvalue().splitlines()[0]
    assert first.startswith('noisy.mp4: 12 s; at scene > 0.003, 0.5 s apart exactly ')
    assert f'exactly {est.keyframes} keyframes x 0.0 faces' in first
    assert '--fps 2' in out.getvalue()
