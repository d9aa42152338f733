"""Classify-all against changed-only reading, side by side in one run (issue 23).

For each recording it reads the video twice with the same engine, once classifying every face (`--classify-all`, the
seed study's reading) and once classifying only the faces that changed (the default, see fer_study.changes), and
prints: wall time and real-time factor, the model's own seconds, readings computed, label agreement with
classify-all, the largest difference of an emotion's share (per keyframe and time-weighted, in points) and the
expression changes of the truth that changed-only picks up more than one keyframe after classify-all does.

The recordings are generated with their truth: demo calls (a single webcam and a 2x2 grid, rendered clean: a face
holds still between expression changes) read at 10 keyframes a second, webcam-look recordings (sensor noise,
auto-exposure that hunts, shake: the seed's 0.003 keeps most frames, as on real footage) read with the seed setting
(every scene change), and a 4x4 1080p gallery at 2 keyframes a second. Timings depend on the machine and on what
else runs on it: the CPU flags are printed with them.

    .venv/bin/python bench/changed_only.py --model models/synthetic-dacl/seed0/best.pt [--duration 24] [--seed 2]
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fer_study.settings import VideoSettings
from fer_study.synth import make_demo_video, make_gallery_video, truth_paths
from fer_study.truth import match_faces, read_truth, truth_holds
from fer_study.video import analyze_video, load_engine

SEED = dict(threshold=0.003, min_gap=0.0)  # the seed study's keyframes: every scene change


def cpu_flags() -> str:
    "The CPU's avx2 / avx512_bf16 flags, as `lscpu | grep -o 'avx512_bf16\\|avx2'` lists them."
    out = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
    return ' '.join(f for f in ('avx2', 'avx512_bf16') if f in out.split()) or 'neither avx2 nor avx512_bf16'


def recordings(folder: Path, duration: float, quick: bool, seed: int = 0) -> list[tuple[str, Path, VideoSettings]]:
    "The generated recordings (made once in `folder`; people and scripts drawn from `seed`) and their settings."
    def made(name, make):
        path = folder / (f'{name}-seed{seed}.mp4' if seed else f'{name}.mp4')
        return path if path.exists() and truth_paths(path)[0].exists() else make(path)
    call = lambda layout, k, **kw: lambda p: make_demo_video(p, layout, seed + k, duration, **kw)
    cases = [('demo call, single (10 keyframes/s)', made('single', call('single', 0)), VideoSettings(fps=10)),
             ('demo call, 2x2 grid (10 keyframes/s)', made('grid', call('grid', 0)), VideoSettings(fps=10)),
             ('webcam look, single (seed setting)', made('webcam', call('single', 1, webcam=True)),
              VideoSettings(**SEED))]
    if not quick:
        cases += [('webcam look, 2x2 grid (seed setting)', made('webcam-grid', call('grid', 1, webcam=True)),
                   VideoSettings(**SEED)),
                  ('4x4 1080p gallery (2 keyframes/s)',
                   made('gallery', lambda p: make_gallery_video(p, 4, 4, seed=seed, duration=duration)),
                   VideoSettings(fps=2))]
    return cases


def late_changes(every: pd.DataFrame, changed: pd.DataFrame, truth: pd.DataFrame) -> list[float]:
    "Per expression change of the truth: keyframes by which changed-only picks it up after classify-all (inf: never)."
    pairs = match_faces(every, truth)
    holds = truth_holds(truth)
    first = holds.groupby(truth['participant']).transform('min')  # a participant's first hold is no change
    rows = pd.DataFrame(dict(face=pairs.face, hold=holds.loc[pairs.truth].to_numpy(),
                             first=first.loc[pairs.truth].to_numpy(),
                             emotion=truth.loc[pairs.truth, 'emotion'].to_numpy(),
                             frame=every.loc[pairs.face, 'frame'].to_numpy()))
    delays = []
    for _, h in rows[rows.hold != rows['first']].sort_values('frame').groupby('hold'):
        a = np.flatnonzero(every.loc[h.face, 'label'].to_numpy() == h.emotion.to_numpy())
        c = np.flatnonzero(changed.loc[h.face, 'label'].to_numpy() == h.emotion.to_numpy())
        if len(a): delays.append(float(c[0] - a[0]) if len(c) else float('inf'))
    return delays


def share_gap(a: dict, b: dict, key: str) -> float:
    "Largest difference of an emotion's share between two summaries' `overall[key]`, in points."
    sa, sb = a['overall'][key] or {}, b['overall'][key] or {}
    return 100 * max([abs(sa.get(c, 0) - sb.get(c, 0)) for c in set(sa) | set(sb)] or [0])


def compare(name: str, video: Path, engine, meta: dict, settings: VideoSettings, out: Path) -> dict:
    "Read `video` both ways; the figures of each and of changed-only against classify-all."
    runs = {}
    for mode, classify_all in (('classify-all', True), ('changed-only', False)):
        s = VideoSettings(**{**settings.as_dict(), 'classify_all': classify_all})
        summary = analyze_video(video, engine, meta, out / video.stem / mode, s, progress=False,
                                truth=truth_paths(video)[0])
        runs[mode] = summary, pd.read_csv(out / video.stem / mode / 'faces.csv')
    (a, ta), (b, tb) = runs['classify-all'], runs['changed-only']
    if not ta[['frame', 'participant']].equals(tb[['frame', 'participant']]):
        raise SystemExit(f"{video}: the two readings found different faces")
    delays = late_changes(ta, tb, read_truth(truth_paths(video)[0]).table)
    result = dict(name=name, video=str(video), rows=len(ta), agreement=float((ta.label == tb.label).mean()),
                  gap_per_keyframe=share_gap(a, b, 'share_per_keyframe'),
                  gap_time_weighted=share_gap(a, b, 'share_time_weighted'),
                  changes=len(delays), late=sum(d > 1 for d in delays), max_delay=max(delays, default=0.0),
                  reasons=b['readings']['reasons'])
    for mode, (s, _) in runs.items():
        t = s['timing']
        result[mode] = dict(seconds=t['total'], realtime=t['realtime_factor'], model_seconds=t['model_seconds'],
                            computed=s['readings']['computed'], truth_agreement=s['truth']['agreement']['share'])
    return result


def report(r: dict) -> str:
    "A few lines per recording."
    lines = [f"{r['name']}: {r['rows']} face readings"]
    for mode in ('classify-all', 'changed-only'):
        m = r[mode]
        lines.append(f"  {mode:<13} {m['seconds']:7.1f} s  {m['realtime']:5.2f}x real time"
                     f"  model {m['model_seconds']:6.1f} s  computed {m['computed']:5d}"
                     f" ({100 * m['computed'] / max(1, r['rows']):5.1f} %)"
                     f"  truth agreement {100 * (m['truth_agreement'] or 0):5.1f} %")
    lines.append(f"  changed-only vs classify-all: labels agree on {100 * r['agreement']:.2f} %, shares within "
                 f"{r['gap_per_keyframe']:.2f} points per keyframe / {r['gap_time_weighted']:.2f} time-weighted; "
                 f"{r['late']} of {r['changes']} expression changes picked up late (max delay {r['max_delay']:g} "
                 f"keyframes); computed because {r['reasons']}")
    return '\n'.join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', type=Path, required=True, help='checkpoint (a 224-px model whose logits mean something)')
    ap.add_argument('--duration', type=float, default=24.0, help='seconds of each generated recording')
    ap.add_argument('--videos', type=Path, help='folder for the generated recordings (kept; default: a temporary one)')
    ap.add_argument('--out', type=Path, help='folder for the readings and results.json (default: a temporary one)')
    ap.add_argument('--quick', action='store_true', help='leave out the webcam-look grid and the 4x4 gallery')
    ap.add_argument('--seed', type=int, default=0, help='draw the recordings from this seed (the threshold was chosen '
                    'on 0; another checks it on calls it was not chosen on)')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        videos, out = a.videos or Path(tmp) / 'videos', a.out or Path(tmp) / 'out'
        videos.mkdir(parents=True, exist_ok=True)
        engine, meta = load_engine(a.model, VideoSettings())
        print(f"CPU flags: {cpu_flags()}; model {a.model} ({meta['input_size']} px), engine {engine.engine}; "
              "timings are indicative (they depend on what else runs), agreement figures are the result", flush=True)
        results = []
        for name, video, settings in recordings(videos, a.duration, a.quick, a.seed):
            results.append(compare(name, video, engine, meta, settings, out))
            print(report(results[-1]), flush=True)
        n = sum(r['rows'] for r in results)
        print(f"overall: labels agree on {100 * sum(r['agreement'] * r['rows'] for r in results) / n:.2f} % of {n} "
              f"readings; largest share difference {max(r['gap_time_weighted'] for r in results):.2f} points; "
              f"{sum(r['late'] for r in results)} of {sum(r['changes'] for r in results)} changes late")
        out.mkdir(parents=True, exist_ok=True)
        (out / 'results.json').write_text(json.dumps(dict(cpu=cpu_flags(), results=results), indent=1) + '\n')


if __name__ == '__main__':
    main()
