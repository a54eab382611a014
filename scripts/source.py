"""Snakemake entry point: convert a downloaded checkpoint into the canonical source file."""

from pathlib import Path

from robust_transfer import checkpoints
from robust_transfer.joblog import to_log

to_log(snakemake)
meta = {"url": snakemake.params.url, "sha256": snakemake.params.sha256}
payload = checkpoints.convert(Path(snakemake.input.raw), Path(snakemake.output.weights), meta)
print(f"{len(payload['state_dict'])} tensors, width_per_group {payload['width_per_group']}", end=", ")
print(f"{payload['num_classes']} classes")
