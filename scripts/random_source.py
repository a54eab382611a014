"""Snakemake entry point: a randomly initialised source (the 'From scratch' baseline)."""

from pathlib import Path

import torch

from robust_transfer import checkpoints
from robust_transfer.joblog import to_log
from robust_transfer.models import resnet50

to_log(snakemake)
spec = snakemake.params.spec
# seed "run": each run draws its own init (runs.run_job); this file only fixes the architecture
torch.manual_seed(0 if spec["seed"] == "run" else spec["seed"])
model = resnet50(width_per_group=spec.get("width_per_group", 64))
checkpoints.save(model, Path(snakemake.output.weights), {"random_init_seed": spec["seed"]})
