"""One fine-tuning run as a job: load its inputs, train, write its metrics and metadata."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from . import __version__, archs, checkpoints, device, disk, files, grid, store, train

RUN_FIELDS = ("dataset", "source", "k", "size", "n", "seed")  # a run's identity in its metadata
RUNS_DONE = 0  # runs this process finished (a runner trains many: robust_transfer.runner)


def run_job(
    inputs,
    outputs,
    run: grid.Run,
    settings: dict,
    threads: int = 1,
    state: str | None = None,
    placement: dict | None = None,
    log: str | None = None,
) -> None:
    """inputs: train, test, subset, source; outputs: metrics (CSV, a row per logged epoch), meta
    (JSON). settings: recipes.run_settings, the run's resolved `finetune` section. state: where the
    run keeps its resume state (outside the outputs, which Snakemake deletes before a rerun).
    placement: recipes.placement, how the job executes (not params): allow_cpu (with device
    auto, train on the CPU when no GPU is visible; else the job fails at once), channels_last
    (the layout training runs in, train.channels_last). log: the job's log file.

    Before anything is loaded: the device (device.pick) and every folder the job writes; before
    training: room on disk for its resume state and outputs."""
    global RUNS_DONE
    loading = time.perf_counter()
    device.setup(threads, settings["deterministic"])
    placement = {"allow_cpu": False, "channels_last": "auto", **(placement or {})}
    dev = device.pick(settings["device"], placement["allow_cpu"], run.recipe)  # the config section the error names
    small = 100_000  # bytes: the CSV, the JSON, the log
    writes = [(outputs.metrics, small), (outputs.meta, small), (log, small), (state, None)]
    writes = [(Path(path).parent, size) for path, size in writes if path]
    disk.check_folders(folder for folder, _ in writes)
    resume = train.Resume(Path(state), fingerprint(run, settings, inputs)) if state else None
    idx = np.load(inputs.subset)
    classes = int(store.load_labels(inputs.train).max()) + 1  # of the whole split: a subset may miss one
    model, source_meta = checkpoints.load(inputs.source)
    if settings["init"] == "run":  # from scratch: a fresh init drawn with the run's seed (the authors)
        train.seed_everything(run.seed, "cpu")
        arch, width = checkpoints.architecture(inputs.source)  # the source file's network, not its weights
        model = archs.build(arch, 1000, width)
    else:
        torch.manual_seed(run.seed)  # the head's draw depends on the run's seed only
    archs.prepare(model, classes, run.k, settings["head_std"])  # k -1: all trains; 0: the head; else last k blocks
    disk.check_space([(folder, disk.state_bytes(model) if size is None else size) for folder, size in writes])
    images, labels = store.load_split(inputs.train, rows=idx)  # the subset's images only
    extents = store.load_extents(inputs.train, rows=idx)  # whole images of different sizes (train_crop: random)
    where = (
        f" (no GPU visible; {run.recipe}.allow_cpu: true)" if dev.type == "cpu" and settings["device"] == "auto" else ""
    )
    print(f"run {run.path}: {len(idx)} images, {classes} classes, {settings['epochs']} epochs on {dev}{where}")

    start = time.time()
    split = (images, labels) + (() if extents is None else (extents,))
    test = device_split(inputs.test, dev)
    clock = {"load": time.perf_counter() - loading}
    cfg = {**settings, "channels_last": placement["channels_last"]}  # placement: not in settings or the resume key
    rows = train.finetune(model, split, test, cfg, run.seed, dev, resume=resume, clock=clock)
    fields = dict(
        dataset=run.dataset,
        source=run.source,
        k=run.k,
        size=run.size,
        n=len(idx),
        seed=run.seed,
        classes=classes,
        epochs=settings["epochs"],
    )
    if run.recipe != grid.DEFAULT_RECIPE:  # another study's run: what its grid varies (Utrera's tables unchanged)
        fields.update(recipe=run.recipe, mode=run.mode, base_lr=run.lr)
        # the source's clean test accuracy on its own task, where it was pretrained here (the demo)
        fields["source_acc"] = float(source_meta["test_acc"]) if "test_acc" in source_meta else None
    table = [{**row, **fields} for row in rows]
    with disk.writing(outputs.metrics, "run table"), open(outputs.metrics, "w", newline="") as f:  # csv: no pandas
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)

    meta = {
        "run": {key: fields[key] for key in (*RUN_FIELDS, "recipe", "mode", "base_lr") if key in fields},
        "settings": settings,
        "settings_digest": grid.digest(settings),
        "source_meta": source_meta,
        "wall_seconds": time.time() - start,
        "seconds": clock,  # this attempt's: inputs loaded, on the device, training, evaluation
        "device": device.name(dev),
        "process": {"pid": os.getpid(), "runs_before": RUNS_DONE},  # runs its process trained before this one
        "threads": threads,
        "channels_last": train.channels_last(cfg, dev),  # the layout it trained in
        "versions": {
            "robust_transfer": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
    }
    with disk.writing(outputs.meta, "run metadata"), open(outputs.meta, "w") as f:
        json.dump(meta, f, indent=1)
    RUNS_DONE += 1


_ON_DEVICE: dict[tuple, tuple] = {}  # the last test split put on a device, with its file's stamp


def device_split(path, dev) -> tuple:
    """A test split on the device, read and copied once per process while its file is unchanged
    (a runner's runs of one dataset share it; evaluation only reads it)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, str(dev))
    if key not in _ON_DEVICE:
        _ON_DEVICE.clear()  # one at a time: device memory is the scarce part
        _ON_DEVICE[key] = train.to_device(*store.load_split(path), device=dev)
    return _ON_DEVICE[key]


def fingerprint(run, settings: dict, inputs) -> str:
    """What a resume state must match: the run, its settings and its input files."""
    paths = [getattr(inputs, name) for name in ("train", "test", "subset", "source")]
    return grid.digest({"run": run.path, "settings": settings, "inputs": files.stamps(paths)})
