"""Which synthetic pretraining transfers? Linear probes of candidate backbones on the expression set.

Each candidate is a ResNet-18 pretrained by `fer_study.pretrain` on the same rendered faces (params.yaml's
`pretrain` section: people, shots, epochs, learning rate), only the task differs; none sees an expression label.
Each is then probed as the `pretrain` stage does (`probe_transfer`: logistic regression on frozen pooled features of
the expression train subset, scored on its test subset) beside random initial weights, the floor. It prints each
candidate's own metric, its probe, the gain over random weights and the minutes it took.

    python bench/pretrain_probe.py                       # after `make study` (or fer-study materialize + data)
    python bench/pretrain_probe.py --tasks identity --identities 24 --per-identity 20    # the old stand-in's size
"""
import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--tasks', nargs='+', default=['landmarks', 'identity'], choices=['landmarks', 'identity'])
    p.add_argument('--identities', type=int, help='people rendered (default: params.yaml)')
    p.add_argument('--per-identity', type=int, help='shots of each (default: params.yaml)')
    p.add_argument('--epochs', type=int, help='pretraining epochs (default: params.yaml)')
    p.add_argument('--manifest', default='outputs/data/manifest.csv')
    p.add_argument('--params', default='params.yaml')
    a = p.parse_args()
    from fer_study.study import load_manifest
    from fer_study.core import cpu_has_bf16, load_params
    from fer_study.pretrain import (TASK_METRIC, load_pretrain_set, pretrain_config, pretrain_resnet18, probe_transfer,
                                    render_pretrain_set)
    from fer_study.train import load_subsets
    cfg = pretrain_config(load_params(a.params))
    changes = dict(identities=a.identities, images_per_identity=a.per_identity, epochs=a.epochs)
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    print(f"CPU: {torch.get_num_threads()} threads, bf16 units: {cpu_has_bf16()}; {cfg.identities} people x "
          f"{cfg.images_per_identity} shots, {cfg.epochs} epochs, {cfg.input_size} px")
    expressions = load_subsets(load_manifest(a.manifest)[0], cfg.resize)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        data = load_pretrain_set(render_pretrain_set(Path(d)/'images', cfg.identities, cfg.images_per_identity,
                                                     cfg.seed), cfg.resize)
    print(f"rendered in {(time.perf_counter() - start) / 60:.2f} min")
    for task in a.tasks:
        start = time.perf_counter()
        model, history = pretrain_resnet18(data, dataclasses.replace(cfg, task=task), progress=False)
        probe = probe_transfer(model, expressions, cfg)
        print(f"{task:10s} own task: {history[-1]['val']:.3f} ({TASK_METRIC[task]}); probe {probe['stand_in']:.3f}, "
              f"random weights {probe['random_weights']:.3f}, gain {100 * probe['gain']:+.1f} points; "
              f"{(time.perf_counter() - start) / 60:.2f} min")


if __name__ == '__main__':
    main()
