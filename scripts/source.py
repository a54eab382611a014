"""Snakemake entry point: convert a downloaded checkpoint into the canonical source file."""

from pathlib import Path

from robust_transfer import checkpoints
from robust_transfer.logs import to_log

to_log(snakemake)
spec = snakemake.config["sources"][snakemake.wildcards.source]
payload = checkpoints.convert(Path(snakemake.input.raw), Path(snakemake.output.weights), {"url": spec["url"], "sha256": spec.get("sha256")})
print(f"{len(payload['state_dict'])} tensors, width_per_group {payload['width_per_group']}, {payload['num_classes']} classes")
