"""Training recipes on the embedded synthetic set: minutes against test accuracy, the figures behind the demo's recipe.

Each recipe trains the study's own `fer_study.train.train` (DACL, the demo's 56-px input, batch 32) on the data
stage's manifest, for every seed asked, two runs side by side with one thread each (as `fer-study train` runs a
variant's seeds on a 2-core CPU). It prints, per recipe and seed, the test accuracy of the epoch selected on
validation and the minutes the run took, then each recipe's mean; the majority class is the baseline every recipe
must clear. The CPU's bf16 support is printed with the figures (bf16 autocast is used where it is native).

    python bench/train_recipe.py                       # after `make study` (or fer-study materialize + data)
    python bench/train_recipe.py --recipes official demo --seeds 0 1 --epochs 20
    python bench/train_recipe.py --recipes demo --init models/pretrain/synthetic_pretrain.pth

Recipes (all else as params.yaml, epochs included unless --epochs says otherwise):
  official     SGD lr 0.01, momentum 0.9, weight decay 5e-4, StepLR 20/0.1: the paper's, at the demo's budget
  demo         params.yaml's optim section (AdamW, one-cycle to lr 2e-3, a quarter rising, weight decay 0.05)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPES = {'official': dict(optimizer='sgd', schedule='step', lr=0.01, momentum=0.9, weight_decay=5e-4, step_size=20,
                             gamma=0.1),
           'demo': {}}


def one_run(recipe: str, seed: int, init: str, manifest: str, params: str, epochs: int | None) -> dict:
    "Train one seed of `recipe` in this process; its validation-selected test accuracy and minutes."
    import dataclasses
    from fer_study.study import load_manifest
    from fer_study.core import load_params
    from fer_study.train import load_subsets, train, train_config
    cfg = dataclasses.replace(train_config(load_params(params), init=init, loss='dacl', seed=seed), **RECIPES[recipe])
    if epochs: cfg = dataclasses.replace(cfg, epochs=epochs)
    df, info = load_manifest(manifest)
    data = load_subsets(df, cfg.resize)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d: summary = train(data, cfg, d, dataset=info['dataset'], progress=False)
    return dict(recipe=recipe, seed=seed, init=init, acc=round(summary['test']['acc'], 4),
                epoch=summary['selected_epoch'], minutes=round((time.perf_counter() - start) / 60, 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipes', nargs='+', default=list(RECIPES), choices=list(RECIPES))
    p.add_argument('--seeds', nargs='+', type=int, default=[0, 1])
    p.add_argument('--init', default='scratch')
    p.add_argument('--epochs', type=int, help="epochs of every recipe (default: params.yaml's train.epochs)")
    p.add_argument('--manifest', default='outputs/data/manifest.csv')
    p.add_argument('--params', default='params.yaml')
    p.add_argument('--one', help=argparse.SUPPRESS)  # internal: a single run, as JSON
    a = p.parse_args()
    if a.one:
        spec = json.loads(a.one)
        print(json.dumps(one_run(spec['recipe'], spec['seed'], a.init, a.manifest, a.params, a.epochs)), flush=True)
        return
    from fer_study.core import cpu_has_bf16
    cores = os.cpu_count() or 1
    print(f"CPU: {cores} cores, bf16 units: {cpu_has_bf16()} (bf16 autocast is used where they exist)")
    jobs = [dict(recipe=r, seed=s) for r in a.recipes for s in a.seeds]
    env = {**os.environ, 'OMP_NUM_THREADS': str(max(1, cores // 2))}
    results, running = [], []
    while jobs or running:
        while jobs and len(running) < 2:
            spec = jobs.pop(0)
            cmd = [sys.executable, __file__, '--one', json.dumps(spec), '--init', a.init, '--manifest', a.manifest,
                   '--params', a.params, *(['--epochs', str(a.epochs)] if a.epochs else [])]
            running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        proc = running.pop(0)
        out, _ = proc.communicate()
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    from fer_study.study import load_manifest
    counts = load_manifest(a.manifest)[0].query("subset == 'test'").label.value_counts()
    print(f"\nmajority class on test: {counts.max() / counts.sum():.3f}")
    print(f"{'recipe':12s} {'init':12s} {'mean acc':>9s} {'min acc':>8s} {'minutes/run':>12s}")
    for r in a.recipes:
        rows = [x for x in results if x['recipe'] == r]
        print(f"{r:12s} {Path(a.init).stem:12s} {sum(x['acc'] for x in rows) / len(rows):9.3f} "
              f"{min(x['acc'] for x in rows):8.3f} {sum(x['minutes'] for x in rows) / len(rows):12.2f}")


if __name__ == '__main__':
    main()
