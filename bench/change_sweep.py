"""Replay change-detector settings offline on recorded readings: readings computed, agreement with classify-all.

Each generated recording of bench/changed_only.py (drawn from each `--seeds` value) is read once classifying every
face, with every aligned crop kept; then each setting is replayed over those faces in order, as the detector would
see them, and scored against classifying every face: readings computed, label agreement (overall and the worst
recording), the largest difference of an emotion's time-weighted share, and the truth's expression changes picked up
more than one keyframe late. The settings: the detector's fixed threshold (fer_study.changes, several values), and
a threshold scaled by how sure the reused reading is (the log ratio of its two largest probabilities; `base`,
`slope` and `cap` in grey levels), which needs the reading before the next face of the participant is judged.
Needs a 224-px model whose logits mean something (a trained one): agreement is about its labels. The one measured
(0.877 test accuracy, 15 minutes on a 2-core CPU) was trained after `make study`, from a copy of params.yaml with
`model.input_size: 224`, `model.resize: 256` and `train.epochs: 4`:
`fer-study train --params p224.yaml --init synthetic --loss dacl --seed 0 --out models/m224`.

    .venv/bin/python bench/change_sweep.py --model M [--seeds 0 2] [--videos DIR]
"""
import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

import fer_study.video as video
from fer_study.changes import ChangeDetector, crop_difference
from fer_study.settings import VideoSettings
from fer_study.synth import truth_paths
from fer_study.truth import read_truth

sys.path.insert(0, str(Path(__file__).parent))
from changed_only import cpu_flags, late_changes, recordings  # noqa: E402

FIXED = (0.5, 0.75, 1.0, 1.25, 1.5)  # grey levels
SCALED = [(0.5, s, c) for s in (0.25, 0.5, 0.75, 1.0) for c in (1.0, 1.5, 1.75, 2.0)]  # base, slope, cap


class _Keeper(ChangeDetector):
    "A detector that keeps every face it is shown and has each classified: the faces of a classify-all reading."
    faces: list = []

    def __call__(self, faces, t):
        _Keeper.faces += [SimpleNamespace(t=t, track=f.track, crop=np.asarray(f.crop).copy(), box=tuple(f.box),
                                          landmarks=np.asarray(f.landmarks, float)) for f in faces]
        return ['new'] * len(faces)


def record(path: Path, engine, meta: dict, settings: VideoSettings, out: Path) -> tuple[pd.DataFrame, list]:
    "Read `path` classifying every face; its faces.csv and the faces (crop, box, landmarks) in the same order."
    _Keeper.faces = []
    video.ChangeDetector, kept = _Keeper, video.ChangeDetector  # the pipeline builds its detector by this name
    try:
        video.analyze_video(path, engine, meta, out, VideoSettings(**{**settings.as_dict(), 'classify_all': False}),
                            progress=False)
    finally:
        video.ChangeDetector = kept
    table = pd.read_csv(out / 'faces.csv')
    if len(table) != len(_Keeper.faces): raise SystemExit(f"{path}: {len(table)} rows but {len(_Keeper.faces)} faces")
    return table, _Keeper.faces


class _Scaled(ChangeDetector):
    "The detector with a threshold that grows with how sure the reused reading is, up to `cap`."
    def __init__(self, base, slope, cap, sureness, **kw):
        super().__init__(threshold=base, **kw)
        self.slope, self.cap, self.sureness = slope, cap, sureness

    def reason(self, face, t, signature):
        why = super().reason(face, t, signature)
        if why != 'changed': return why
        d = crop_difference(signature, self.refs[face.track].signature)
        return 'changed' if d > min(self.cap, max(self.threshold, self.slope * self.sureness(face.track))) else None


def replay(table: pd.DataFrame, faces: list, classes: list, make) -> np.ndarray:
    "Per row, the row whose reading it takes under the detector `make(sureness)` builds."
    probs, source, last = table[classes].to_numpy(), np.arange(len(table)), {}
    def sureness(track):
        top = np.sort(probs[last[track]])[::-1]
        return float(np.log(max(top[0], 1e-6) / max(top[1], 1e-6)))
    det = make(sureness)
    for t in table['time'].unique():
        rows = np.flatnonzero(table['time'].to_numpy() == t)
        for i, why in zip(rows, det([faces[i] for i in rows], t)):
            if why: last[faces[i].track] = i
            source[i] = last[faces[i].track]
    return source


def score(table: pd.DataFrame, truth: pd.DataFrame, source: np.ndarray, classes: list) -> dict:
    "Readings computed, label agreement, largest time-weighted share difference (points), changes picked up late."
    changed = table.copy()
    changed[[*classes, 'label']] = table[[*classes, 'label']].to_numpy()[source]
    shares = [t.groupby('label')['span'].sum().reindex(classes, fill_value=0) / t['span'].sum()
              for t in (table, changed)]
    return dict(computed=int((source == np.arange(len(table))).sum()), rows=len(table),
                agreement=float((changed['label'] == table['label']).mean()),
                gap=float(100 * (shares[0] - shares[1]).abs().max()),
                late=sum(d > 1 for d in late_changes(table, changed, truth)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--model', type=Path, required=True, help='a trained 224-px checkpoint')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 2], help='recording sets (see changed_only.py)')
    ap.add_argument('--duration', type=float, default=24.0)
    ap.add_argument('--videos', type=Path, help='folder for the generated recordings (kept; default: a temporary one)')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        videos = a.videos or Path(tmp) / 'videos'
        videos.mkdir(parents=True, exist_ok=True)
        engine, meta = video.load_engine(a.model, VideoSettings())
        classes = meta['classes']
        print(f"CPU flags: {cpu_flags()}; model {a.model} ({meta['input_size']} px)", flush=True)
        readings = {seed: [(*record(path, engine, meta, s, Path(tmp) / f'{seed}' / path.stem),
                            read_truth(truth_paths(path)[0]).table)
                           for _, path, s in recordings(videos, a.duration, False, seed)] for seed in a.seeds}
        settings = [(f'fixed {t:g}', lambda sure, t=t: ChangeDetector(threshold=t)) for t in FIXED]
        settings += [(f'scaled {b:g}/{s:g}/{c:g}', lambda sure, b=b, s=s, c=c: _Scaled(b, s, c, sure))
                     for b, s, c in SCALED]
        print('setting (grey levels)  ' + '  '.join(f'seed {k}: computed, agree (worst), gap, late' for k in a.seeds))
        for name, make in settings:
            cells = []
            for seed in a.seeds:
                r = [score(t, truth, replay(t, f, classes, make), classes) for t, f, truth in readings[seed]]
                n = sum(x['rows'] for x in r)
                cells.append(f"{100 * sum(x['computed'] for x in r) / n:5.1f} %, "
                             f"{100 * sum(x['agreement'] * x['rows'] for x in r) / n:6.2f} % "
                             f"({100 * min(x['agreement'] for x in r):6.2f} %), {max(x['gap'] for x in r):4.2f}, "
                             f"{sum(x['late'] for x in r)}")
            print(f'{name:22s} ' + '   '.join(cells), flush=True)


if __name__ == '__main__':
    main()
