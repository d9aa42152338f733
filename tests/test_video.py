"""Video analysis on bad input: each a clear FerStudyError naming the file, and nothing left that looks complete."""
import errno
import json
import os
import re
import resource
import shutil
import subprocess

import pandas as pd
import pytest

from fer_study.core import FerStudyError
from fer_study.keyframes import VideoError, ffmpeg_exe
from fer_study.settings import VideoSettings
from fer_study.testing import BAD_VIDEOS, demo_checkpoint, make_bad_videos, make_test_video
from fer_study.synth import make_demo_video
from fer_study.cli import main
from fer_study.video import analyze_videos, format_summary


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), '-nostdin', '-v', 'error', '-y', *map(str, args)], check=True)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('video')
    ckpt = demo_checkpoint(d / 'demo.pt')
    clip = make_test_video(d / 'clip.mp4', 'testsrc=size=320x240:rate=25:duration=2')
    make_bad_videos(d, clip)
    make_test_video(d / 'blank.mp4', 'color=c=gray:s=320x240:r=25:d=1')
    demo = make_demo_video(d / 'demo.mp4', 'single', seed=3, duration=2)
    # A phone held upright: the picture is portrait, stored as landscape frames turned a quarter, plus a display rotation.
    ffmpeg('-i', demo, '-vf', 'crop=288:360', '-c:v', 'libx264', '-preset', 'ultrafast', d / 'portrait.mp4')
    ffmpeg('-i', d / 'portrait.mp4', '-vf', 'transpose=1', '-c:v', 'libx264', '-preset', 'ultrafast', d / 'stored.mp4')
    ffmpeg('-display_rotation', 90, '-i', d / 'stored.mp4', '-c', 'copy', d / 'phone.mp4')
    return d, ckpt


def leftovers(out):
    "Everything under the output folder (hidden temporaries included)."
    return sorted(p.name for p in out.rglob('*')) if out.exists() else []


@pytest.mark.parametrize('name, message', BAD_VIDEOS.items())
def test_bad_video_fails_naming_the_file_and_leaves_nothing(files, tmp_path, name, message):
    d, ckpt = files
    out = tmp_path / 'out'
    with pytest.raises(VideoError, match=rf'{name}: {re.escape(message)}') as err:
        analyze_videos([d / name], ckpt, out, progress=False)
    assert isinstance(err.value, FerStudyError) and str(d / name) in str(err.value)
    assert leftovers(out) == []


def test_failure_midway_keeps_the_previous_result(files, tmp_path):
    d, ckpt = files
    out = tmp_path / 'out'
    analyze_videos([d / 'blank.mp4'], ckpt, out, progress=False)
    before = (out / 'blank' / 'summary.json').read_text()
    (tmp_path / 'blank.mp4').write_bytes((d / 'cut.mp4').read_bytes())  # same stem, now damaged: fails during decoding
    with pytest.raises(VideoError, match='truncated or corrupt video'):
        analyze_videos([tmp_path / 'blank.mp4'], ckpt, out, progress=False)
    assert leftovers(out) == ['blank', 'faces.csv', 'keyframes.csv', 'summary.json']
    assert (out / 'blank' / 'summary.json').read_text() == before


def test_a_bad_file_among_good_ones_fails_before_any_work(files, tmp_path):
    d, ckpt = files
    with pytest.raises(VideoError, match='notes.mp4: not a video'):
        analyze_videos([d / 'blank.mp4', d / 'notes.mp4'], ckpt, tmp_path / 'out', progress=False)
    assert not (tmp_path / 'out').exists()


def test_missing_checkpoint_is_named(files, tmp_path):
    d, _ = files
    with pytest.raises(FerStudyError, match='nope.pt: checkpoint not found'):
        analyze_videos([d / 'blank.mp4'], tmp_path / 'nope.pt', tmp_path / 'out', progress=False)


def test_no_faces_is_a_valid_empty_result(files, tmp_path):
    d, ckpt = files
    [s] = analyze_videos([d / 'blank.mp4'], ckpt, tmp_path / 'out', progress=False)
    assert (s['faces_found'], s['faces'], s['overall']['share_time_weighted']) == (False, 0, None)
    assert 'no faces were found' in s['message'] and 'no faces were found' in format_summary(s)
    assert json.loads((tmp_path / 'out' / 'blank' / 'summary.json').read_text()) == s
    assert (tmp_path / 'out' / 'blank' / 'faces.csv').read_text().startswith('video,time,frame,span,participant,')


@pytest.mark.parametrize('name, rotation', [('portrait.mp4', 0), ('phone.mp4', 90)])
def test_portrait_and_rotated_video_is_analysed_upright(files, tmp_path, name, rotation):
    d, ckpt = files
    [s] = analyze_videos([d / name], ckpt, tmp_path / 'out', VideoSettings(fps=4), progress=False)
    assert (s['video']['width'], s['video']['height'], s['video']['rotation'] % 180) == (288, 360, rotation % 180)
    assert (s['keyframes']['frame_width'], s['keyframes']['frame_height']) == (288, 360)
    assert s['keyframes']['with_faces'] == s['keyframes']['keyframes'] == 8  # the frontal detector sees the face upright
    assert s['participants_seen'] == 1


def test_bad_settings_are_named(files, tmp_path):
    d, ckpt = files
    for kw, msg in [({'fps': 0}, r'fps \(--fps\) must be a positive'), ({'conf_threshold': 2}, 'conf_threshold'),
                    ({'window': -1}, 'window')]:
        with pytest.raises(FerStudyError, match=msg): VideoSettings(**kw)


@pytest.mark.parametrize('flags, message', [
    (['--threshold', 'nan'], 'threshold (--threshold) must be a number in [0, 1]'),
    (['--threshold', '-1'], 'threshold (--threshold) must be a number in [0, 1]'),
    (['--threshold', '2'], 'threshold (--threshold) must be a number in [0, 1]'),
    (['--window', 'inf'], 'window (--window) must be a positive, finite number'),
    (['--window', '1e-9'], 'makes 1,000,000,000 windows over 1.0 s; at most 100,000'),
])
def test_bad_settings_on_the_command_line_exit_2_before_any_output(files, tmp_path, capsys, flags, message):
    d, ckpt = files
    out = tmp_path / 'out'
    assert main(['analyze', str(d / 'blank.mp4'), '--model', str(ckpt), '--out', str(out), '--no-progress', *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cuda_asked_for_and_absent_exits_2_naming_the_flag(files, tmp_path, capsys, monkeypatch):
    d, ckpt = files
    monkeypatch.setattr('torch.cuda.is_available', lambda: False)
    out = tmp_path / 'out'
    assert main(['analyze', str(d / 'demo.mp4'), '--model', str(ckpt), '--out', str(out), '--device', 'cuda']) == 2
    assert "error: device (--device) is 'cuda' but no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_fast_path_agrees_with_fp32_and_is_recorded(files, tmp_path):
    d, ckpt = files
    runs = {p: analyze_videos([d / 'demo.mp4'], ckpt, tmp_path / p, VideoSettings(fps=4, device='cpu', precision=p),
                              progress=False)[0] for p in ('fast', 'fp32')}
    assert runs['fast']['inference'] == dict(device='cpu', precision='fast', engine='onnxruntime fp32', batch_size=64)
    assert runs['fp32']['inference']['engine'] == 'torch fp32 channels-last'
    fast, ref = (pd.read_csv(tmp_path / p / 'demo' / 'faces.csv')['label'].tolist() for p in ('fast', 'fp32'))
    assert len(ref) > 4 and fast == ref


def test_a_tiny_video_is_refused_with_its_size(files, tmp_path, capsys):
    d, ckpt = files
    for side in (1, 2):  # refused by size, not by a traceback (4:4:4 chroma: x264 takes odd sizes only so)
        video = tmp_path / f'tiny{side}.mp4'
        ffmpeg('-f', 'lavfi', '-i', f'color=c=gray:s={side}x{side}:r=25:d=1', '-pix_fmt', 'yuv444p', '-c:v', 'libx264', video)
        assert main(['analyze', str(video), '--model', str(ckpt), '--out', str(tmp_path / 'out')]) == 2
        assert 'too small to hold a face' in capsys.readouterr().err


def test_output_folder_keeps_the_users_files(files, tmp_path):
    d, ckpt = files
    out = tmp_path / 'out'
    (out / 'blank' / 'sub').mkdir(parents=True)
    (out / 'blank' / 'important.txt').write_text('mine')
    (out / 'blank' / 'sub' / 'thesis.tex').write_text('mine too')
    for _ in range(2): analyze_videos([d / 'blank.mp4'], ckpt, out, progress=False)
    assert leftovers(out) == ['blank', 'faces.csv', 'important.txt', 'keyframes.csv', 'sub', 'summary.json', 'thesis.tex']
    assert (out / 'blank' / 'sub' / 'thesis.tex').read_text() == 'mine too'


def test_output_folder_run_in_a_folder_of_the_same_name_deletes_nothing(files, tmp_path, monkeypatch):
    d, ckpt = files
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'keep.csv').write_text('precious')
    video = tmp_path / 'elsewhere' / 'data.mp4'
    video.parent.mkdir()
    video.write_bytes((d / 'blank.mp4').read_bytes())
    monkeypatch.chdir(tmp_path)
    assert main(['analyze', str(video), '--model', str(ckpt), '--out', '.', '--no-progress']) == 0
    assert (tmp_path / 'data' / 'keep.csv').read_text() == 'precious'
    assert (tmp_path / 'data' / 'summary.json').exists()


def test_symlinked_output_folder_stays_a_symlink(files, tmp_path):
    d, ckpt = files
    real, out = tmp_path / 'real', tmp_path / 'out'
    real.mkdir(); out.mkdir()
    (out / 'blank').symlink_to(real)
    analyze_videos([d / 'blank.mp4'], ckpt, out, progress=False)
    assert (out / 'blank').is_symlink() and (real / 'summary.json').exists()
    assert sorted(p.name for p in out.iterdir()) == ['blank'] and sorted(p.name for p in real.iterdir()) == [
        'faces.csv', 'keyframes.csv', 'summary.json']


@pytest.mark.parametrize('where', ['file', 'unwritable'])
def test_unusable_out_fails_before_decoding(files, tmp_path, capsys, monkeypatch, where):
    d, ckpt = files
    out = tmp_path / 'a_file' if where == 'file' else tmp_path / 'ro'
    if where == 'file': out.write_text('x')
    else:  # root writes into a read-only folder, so make the folder one that cannot be created
        (tmp_path / 'ro').write_text('x'); out = tmp_path / 'ro' / 'deeper'
    import fer_study.video as video
    monkeypatch.setattr(video, 'select_keyframes', lambda *a, **k: pytest.fail('decoding started'))
    assert main(['analyze', str(d / 'blank.mp4'), '--model', str(ckpt), '--out', str(out)]) == 2
    assert 'output folder is not writable' in capsys.readouterr().err


def test_4k_video_streams_downscaled_frames(files, tmp_path):
    d, ckpt = files
    uhd = tmp_path / 'uhd.mp4'
    ffmpeg('-i', d / 'demo.mp4', '-vf', 'scale=3840:2160', '-c:v', 'libx264', '-preset', 'ultrafast', uhd)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; ffmpeg's own memory is its process's
    [s] = analyze_videos([uhd], ckpt, tmp_path / 'out', VideoSettings(fps=25), progress=False)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert (s['video']['width'], s['video']['height']) == (3840, 2160)
    assert (s['keyframes']['frame_width'], s['keyframes']['frame_height']) == (1920, 1080)
    assert s['keyframes']['keyframes'] == s['keyframes']['frames_decoded'] == 50  # every frame went through
    assert s['keyframes']['with_faces'] == 50
    # holding the decoded video would take 50 x 3840 x 2160 x 3 bytes = 1.2 GiB
    assert grown_mib < 300, f"peak memory grew by {grown_mib:.0f} MiB"


def analyze_cli(videos, ckpt, out, *flags) -> int:
    return main(['analyze', *map(str, [*videos, '--model', ckpt, '--out', out, '--fps', 2, '--no-progress', *flags])])


def test_the_truth_beside_a_video_scores_its_reading(files, tmp_path, capsys):
    d, ckpt = files
    assert analyze_cli([d / 'demo.mp4'], ckpt, tmp_path / 'out') == 0
    out = capsys.readouterr().out
    assert 'TRUTH (demo.truth.csv): 4 of 4 faces found (100.0%), 0 spurious; labels agree on ' in out, out
    truth = json.loads((tmp_path / 'out' / 'demo' / 'summary.json').read_text())['truth']
    assert truth['file'] == str(d / 'demo.truth.csv') and sum(truth['share_truth'].values()) == pytest.approx(1)
    assert sum(n for row in truth['confusion'].values() for n in row.values()) == truth['agreement']['faces'] == 4
    own = tmp_path / 'labels.csv'  # the same truth under another name, given with --truth
    own.write_text((d / 'demo.truth.csv').read_text())
    assert analyze_cli([d / 'demo.mp4'], ckpt, tmp_path / 'own', '--truth', own) == 0
    again = json.loads((tmp_path / 'own' / 'demo' / 'summary.json').read_text())['truth']
    assert again == {**truth, 'file': str(own)}


@pytest.mark.parametrize('case', ['another video', 'malformed', 'two videos', 'missing'])
def test_a_truth_that_cannot_score_the_video_is_one_line_naming_the_files(files, tmp_path, capsys, case):
    d, ckpt = files
    demo, bad, other = d / 'demo.mp4', tmp_path / 'bad.csv', tmp_path / 'other.truth.csv'
    bad.write_text('frame,time,participant,x0,y0,x1,y1,emotion\n0,0,P1,10,20,60,80,Neutral\n1,0,P1,10,20,60,80,Joy\n')
    if case == 'another video': make_demo_video(tmp_path / 'other.mp4', 'single', seed=4, duration=2)
    videos, truth, message = {
        'another video': ([demo], other, f"{demo}: the truth file {other} is another video's: the truth's participants "
                                         "(P1) are those of the generated call layout single, seed 4; the video is the "
                                         "call layout single, seed 3"),
        'malformed': ([demo], bad, f"{demo}: {bad}:3: emotion 'Joy' is not one of Surprise, "),
        'two videos': ([d / 'blank.mp4', demo], bad, f"--truth {bad}: one truth file for 2 videos"),
        'missing': ([demo], tmp_path / 'nope.csv', f"{tmp_path / 'nope.csv'}: truth file not found"),
    }[case]
    assert analyze_cli(videos, ckpt, tmp_path / 'out', '--truth', truth) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'error: {message}') and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'out').exists(), 'nothing written'


FAST = ['--fps', '1', '--no-progress']


def test_names_that_would_climb_out_of_out_stay_inside_it(files, tmp_path, capsys):
    """Issue 19, class 4: a video's name becomes a folder inside --out, whatever it is; the summary maps the two."""
    d, ckpt = files
    src, place = tmp_path / 'src', tmp_path / 'place'
    src.mkdir(), place.mkdir()
    names = {'...mp4': '__', '..mp4': '_', '\x1b[2Jclear.mp4': '_[2Jclear', 'x' * 200 + '.mp4': 'x' * 100}
    for name in names: shutil.copy(d / 'blank.mp4', src / name)
    for n in ('faces.csv', 'keyframes.csv', 'summary.json'): (place / n).write_text('mine')  # the parent of --out
    out = place / 'out'
    assert main(['analyze', *(str(src / n) for n in names), '--model', str(ckpt), '--out', str(out), *FAST]) == 0
    assert sorted(p.name for p in place.iterdir()) == ['faces.csv', 'keyframes.csv', 'out', 'summary.json']
    assert all((place / n).read_text() == 'mine' for n in ('faces.csv', 'keyframes.csv', 'summary.json'))
    assert sorted(p.name for p in out.iterdir()) == sorted(names.values())
    for name, folder in names.items():
        summary = json.loads((out / folder / 'summary.json').read_text())
        assert (summary['video']['name'], summary['source']['folder']) == (name, folder)  # the mapping, both ways
    capsys.readouterr()
    for command in ('analyze', 'report'):  # a name given for the folder must be one already (the DVC stage's key)
        argv = [command, str(src / '...mp4'), '--model', str(ckpt), '--out', str(tmp_path / 'o'), '--name', '..']
        assert main(argv) == 2
        assert capsys.readouterr().err == "error: --name '..' is not a folder name (it could be '__')\n"
    assert not (tmp_path / 'o').exists()


def test_a_later_run_never_writes_over_another_videos_results(files, tmp_path, capsys):
    """Issue 19, class 5: a folder holds one source's results; another video of the same name gets its own."""
    d, ckpt = files
    a, b, out = tmp_path / 'a' / 'talk.mp4', tmp_path / 'b' / 'talk.mp4', tmp_path / 'out'
    for video, clip in ((a, 'blank.mp4'), (b, 'clip.mp4')):
        video.parent.mkdir()
        shutil.copy(d / clip, video)
    analyze = lambda *args: main(['analyze', *map(str, args), '--model', str(ckpt), '--out', str(out), *FAST])
    source = lambda folder: json.loads((out / folder / 'summary.json').read_text())['source']['path']
    assert analyze(a) == 0
    kept = {p.name: p.read_bytes() for p in (out / 'talk').iterdir()}
    assert analyze(b) == 0  # a later run: talk/ is a's, so b's results go to talk-2/
    assert {p.name: p.read_bytes() for p in (out / 'talk').iterdir()} == kept
    assert (source('talk'), source('talk-2')) == (str(a), str(b))
    assert analyze(b, a) == 0  # both again, in the other order: each back to its own folder, nothing new
    assert sorted(p.name for p in out.iterdir()) == ['talk', 'talk-2']
    assert (source('talk'), source('talk-2')) == (str(a), str(b))
    capsys.readouterr()
    assert analyze(b, '--name', 'talk') == 2  # a folder named for it that holds another's results: refused
    assert capsys.readouterr().err == (f"error: {out / 'talk'}: holds the results of {a}; give another --name, "
                                       "or move that folder\n")
    assert source('talk') == str(a)


def test_a_full_disk_is_one_line_per_video_and_the_next_is_still_tried(files, small_disk, capsys):
    """Issue 19, class 8, on a real full disk (a small tmpfs): exit 2, each video named, nothing half-written."""
    d, ckpt = files
    videos, out = [d / 'blank.mp4', d / 'clip.mp4'], small_disk.path / 'out'
    small_disk.fill(8192)  # two pages: room for a table or two, never for the whole set
    assert main(['analyze', *map(str, videos), '--model', str(ckpt), '--out', str(out), *FAST]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {v}: {out / v.stem}: cannot write faces.csv, keyframes.csv, summary.json there (No space left on "
        "device); nothing there was changed" for v in videos]
    assert leftovers(out) == []


def test_every_kind_of_write_error_is_one_line_and_the_next_video_is_still_tried(files, tmp_path, capsys, monkeypatch):
    """Issue 19, class 8, the other write errors (over quota, read-only, I/O), raised where the tables are written."""
    d, ckpt = files
    videos, out = [d / 'blank.mp4', d / 'clip.mp4', d / 'demo.mp4'], tmp_path / 'out'
    codes = [errno.EDQUOT, errno.EROFS, errno.EIO]
    failures = iter(codes)
    def disk_fails(self, *args, **kw):
        code = next(failures)
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(pd.DataFrame, 'to_csv', disk_fails)
    assert main(['analyze', *map(str, videos), '--model', str(ckpt), '--out', str(out), *FAST]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {v}: {out / v.stem}: cannot write faces.csv, keyframes.csv, summary.json there ({os.strerror(c)}); "
        "nothing there was changed" for v, c in zip(videos, codes)]
    assert leftovers(out) == []
