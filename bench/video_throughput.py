"""Throughput of the video analysis at the paper's 224 px, fp32 against the fast path (a benchmark, not a test).

For each demo video and each precision (`fp32`: PyTorch's, the reference; `fast`: the default, see
fer_study.inference): the wall time of the whole analysis against the video's duration (real-time factor) and
against decoding the same video alone with the same FFmpeg (the floor), the time per stage, the ms per face, and
how far the fast path's labels and emotion shares are from fp32's (goal: >= 98 % of faces, every share within
1 point). The same agreement on a held-out set of synthetic faces. The model is a 224-px DACL with untrained
weights unless --checkpoint gives one: speed does not depend on the weights; agreement is hardest untrained
(its probabilities are nearly flat).

The inputs (--inputs, any of them): `demo`, the two demo videos (single and 2x2 grid, 640x360), each at the scene
threshold and at a fixed rate; `long`, a longer single-face 640x360 recording with the webcam look (whose frames
differ as a real webcam's do, so the seed threshold keeps most of them), at the threshold only; `gallery`, a 4x4
video-call gallery at 1920x1080, at the fixed rate only. Every input carries its ground truth, so each also says
which share of the visible faces the analysis found (a found box overlapping a true one with IoU >= 0.3, at the
analysed frames). The generated inputs say how long they took to render.

    .venv/bin/python bench/video_throughput.py                    # 224 px, threshold 0.003, then 2 keyframes/s
    .venv/bin/python bench/video_throughput.py --inputs long,gallery --long-duration 30
    .venv/bin/python bench/video_throughput.py --candidates       # per-face ms and agreement of each CPU path
    .venv/bin/python bench/video_throughput.py --device cuda      # on a machine with a GPU
"""
import argparse
import copy
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fer_study.core import CLASSES
from fer_study.faces import face_detector, landmark_predictor
from fer_study.inference import FaceInference, LogitsNet
from fer_study.keyframes import ffmpeg_exe, select_keyframes
from fer_study.model import load_model
from fer_study.rafdb import center_crop, normalize, resize_face
from fer_study.render import sample_face
from fer_study.settings import VideoSettings
from fer_study.synth import make_demo_video, make_gallery_video, truth_paths
from fer_study.testing import demo_checkpoint
from fer_study.video import BOX_COLUMNS, analyze_video

STAGES = ('decode+select', 'detect', 'align', 'classify')
INPUTS = ('demo', 'long', 'gallery')
MIN_IOU = 0.3


def decode_alone(video: Path) -> float:
    "Seconds FFmpeg takes to decode every frame of `video` and throw it away: the floor of any analysis."
    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), '-nostdin', '-v', 'error', '-i', str(video), '-f', 'null', '-'], check=True)
    return time.perf_counter() - start


def agreement(fast: np.ndarray, ref: np.ndarray, k: int = len(CLASSES)) -> tuple[float, float]:
    "Share of faces whose label agrees, and the largest gap between the two label shares (in points)."
    if not len(ref): return float('nan'), float('nan')
    share = lambda labels: np.bincount(labels, minlength=k) / len(labels)
    return float((fast == ref).mean()), 100 * float(np.abs(share(fast) - share(ref)).max())


def label_index(faces: pd.DataFrame) -> np.ndarray:
    return faces['label'].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()


def one_run(video: Path, engine: FaceInference, meta: dict, out: Path, settings: VideoSettings, floor: float) -> dict:
    "One timed analysis; print its line per figure."
    start = time.perf_counter()
    s = analyze_video(video, engine, meta, out, settings, progress=False)
    wall, stages, n = time.perf_counter() - start, s['timing']['stages'], max(1, s['faces'])
    print(f"  {settings.precision:<5} ({s['inference']['engine']}, batch {s['inference']['batch_size']}): "
          f"{wall:6.2f} s = {s['video']['duration'] / wall:4.2f}x real time, {wall / floor:5.1f}x the decode floor; "
          f"classify {1000 * s['timing']['model_seconds'] / n:5.1f} ms/face")
    print('        analysing thread: ' + ', '.join(f"{k} {stages.get(k, 0):.2f} s" for k in STAGES)
          + f", other {wall - sum(stages.values()):.2f} s; the model in its own thread: "
          f"{s['timing']['model_seconds']:.2f} s; detection {s['detection']}")
    return dict(wall=wall, duration=s['video']['duration'], summary=s, faces=pd.read_csv(out / 'faces.csv'),
                keyframes=pd.read_csv(out / 'keyframes.csv'))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    "Intersection over union of each box (x0, y0, x1, y1) in `a` (N, 4) with each in `b` (M, 4): (N, M)."
    lo, hi = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def truth_found(video: Path, faces: pd.DataFrame, keyframes: pd.DataFrame) -> tuple[float, int]:
    "Share of the true faces at the analysed frames that a found face overlaps (IoU >= MIN_IOU), and their number."
    truth = pd.read_csv(truth_paths(video)[0])
    truth = truth[truth['frame'].isin(keyframes['frame'])]
    found = {f: g[BOX_COLUMNS].to_numpy(float) for f, g in faces.groupby('frame')}
    hits = sum(int((iou(t[BOX_COLUMNS].to_numpy(float), found[f]).max(1) >= MIN_IOU).sum())
               for f, t in truth.groupby('frame') if f in found)
    return hits / max(1, len(truth)), len(truth)


def end_to_end(video: Path, checkpoint: Path, out: Path, settings: VideoSettings) -> float:
    "Seconds of `fer-study analyze` on `video` as a user runs it: startup, model load and ONNX export included."
    flags = ['--threshold', f'{settings.threshold:g}', '--min-gap', f'{settings.min_gap:g}',
             '--device', settings.device]
    if settings.fps: flags += ['--fps', f'{settings.fps:g}']
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name('fer-study')), 'analyze', str(video), '--model', str(checkpoint),
                    '--out', str(out), '--no-progress', *flags], check=True, capture_output=True)
    return time.perf_counter() - start


def bench(video: Path, engines: dict, meta: dict, out: Path, threshold: float, fps: float | None,
          min_gap: float | None, checkpoint: Path, device: str) -> dict:
    "Both precisions on one video, with the decode floor, their agreement and the command's end-to-end time."
    floor = min(decode_alone(video) for _ in range(2))
    settings = VideoSettings(threshold=threshold, fps=fps, min_gap=min_gap, device=device)
    mode = (f'{fps:g} keyframes/s' if fps else f'scene > {threshold:g}') + f', gap {settings.min_gap:g} s'
    print(f"\n{video.name} ({mode}): decode alone {floor:.2f} s")
    runs = {p: one_run(video, e, meta, out / p, dataclasses.replace(settings, precision=p), floor)
            for p, e in engines.items()}
    cli = end_to_end(video, checkpoint, out / 'cli', settings)
    duration = runs['fast']['duration']
    print(f"  fer-study analyze, end to end (python startup, model load, ONNX export included): {cli:.2f} s = "
          f"{duration / cli:.2f}x real time")
    s = runs['fp32']['summary']
    print(f"  {s['video']['duration']:.1f} s video, {s['keyframes']['frames_decoded']} frames, "
          f"{s['keyframes']['keyframes']} keyframes, {s['faces']} faces")
    agree, gap = agreement(label_index(runs['fast']['faces']), label_index(runs['fp32']['faces']))
    print(f"  fast vs fp32: labels agree on {agree:.1%} of faces, largest share gap {gap:.2f} points")
    found, visible = truth_found(video, runs['fp32']['faces'], runs['fp32']['keyframes'])
    print(f"  faces found: {found:.1%} of the {visible} true faces visible at the analysed frames (IoU >= {MIN_IOU})")
    return dict(video=video.name, mode=mode, agree=agree, gap=gap, found=found, cli=duration / cli,
                **{p: r['duration'] / r['wall'] for p, r in runs.items()})


def synthetic_faces(meta: dict, n: int, seed: int) -> torch.Tensor:
    "`n` held-out synthetic faces, all emotions in turn, as the uint8 crops the classifier takes."
    rng = np.random.default_rng(seed)
    return torch.stack([resize_face(np.asarray(sample_face(CLASSES[i % 7], rng)), meta['resize']) for i in range(n)])


def per_face_ms(fn, x, repeats: int = 3) -> float:
    with torch.inference_mode():
        fn(x)
        return 1000 * min(_timed(fn, x) for _ in range(repeats)) / len(x)


def _timed(fn, x) -> float:
    start = time.perf_counter(); fn(x)
    return time.perf_counter() - start


def candidates(model, meta: dict, faces: torch.Tensor, batch: int) -> None:
    "Per-face ms and agreement with fp32 of each CPU path considered for the fast one."
    from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    warnings.filterwarnings('ignore')
    prep = lambda u8: normalize(center_crop(u8, meta['input_size']), meta['mean'], meta['std'])
    x, calib = prep(faces[:batch]), prep(faces[batch:])
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)
    logits = LogitsNet(model)
    logits_cl = copy.deepcopy(logits).to(memory_format=torch.channels_last)
    full_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    dyn = quantize_dynamic(copy.deepcopy(full_cl), {torch.nn.Linear}, dtype=torch.qint8)
    static = prepare_fx(copy.deepcopy(logits), get_default_qconfig_mapping('x86'), example_inputs=(calib[:2],))
    with torch.inference_mode(): static(calib)  # calibrated on other synthetic faces than those measured
    static = convert_fx(static)
    ort = FaceInference(model, meta, 'cpu', 'fast', batch)
    def bf16(t):
        with torch.autocast('cpu', dtype=torch.bfloat16): return logits_cl(cl(t)).float()
    paths = {'DACL fp32 (whole model, as before)': lambda t: model(t)[1],
             'DACL fp32 channels-last': lambda t: full_cl(cl(t))[1],
             'DACL channels-last + dynamic int8 Linear': lambda t: dyn(cl(t))[1],
             'logits only, fp32': logits,
             'logits only, fp32 channels-last (--precision fp32)': lambda t: logits_cl(cl(t)),
             'logits only, bf16 autocast channels-last': bf16,
             'logits only, static int8 (FX, x86)': static,
             'logits only, ONNX Runtime fp32 (fast)': lambda t: ort.session.run(None, {'x': t.numpy()})[0]}
    with torch.inference_mode(): ref = logits_cl(cl(x)).argmax(1).numpy()
    print(f"\nCPU paths, 224-px DACL, {len(x)} synthetic faces a batch, {torch.get_num_threads()} threads, CPU "
          f"capability {torch.backends.cpu.get_cpu_capability()}:")
    print(f"  {'path':<52} {'ms/face':>8} {'agree':>7} {'share gap':>10}")
    for name, fn in paths.items():
        ms = per_face_ms(fn, x)
        with torch.inference_mode(): labels = np.asarray(torch.as_tensor(fn(x)).argmax(1))
        agree, gap = agreement(labels, ref)
        print(f"  {name:<52} {ms:8.1f} {agree:7.1%} {gap:8.2f} pt", flush=True)


def rendered(make, *args, **kw) -> Path:
    "A generated input, saying how long it took to render."
    start = time.perf_counter()
    video = make(*args, **kw)
    print(f"rendered {video.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return video


def make_inputs(names: list[str], d: Path, args) -> list[tuple[Path, tuple]]:
    "Inputs named in `names`, each with its passes (fps, None: scene threshold; min_gap, 0: the seed's, None: default)."
    rate = args.fps or 2.0
    seed, default = (None, 0.0), (None, None)
    inputs = []
    if 'demo' in names:
        inputs += [(make_demo_video(d / f'{layout}.mp4', layout, seed=0, duration=args.duration),
                    (seed, (args.fps, None)) if args.fps else (seed,)) for layout in ('single', 'grid')]
    if 'long' in names:
        inputs.append((rendered(make_demo_video, d / 'long-webcam.mp4', 'single', seed=0, duration=args.long_duration,
                                webcam=True), (seed, default)))
    if 'gallery' in names:
        rows, cols = args.gallery
        inputs.append((rendered(make_gallery_video, d / f'gallery{rows}x{cols}.mp4', rows, cols, args.gallery_size,
                                seed=0, duration=args.gallery_duration, fps=args.gallery_render_fps),
                       ((rate, None),)))
    return inputs


def pair(text: str) -> tuple[int, int]:
    "'4x4' -> (4, 4)."
    try: a, b = (int(v) for v in text.lower().split('x'))
    except ValueError: raise argparse.ArgumentTypeError(f"expected two whole numbers like 4x4, got {text!r}")
    return a, b


def input_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(',') if n.strip()]
    unknown = sorted(set(names) - set(INPUTS))
    if unknown or not names: raise argparse.ArgumentTypeError(f"inputs are some of {','.join(INPUTS)}, got {text!r}")
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--inputs', type=input_names, default=list(INPUTS),
                    help=f"comma-separated inputs to analyse, of {','.join(INPUTS)} (default: all)")
    ap.add_argument('--duration', type=float, default=12.0, help='seconds of each demo video (default 12)')
    ap.add_argument('--long-duration', type=float, default=90.0,
                    help='seconds of the long single-face recording with the webcam look (default 90)')
    ap.add_argument('--gallery', type=pair, default=(4, 4), help='rows x columns (default 4x4)')
    ap.add_argument('--gallery-size', type=pair, default=(1920, 1080),
                    help='frame size of the gallery (default 1920x1080)')
    ap.add_argument('--gallery-duration', type=float, default=12.0, help='seconds of the gallery (default 12)')
    ap.add_argument('--gallery-render-fps', type=int, default=10,
                    help='frames a second the gallery is rendered at (default 10: about 1 s to render a 4x4 frame)')
    ap.add_argument('--fps', type=float, default=2.0,
                    help='keyframes/s of the fixed-rate passes: the demo videos\' second pass (0: skip it) and the '
                         "gallery's only pass (at 2 when 0)")
    ap.add_argument('--threshold', type=float, default=0.003)
    ap.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch decides)')
    ap.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    ap.add_argument('--checkpoint', type=Path, help='a trained checkpoint instead of an untrained 224-px DACL')
    ap.add_argument('--faces', type=int, default=128, help='held-out synthetic faces for the agreement (default 128)')
    ap.add_argument('--candidates', action='store_true', help='time every CPU path considered, then stop')
    args = ap.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    print(f"CPU cores: {os.cpu_count()}, torch threads: {torch.get_num_threads()}, load average before: "
          f"{os.getloadavg()[0]:.1f} (other processes skew every figure), device: {args.device}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        checkpoint = args.checkpoint or demo_checkpoint(d / 'demo.pt', input_size=224, resize=256)
        model, meta = load_model(checkpoint)
        print(f"model: {args.checkpoint or 'untrained DACL'}, input {meta['input_size']} px (resize {meta['resize']})")
        faces = synthetic_faces(meta, args.faces + 32, seed=12345)
        if args.candidates: return candidates(model, meta, faces, min(args.faces, 32))
        start = time.perf_counter()
        engines = {p: FaceInference(model, meta, args.device, p) for p in ('fp32', 'fast')}
        print(f"one-off: the two classifiers made in {time.perf_counter() - start:.1f} s (export to ONNX included)")
        held_out = faces[:args.faces]
        probs = {p: e(held_out) for p, e in engines.items()}
        agree, gap = agreement(probs['fast'].argmax(1).numpy(), probs['fp32'].argmax(1).numpy())
        print(f"held-out synthetic faces ({len(held_out)}): fast vs fp32 labels agree on {agree:.1%}, largest share "
              f"gap {gap:.2f} points, largest probability gap {float((probs['fast'] - probs['fp32']).abs().max()):.1e}")
        for p, e in engines.items():
            print(f"  {p:<5} {e.engine:<28} {per_face_ms(e, held_out[:32], repeats=2):6.1f} ms/face (classifier alone)")
        face_detector(); landmark_predictor()
        rows = [bench(v, engines, meta, d / 'out' / f'{v.stem}-{fps}-{gap}', args.threshold, fps, gap, checkpoint,
                      args.device)
                for v, passes in make_inputs(args.inputs, d, args) for fps, gap in passes]
    print('\nsummary (real-time factor = video seconds per analysis second; goals: single face at the seed threshold '
          '(gap 0) >= 2x end to end, 4x4 gallery at 2 keyframes/s >= 1x)')
    for r in rows:
        print(f"  {r['video']:<18} {r['mode']:<24} fp32 {r['fp32']:5.2f}x, fast {r['fast']:5.2f}x, "
              f"end to end (fast) {r['cli']:5.2f}x real time; "
              f"labels agree {r['agree']:.1%}, largest share gap {r['gap']:.2f} points; faces found {r['found']:.1%}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == '__main__':
    main()
