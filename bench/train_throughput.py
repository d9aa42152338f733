"""Training throughput: fer_study's training step against a plain reference loop of the same model.

For each input size (64, 112, 224 px) it runs, in separate processes so peak memory is per run:
  ours       fer_study.train.train_epoch: images decoded and resized once, batch crops/flips as tensors,
             channels-last, bf16 autocast on CUDA, no per-step host sync;
  reference  the official code's loop: a DataLoader of PIL images with torchvision transforms
             (Resize, random corner/centre crop, flip, ToTensor, Normalize), fp32, `.item()` every step.
It prints images/s and peak memory for both and the ratio ours / reference.

    python bench/train_throughput.py [--sizes 64 112 224] [--steps 6] [--batch 32] [--device auto]
    python bench/train_throughput.py --sizes 224 --batch 64 --steps 40 --device cuda --epoch-images 12271 --epochs 60

With --epoch-images it also projects the time of one training epoch of that many images (RAF-DB's train split is
12,271) and of --epochs of them, from our measured rate (evaluation passes not included).
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_images(folder: Path, n: int) -> list[str]:
    "Random 100x100 JPEG faces-sized images (content does not matter for speed)."
    from PIL import Image
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f'train_{i:05d}_aligned.jpg'
        Image.fromarray(rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def run_ours(paths, size, resize, steps, batch, device):
    from fer_study.core import CLASSES
    from fer_study.losses import SparseCenterLoss
    from fer_study.model import DACL
    from fer_study.rafdb import load_images
    from fer_study.train import TrainConfig, train_epoch
    cfg = TrainConfig(input_size=size, resize=resize, batch_size=batch, epochs=1)
    x = load_images(paths[: batch * (steps + 2)], resize)
    y = torch.arange(len(x)) % len(CLASSES)
    if device.type == 'cuda': x, y = x.to(device), y.to(device)
    model = DACL(input_size=size).to(device).to(memory_format=torch.channels_last)
    crit = SparseCenterLoss(len(CLASSES)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    warm = batch * 2
    train_epoch(model, crit, opt, (x[:warm], y[:warm]), cfg, 1, device, progress=False)
    sync(device)
    t = time.perf_counter()
    train_epoch(model, crit, opt, (x[warm:], y[warm:]), cfg, 2, device, progress=False)
    sync(device)
    return (len(x) - warm) / (time.perf_counter() - t)


def run_reference(paths, size, resize, steps, batch, device):
    import torchvision.transforms as T
    from PIL import Image
    from fer_study.losses import SparseCenterLoss
    from fer_study.model import DACL

    class RandomFiveCrop:
        def __init__(self, size): self.five = T.FiveCrop(size)
        def __call__(self, img): return self.five(img)[torch.randint(0, 5, (1,)).item()]

    tf = T.Compose([T.Resize(resize), RandomFiveCrop(size), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.5752, 0.4495, 0.4012], [0.2086, 0.1911, 0.1827])])

    class Folder(torch.utils.data.Dataset):
        def __len__(self): return batch * (steps + 2)
        def __getitem__(self, i): return tf(Image.open(paths[i]).convert('RGB')), i % 7

    loader = torch.utils.data.DataLoader(Folder(), batch_size=batch, shuffle=True, num_workers=0)
    model = DACL(input_size=size).to(device)
    crit = SparseCenterLoss(7).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    model.train()
    seen, t = 0, None
    for step, (img, y) in enumerate(loader):
        if step == 2: sync(device); t, seen = time.perf_counter(), 0
        img, y = img.to(device), y.to(device)
        feat, logits, a = model(img)
        total, ce, sc = crit(feat, logits, a, y)
        opt.zero_grad(); total.backward(); opt.step(); crit.update(feat, a, y)
        total.item(); ce.item(); sc.item(); (logits.argmax(1) == y).float().mean().item()  # the official per-step syncs
        seen += len(y)
    sync(device)
    return seen / (time.perf_counter() - t)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def child(args):
    device = torch.device(args.device if args.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu'))
    with tempfile.TemporaryDirectory() as d:
        paths = make_images(Path(d), args.batch * (args.steps + 2))
        fn = run_ours if args.which == 'ours' else run_reference
        ips = fn(paths, args.size, round(args.size * 256 / 224), args.steps, args.batch, device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(dict(ips=ips, peak_mib=peak, device=str(device))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[64, 112, 224])
    p.add_argument('--steps', type=int, default=6)
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--device', default='auto')
    p.add_argument('--epoch-images', type=int, help='project an epoch of this many training images')
    p.add_argument('--epochs', type=int, default=60, help='epochs in the projection (default: 60, the paper)')
    p.add_argument('--which', help=argparse.SUPPRESS)
    p.add_argument('--size', type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.which: return child(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} timed steps")
    print(f"{'size':>5} {'device':>7} {'ours img/s':>11} {'ref img/s':>10} {'ratio':>6} {'ours peak MiB':>14} {'ref peak MiB':>13}")
    for size in args.sizes:
        res = {}
        for which in ('reference', 'ours'):
            cmd = [sys.executable, __file__, '--which', which, '--size', str(size), '--steps', str(args.steps),
                   '--batch', str(args.batch), '--device', args.device]
            res[which] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        o, r = res['ours'], res['reference']
        print(f"{size:>5} {o['device']:>7} {o['ips']:>11.1f} {r['ips']:>10.1f} {o['ips'] / r['ips']:>6.2f} {o['peak_mib']:>14.0f} {r['peak_mib']:>13.0f}")
        if args.epoch_images:
            epoch = args.epoch_images / o['ips']
            print(f"      projected at {size} px: {args.epoch_images:,} images a training epoch = {epoch:.1f} s; "
                  f"{args.epochs} epochs = {args.epochs * epoch / 60:.1f} min (evaluation not included)")


if __name__ == '__main__':
    main()
