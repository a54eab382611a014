"""Snakemake entry point: train a source model, naturally or adversarially (PGD)."""

from pathlib import Path

import torch

from robust_transfer import checkpoints, data, device, files, grid, train
from robust_transfer.joblog import to_log
from robust_transfer.models import resnet50

to_log(snakemake)
cfg = snakemake.params.settings
device.setup(snakemake.threads, cfg["deterministic"])
tr, te = data.load_split(snakemake.input.train), data.load_split(snakemake.input.test)
torch.manual_seed(cfg["seed"])  # the initial weights depend on the source's seed only
model = resnet50(num_classes=int(tr[1].max()) + 1, width_per_group=cfg.get("width_per_group", 64))
resume = train.Resume(
    Path(snakemake.params.state), grid.digest({"settings": cfg, "inputs": files.stamps(snakemake.input)})
)
result = train.pretrain(model, tr, te, cfg, cfg["seed"], device.pick(cfg["device"]), resume=resume)
checkpoints.save(
    model, Path(snakemake.output.weights), {"trained_on": cfg["dataset"], "attack": cfg.get("attack"), **result}
)
