"""Snakemake entry point: download a source checkpoint, sha256-verified when configured."""

from pathlib import Path

from robust_transfer import checkpoints
from robust_transfer.logs import to_log

to_log(snakemake)
spec = snakemake.config["sources"][snakemake.wildcards.source]
checkpoints.fetch(spec["url"], Path(snakemake.output.raw), spec.get("sha256"))
