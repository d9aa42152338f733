"""Faces through the real keyframe path: a participant who joins mid-call is found within the documented delay."""
import subprocess

import numpy as np
import pytest

from fer_study.faces import FaceFinder
from fer_study.keyframes import ffmpeg_exe, select_keyframes
from fer_study.render import Condition, background_image, draw_person, random_identity
from fer_study.settings import VideoSettings

FPS, SECONDS, JOINS = 25, 3, 1.2  # the second participant's tile shows an empty room until JOINS seconds


def tile(seed: int, person: bool, size=(320, 360)) -> np.ndarray:
    "A video-call tile: a virtual background and, if `person`, someone whose head is 60 % of its height."
    rng = np.random.default_rng(seed)
    canvas = background_image(seed, 2 * size[0], 2 * size[1])  # drawn at twice the size, then reduced
    if person: draw_person(canvas, random_identity(rng), {}, Condition(), size, 0.6 * size[1] / 1.2)
    return np.asarray(canvas.reduce(2))


def write_call(path, left: np.ndarray, empty: np.ndarray, joined: np.ndarray):
    "An H.264 call: the left participant drifts a pixel a frame throughout; the right tile fills at JOINS seconds."
    cmd = [ffmpeg_exe(), '-nostdin', '-v', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', '640x360',
           '-r', str(FPS), '-i', '-', '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-preset', 'ultrafast', str(path)]
    enc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i in range(FPS * SECONDS):
        right = joined if i >= JOINS * FPS else empty
        enc.stdin.write(np.concatenate([np.roll(left, i, axis=1), right], axis=1).tobytes())
    enc.stdin.close()
    assert enc.wait() == 0


@pytest.fixture(scope='module')
def call(tmp_path_factory):
    path = tmp_path_factory.mktemp('faces') / 'call.mp4'
    write_call(path, tile(1, True), tile(2, False), tile(2, True))
    return path


def test_participant_joining_mid_call_is_found_within_detect_every(call):
    every = 0.5
    finder, seen = FaceFinder(VideoSettings(detect_every=every)), []
    for kf in select_keyframes(call, fps=10):  # 0.1 s apart: dense, as scene changes often are
        seen.append((kf.time, [(box[0] >= 320, pid) for box, _, pid in finder(kf.image, kf.time)]))
    times = [t for t, _ in seen]
    assert len(seen) >= 25
    assert all(faces[0] == (False, 0) for _, faces in seen)  # the left participant is always found, always id 0
    first = next(t for t, faces in seen if (True, 1) in faces)
    deadline = next(t for t in times if t >= JOINS + every - 1e-6)  # detect_every late, on the next keyframe
    assert JOINS + 0.05 < first <= deadline, (first, deadline)  # late (found by a whole-frame search), not too late
    assert all(faces == [(False, 0), (True, 1)] for t, faces in seen if t >= first)  # and followed from then on
    stats = finder.stats
    assert stats['full_detections'] <= SECONDS / every + 1 + stats['lost'], stats
    assert stats['local_searches'] >= len(seen) - stats['full_detections'], stats


def test_with_scene_change_keyframes_a_joining_participant_makes_a_keyframe_and_is_found_on_it(call):
    finder = FaceFinder(VideoSettings(detect_every=0.5))
    seen = [(kf.time, len(finder(kf.image, kf.time))) for kf in select_keyframes(call, threshold=0.003)]
    assert (JOINS, 2) in seen and all(n == 1 for t, n in seen if t < JOINS), seen
