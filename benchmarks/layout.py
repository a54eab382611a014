"""Training throughput in each memory layout (channels_last false / true) on this machine.

The training config's `channels_last` (placement: no rerun) picks the layout; which is faster on a
CPU in fp32 depends on the shapes, so it is measured here, through the real training loop
(train.start, train.train_epoch: augmentation, PGD if asked, SGD), on random uint8 images.

    python benchmarks/layout.py                       # the demo's narrow ResNet-50 at 24 px
    python benchmarks/layout.py --width 32            # its WRN-50-2 role
    python benchmarks/layout.py --attack 2            # pretraining with 2 PGD steps
    python benchmarks/layout.py --width 64 --size 32  # the full ResNet-50 at 32 px

Prints images/s per layout (the median of --repeats epochs after a warm-up epoch, the layouts
alternating) and the ratio channels-last / default. Numbers: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from robust_transfer import archs, device, train


def epoch_rates(args, layout: bool) -> Callable[[], float]:
    """A function that trains one more epoch in `layout` and returns its images/s."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)
    labels = rng.integers(0, args.classes, args.n).astype(np.int64)
    attack = {"norm": "l2", "eps": 1.0, "steps": args.attack} if args.attack else None
    cfg = {
        "epochs": 10**6,
        "batch_size": args.batch,
        "eval_batch_size": 512,
        "lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "lr_drops": 1,
        "lr_gamma": 0.1,
        "input_size": args.size,
        "augment": {"pad": 1, "flip": False, "jitter": 0, "degrees": 0},
        "amp": "none",
        "channels_last": layout,
        "attack": attack,
    }
    torch.manual_seed(0)
    model = archs.build(args.arch, args.classes, args.width)
    loop = train.start(model, (images, labels), (images[:8], labels[:8]), cfg, 0, torch.device("cpu"))

    def rate() -> float:
        t = time.perf_counter()
        train.train_epoch(loop)
        return args.n / (time.perf_counter() - t)

    rate()  # warm-up: oneDNN picks and caches its kernels
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="resnet50", choices=list(archs.RESNETS))
    p.add_argument("--width", type=int, default=16, help="width_per_group (the demo: 16; WRN-50-2 role: 32)")
    p.add_argument("--size", type=int, default=24, help="input size (px)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n", type=int, default=256, help="images per timed epoch")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--attack", type=int, default=0, help="PGD steps per batch (pretraining); 0: none")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    device.setup(args.threads, True)
    rates = {False: [], True: []}
    runs = {layout: epoch_rates(args, layout) for layout in rates}
    for _ in range(args.repeats):
        for layout, rate in runs.items():
            rates[layout].append(rate())
    median = {layout: statistics.median(r) for layout, r in rates.items()}
    print(
        f"{args.arch} width {args.width}, {args.size} px, batch {args.batch}, PGD steps {args.attack}, "
        f"{args.threads} thread(s), {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    for layout, r in rates.items():
        name = "channels-last" if layout else "default"
        print(f"  {name:13s} {median[layout]:7.1f} img/s (epochs: {', '.join(f'{x:.1f}' for x in r)})")
    print(f"  channels-last / default: {median[True] / median[False]:.2f}x")


if __name__ == "__main__":
    main()
