"""One fine-tuning run as a job: load its inputs, train, write its log and metadata."""

from __future__ import annotations

import csv
import json
import platform
import time

import numpy as np
import torch
import torchvision

from . import __version__, checkpoints, data, grid, train
from .models import prepare_for_transfer


def run_job(inputs, outputs, wildcards, config: dict, threads: int = 1) -> None:
    """inputs: train, test, subset, source; outputs: log (CSV per logged epoch), meta (JSON)."""
    cfg = config["finetune"]
    k, size, seed = int(wildcards.k), wildcards.size, int(wildcards.seed)
    torch.set_num_threads(threads)
    train.set_deterministic(cfg.get("deterministic", True))

    images, labels = data.load_split(inputs.train)
    idx = np.load(inputs.subset)
    classes = int(labels.max()) + 1
    model, source_meta = checkpoints.load(inputs.source)
    torch.manual_seed(seed)  # the fc draw depends on the run's seed only
    prepare_for_transfer(model, classes, k, cfg["head_std"])
    sched = grid.schedule(config, size)
    device = train.pick_device(cfg["device"])
    print(f"run {wildcards.dataset}/{wildcards.source}/k{k}/n{size}/s{seed}: {len(idx)} images, {classes} classes, {sched['epochs']} epochs on {device}")

    start = time.time()
    rows = train.finetune(model, (images[idx], labels[idx]), data.load_split(inputs.test), cfg, sched["epochs"], sched["eval_epochs"], seed, device)
    run = dict(dataset=wildcards.dataset, source=wildcards.source, k=k, size=size, n=len(idx), seed=seed, classes=classes, epochs=sched["epochs"])
    log = [{**row, **run} for row in rows]
    with open(outputs.log, "w", newline="") as f:  # csv, not pandas: one import less per job
        writer = csv.DictWriter(f, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)

    meta = {
        "run": {key: run[key] for key in ("dataset", "source", "k", "size", "n", "seed")},
        "config_digest": grid.digest({"finetune": cfg, "dataset": config["datasets"][wildcards.dataset], "source": config["sources"][wildcards.source], "schedule": sched}),
        "schedule": sched,
        "source_meta": source_meta,
        "wall_seconds": time.time() - start,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": threads,
        "versions": {"robust_transfer": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__, "python": platform.python_version()},
    }
    with open(outputs.meta, "w") as f:
        json.dump(meta, f, indent=1)
