"""Snakemake entry point: fetch a raw dataset (mirror first) for torchvision."""

from pathlib import Path

from robust_transfer import download
from robust_transfer.joblog import to_log

to_log(snakemake)
mirror = snakemake.params.mirror
root = Path(snakemake.output.ready).parent
download.download(snakemake.wildcards.loader, root, Path(mirror) if mirror else None, snakemake.params.offline)
Path(snakemake.output.ready).write_text("ok\n")
