"""Snakemake entry point: train a source model, naturally or adversarially (PGD)."""

from pathlib import Path

import torch

from robust_transfer import checkpoints, data, train
from robust_transfer.logs import to_log
from robust_transfer.models import resnet50

to_log(snakemake)
spec = snakemake.config["sources"][snakemake.wildcards.source]["train"]
torch.set_num_threads(snakemake.threads)
train.set_deterministic(snakemake.config["finetune"].get("deterministic", True))
tr, te = data.load_split(snakemake.input.train), data.load_split(snakemake.input.test)
torch.manual_seed(spec["seed"])  # the initial weights depend on the source's seed only
model = resnet50(num_classes=int(tr[1].max()) + 1, width_per_group=spec.get("width_per_group", 64))
device = train.pick_device(snakemake.config["finetune"]["device"])
result = train.pretrain(model, tr, te, {**snakemake.config["finetune"], **spec}, spec["seed"], device)
checkpoints.save(model, Path(snakemake.output.weights), {"trained_on": spec["dataset"], "attack": spec.get("attack"), **result})
