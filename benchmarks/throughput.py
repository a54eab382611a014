"""Fine-tuning throughput of the real training loop (images/s), per k, on this machine.

    python benchmarks/throughput.py --input-size 224 --width 64 --n 1024 --epochs 2   # a GPU
    python benchmarks/throughput.py --input-size 32 --width 64 --n 256 --epochs 1     # a CPU

Times train.finetune itself with config.yaml's `finetune` settings (device-resident data,
batched augmentation, deterministic kernels; input size, batch size and AMP from the flags),
after one warm-up epoch, and prints one line per k with images/s and peak GPU memory.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from robust_transfer import device as devices
from robust_transfer import grid, train
from robust_transfer.models import prepare_for_transfer, resnet50

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--width", type=int, default=64, help="width_per_group (64 = ResNet-50)")
    p.add_argument("--n", type=int, default=1024, help="training images (stored at 32x32, as CIFAR)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--amp", choices=["bf16", "none"], default="bf16")
    p.add_argument("--k", type=int, nargs="+", default=[0, 1, 3, 9])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    a = p.parse_args()
    device = devices.pick("auto")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (a.n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, a.n)
    test = (images[:256], labels[:256])
    # the paper's fine-tuning settings, as the jobs run them; only size, batch and AMP vary here
    base = grid.run_settings(yaml.safe_load(CONFIG.read_text()), "cifar10", "natural", a.n)
    cfg = {**base, "input_size": a.input_size, "batch_size": a.batch_size, "amp": a.amp}
    devices.setup(a.threads, cfg["deterministic"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{a.threads}"
    print(
        f"device={name} input={a.input_size}px width={a.width} n={a.n} batch={a.batch_size} amp={a.amp}",
        f"torch={torch.__version__}",
    )
    for k in a.k:
        model = prepare_for_transfer(resnet50(1000, a.width), 10, k)
        train.finetune(
            model, (images, labels), test, {**cfg, "epochs": 1, "eval_epochs": [1]}, 0, device, progress=lambda s: None
        )  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        train.finetune(
            model,
            (images, labels),
            test,
            {**cfg, "epochs": a.epochs, "eval_epochs": [a.epochs]},
            0,
            device,
            progress=lambda s: None,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        mem = f" peak_mem={torch.cuda.max_memory_allocated(device) / 2**30:.1f}GiB" if device.type == "cuda" else ""
        print(f"k={k}: {a.n * a.epochs / seconds:.0f} images/s (train epochs incl. one test pass of 256){mem}")


if __name__ == "__main__":
    main()
