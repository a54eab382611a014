"""Snakemake entry point: train a source model, naturally or adversarially (PGD)."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "train")

from pathlib import Path

import torch

from robust_transfer import archs, checkpoints, device, disk, files, grid, recipes, store, train
from robust_transfer.joblog import to_log

to_log(snakemake)
cfg = snakemake.params.settings
device.setup(snakemake.threads, cfg["deterministic"])
# Before anything is loaded: a GPU unless the CPU is allowed, and every folder this job writes.
# allow_cpu and channels_last, like threads, say how the job runs: read from the config, not
# params (no rerun).
how = recipes.placement(snakemake.config, snakemake.wildcards.source)
dev = device.pick(cfg["device"], how["allow_cpu"], "pretrain")
weights, state = Path(snakemake.output.weights), Path(snakemake.params.state)
folders = [weights.parent, state.parent] + [Path(p).parent for p in snakemake.log]
disk.check_folders(folders)
torch.manual_seed(cfg["seed"])  # the initial weights depend on the source's seed only
classes = int(store.load_labels(snakemake.input.train).max()) + 1
arch = cfg.get("arch", "resnet50")
model = archs.build(arch, classes, cfg.get("width_per_group"))
# the resume state, then (after it is removed) the weights: both counted, to be safe
disk.check_space([(state.parent, disk.state_bytes(model)), (weights.parent, disk.tensor_bytes(model))])
tr, te = store.load_split(snakemake.input.train), store.load_split(snakemake.input.test)
resume = train.Resume(state, grid.digest({"settings": cfg, "inputs": files.stamps(snakemake.input)}))
result = train.pretrain(model, tr, te, {**cfg, "channels_last": how["channels_last"]}, cfg["seed"], dev, resume=resume)
with disk.writing(weights, "source weights"):
    checkpoints.save(model, weights, {"trained_on": cfg["dataset"], "attack": cfg.get("attack"), **result}, arch)
