"""What slide detection costs the keyframe pass, and how well it finds the slides (issue 20).

Renders a screen-share call (`synth.make_screenshare_video`: slides changing every ~20 s on the left 70 % of a 720p
frame, a strip of three faces beside it), then times the keyframe pass that `analyze` runs (`select_keyframes` at
the default scene threshold and minimum gap, every keyframe read from the pipe) without and with the slide region,
alternating the two `--repeats` times in the same run, and prints both times, their ratio, the CPU flags, and the
slide changes found against the call's truth (found, spurious, largest offset) with the region given and with the
region that `--slides auto` finds. Then, as a user meets it, `fer-study analyze` end to end (startup included) with a
224-px checkpoint (untrained: the timing is the same) without slides, with `--slides REGION` and with `--slides auto`,
alternated `--repeats` times, beside the decode-only floor (FFmpeg decoding the file to nothing) in the same run.

The issue's goal is "slide detection adds at most 10 % to analyze's end-to-end time on a one-hour 720p call"; the
default call here is 5 minutes (rendering an hour takes hours); the keyframe pass and the added work both grow with
the number of frames, so the ratio carries over (`--slides auto` samples the first 3 minutes once: a fixed cost).

    .venv/bin/python bench/slides_overhead.py [--duration 300] [--fps 25] [--out DIR] [--loop N] [--no-analyze]
"""
import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fer_study.keyframes import ffmpeg_exe, select_keyframes
from fer_study.settings import SCENE_MIN_GAP, VideoSettings
from fer_study.slides import find_slide_region, match_changes, slide_changes
from fer_study.screen import slide_truth_path
from fer_study.synth import make_screenshare_video, truth_paths
from fer_study.testing import demo_checkpoint


def cpu_flags() -> str:
    "The CPU's avx2 / avx512_bf16 flags, as `lscpu | grep -o 'avx512_bf16\\|avx2' | sort -u` lists them."
    out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    return ' '.join(f for f in ('avx2', 'avx512_bf16') if f in out.split()) or 'neither avx2 nor avx512_bf16'


def child_cpu() -> float:
    "CPU seconds (user + system) of this process's finished children: FFmpeg's, whatever else runs on the machine."
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def keyframe_pass(video: Path, region=None) -> tuple[float, float, int, list]:
    "Wall and FFmpeg CPU seconds of one keyframe pass as analyze runs it, the keyframes kept, the region's scores."
    start, cpu = time.perf_counter(), child_cpu()
    stream = select_keyframes(video, VideoSettings.threshold, min_gap=SCENE_MIN_GAP, region=region)
    kept = sum(1 for kf in stream if kf.image[0, 0, 0] >= 0)  # touch each frame, as a reader would
    return time.perf_counter() - start, child_cpu() - cpu, kept, stream.region_scores


def looped(video: Path, times: int) -> Path:
    "The call played `times` times over, copied without re-encoding (each pass starts on a new slide)."
    out = video.with_name(f'{video.stem}-x{times}.mp4')
    if not out.exists():
        subprocess.run([ffmpeg_exe(), '-v', 'error', '-stream_loop', str(times - 1), '-i', video, '-c', 'copy', out],
                       check=True)
    return out


def timed(cmd: list) -> float:
    "Wall seconds of a command run to its end (its output kept out of the way)."
    start = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def end_to_end(video: Path, out: Path, repeats: int, screen: tuple) -> None:
    "Time `fer-study analyze` without slides, with the region and with auto, beside FFmpeg's decode-only floor."
    ckpt = demo_checkpoint(out / 'untrained-224.pt', input_size=224, resize=256)
    fer = Path(sys.executable).with_name('fer-study')
    region = ','.join(map(str, screen))
    runs = {'decode only': [ffmpeg_exe(), '-v', 'error', '-i', video, '-f', 'null', '-'],
            'analyze': [fer, 'analyze', video, '--model', ckpt, '--out', out / 'plain', '--segments', 'none'],
            f'analyze --slides {region}': [fer, 'analyze', video, '--model', ckpt, '--out', out / 'region',
                                           '--slides', region],
            'analyze --slides auto': [fer, 'analyze', video, '--model', ckpt, '--out', out / 'auto',
                                      '--slides', 'auto']}
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for name, cmd in runs.items(): times[name].append(timed(cmd))
    base = min(times['analyze'])
    for name, t in times.items():
        print(f'{name}: {min(t):.1f} s (best of {repeats}; all {[round(x, 1) for x in t]}); '
              f'ratio to analyze without slides {min(t) / base:.3f}')
    for name in ('region', 'auto'):
        block = json.loads((out / name / video.stem / 'summary.json').read_text()).get('segments', {})
        print(f"analyze --slides {name}: {len(block.get('items', []))} slides, region {block.get('region')}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--duration', type=float, default=300.0, help='seconds of call to render')
    p.add_argument('--fps', type=int, default=25)
    p.add_argument('--size', default='1280x720')
    p.add_argument('--slide-seconds', type=float, default=20.0)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--loop', type=int, default=1, help='play the rendered call this many times over (FFmpeg, no '
                   're-encoding): an hour from a few minutes of rendering')
    p.add_argument('--out', type=Path, default=None, help='folder to keep the rendered call in (reused if there)')
    p.add_argument('--no-analyze', action='store_true', help='time the keyframe pass only, not fer-study analyze')
    a = p.parse_args()
    out = a.out or Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    size = tuple(int(v) for v in a.size.split('x'))
    video = out / f'talk-{a.size}-{a.duration:g}s-{a.fps}fps.mp4'
    if not slide_truth_path(video).exists():
        start = time.perf_counter()
        make_screenshare_video(video, seed=0, duration=a.duration, size=size, fps=a.fps, slide_seconds=a.slide_seconds)
        print(f'rendered {video.name} in {time.perf_counter() - start:.0f} s')
    x0, y0, x1, y1 = json.loads(truth_paths(video)[1].read_text())['screen']
    truth = [float(r['time']) for r in csv.DictReader(open(slide_truth_path(video)))][1:]
    if a.loop > 1:
        video, truth = looped(video, a.loop), [k * a.duration + t for k in range(a.loop)
                                                                for t in [0.0, *truth]][1:]
        a.duration *= a.loop
    screen = (x0, y0, x1 - x0, y1 - y0)
    print(f'CPU: {cpu_flags()}; call: {a.duration:g} s at {a.size}, {a.fps} fps, {len(truth)} slide changes')
    plain, with_region = [], []
    for _ in range(a.repeats):
        *times, kept, _ = keyframe_pass(video)
        plain.append(times)
        *times, kept_r, scores = keyframe_pass(video, screen)
        with_region.append(times)
    assert kept == kept_r, (kept, kept_r)
    for k, what in enumerate(('wall', 'FFmpeg CPU')):
        best, best_r = min(t[k] for t in plain), min(t[k] for t in with_region)
        print(f'keyframe pass ({kept} keyframes), {what}: {best:.2f} s without the region, {best_r:.2f} s with it '
              f'(best of {a.repeats}; all: {[round(t[k], 2) for t in plain]} / '
              f'{[round(t[k], 2) for t in with_region]}); ratio {best_r / best:.3f} (+{best_r - best:.2f} s, '
              f'{(best_r - best) / a.duration * 3600:.0f} s an hour of video)')
    m = match_changes(slide_changes(scores), truth)
    print(f"slides, region given: {m['found']:.1%} found, {m['spurious']:.1%} spurious, largest offset "
          f"{m['max_offset']:.2f} s ({m['detected']} found, {m['true']} true)")
    start = time.perf_counter()
    region, why = find_slide_region(video)
    print(f'--slides auto: {why} in {time.perf_counter() - start:.1f} s (truth: {",".join(map(str, screen))})')
    if region:
        *_, scores = keyframe_pass(video, region)
        m = match_changes(slide_changes(scores), truth)
        print(f"slides, region found: {m['found']:.1%} found, {m['spurious']:.1%} spurious, largest offset "
              f"{m['max_offset']:.2f} s")
    if not a.no_analyze: end_to_end(video, out, a.repeats, screen)


if __name__ == '__main__':
    main()
