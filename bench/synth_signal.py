"""Does the embedded synthetic set carry expression? Train from scratch with the demo parameters on its true
labels and on shuffled training labels, and compare test accuracy with the majority-class rate.

Goal: true labels >= majority + 20 points; shuffled labels within 5 points of the majority rate (no leak
such as file order or a colour code). Needs the data stage's manifest (`make study`, or `fer-study data`).

    python bench/synth_signal.py [--params params.yaml] [--manifest outputs/data/manifest.csv]
"""
import argparse
import tempfile
import time

import torch

from fer_study.study import load_manifest
from fer_study.core import load_params
from fer_study.train import load_subsets, train, train_config


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--params', default='params.yaml')
    p.add_argument('--manifest', default='outputs/data/manifest.csv')
    p.add_argument('--runs', nargs='+', default=['true labels', 'shuffled labels'], choices=['true labels', 'shuffled labels'])
    args = p.parse_args()
    cfg = train_config(load_params(args.params), 'scratch', 'dacl')
    df, info = load_manifest(args.manifest)
    data = load_subsets(df, cfg.resize)
    test_y = data['test'][1]
    majority = (test_y == test_y.mode().values).float().mean().item()
    x, y = data['train']
    shuffled = {**data, 'train': (x, y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))])}
    results = {}
    for name, d in (('true labels', data), ('shuffled labels', shuffled)):
        if name not in args.runs: continue
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            s = train(d, cfg, out, dataset=info['dataset'], progress=False)
        results[name] = (s['test']['acc'], time.perf_counter() - t)
    print(f"\ndata: {info['dataset']} ({info['images']}), {cfg.epochs} epochs at {cfg.input_size} px, batch {cfg.batch_size}")
    print(f"majority-class rate on test: {majority:.4f}")
    for name, (acc, secs) in results.items():
        print(f"{name:16s} test acc {acc:.4f}  ({100 * (acc - majority):+.1f} points vs majority)  train time {secs:.0f} s")


if __name__ == '__main__':
    main()
