"""Throughput of the video analysis at the paper's 224 px, fp32 against the fast path (a benchmark, not a test).

For each demo video and each precision (`fp32`: PyTorch's, the reference; `fast`: the default, see
fer_study.inference): the wall time of the whole analysis against the video's duration (real-time factor) and
against decoding the same video alone with the same FFmpeg (the floor), the time per stage, the ms per face, and
how far the fast path's labels and emotion shares are from fp32's (goal: >= 98 % of faces, every share within
1 point). The same agreement on a held-out set of synthetic faces. The model is a 224-px DACL with untrained
weights unless --checkpoint gives one: speed does not depend on the weights; agreement is hardest untrained
(its probabilities are nearly flat).

    .venv/bin/python bench/video_throughput.py                    # 224 px, threshold 0.003, then 2 keyframes/s
    .venv/bin/python bench/video_throughput.py --candidates       # per-face ms and agreement of each CPU path
    .venv/bin/python bench/video_throughput.py --device cuda      # on a machine with a GPU
"""
import argparse
import copy
import os
import subprocess
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
from fer_study.synth import make_demo_video
from fer_study.testing import demo_checkpoint
from fer_study.video import analyze_video

STAGES = ('decode+select', 'detect', 'align', 'classify')


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
          f"classify {1000 * stages.get('classify', 0) / n:5.1f} ms/face")
    print('        ' + ', '.join(f"{k} {stages.get(k, 0):.2f} s" for k in STAGES)
          + f", other {wall - sum(stages.values()):.2f} s")
    return dict(wall=wall, duration=s['video']['duration'], summary=s, faces=pd.read_csv(out / 'faces.csv'))


def bench(video: Path, engines: dict, meta: dict, out: Path, threshold: float, fps: float | None) -> dict:
    "Both precisions on one video, with the decode floor and their agreement."
    floor = min(decode_alone(video) for _ in range(2))
    mode = f'{fps:g} keyframes/s' if fps else f'scene > {threshold:g}'
    print(f"\n{video.name} ({mode}): decode alone {floor:.2f} s")
    runs = {p: one_run(video, e, meta, out / p, VideoSettings(threshold=threshold, fps=fps, precision=p), floor)
            for p, e in engines.items()}
    s = runs['fp32']['summary']
    print(f"  {s['video']['duration']:.1f} s video, {s['keyframes']['frames_decoded']} frames, "
          f"{s['keyframes']['keyframes']} keyframes, {s['faces']} faces")
    agree, gap = agreement(label_index(runs['fast']['faces']), label_index(runs['fp32']['faces']))
    print(f"  fast vs fp32: labels agree on {agree:.1%} of faces, largest share gap {gap:.2f} points")
    return dict(video=video.name, mode=mode, agree=agree, gap=gap,
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--duration', type=float, default=12.0, help='seconds of each demo video (default 12)')
    ap.add_argument('--fps', type=float, default=2.0, help='also run a fixed-rate pass at this many keyframes/s (0: skip)')
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
        model, meta = load_model(args.checkpoint or demo_checkpoint(d / 'demo.pt', input_size=224, resize=256))
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
        videos = [make_demo_video(d / f'{layout}.mp4', layout, seed=0, duration=args.duration)
                  for layout in ('single', 'grid')]
        rows = [bench(v, engines, meta, d / 'out' / f'{v.stem}-{fps}', args.threshold, fps)
                for v in videos for fps in ((None, args.fps) if args.fps else (None,))]
    print('\nsummary (real-time factor = video seconds per analysis second; goal: single, seed threshold >= 2x)')
    for r in rows:
        print(f"  {r['video']:<11} {r['mode']:<16} fp32 {r['fp32']:5.2f}x, fast {r['fast']:5.2f}x real time; "
              f"labels agree {r['agree']:.1%}, largest share gap {r['gap']:.2f} points")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == '__main__':
    main()
