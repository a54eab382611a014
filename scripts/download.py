"""Snakemake entry point: fetch a raw dataset (mirror first) for torchvision."""

from pathlib import Path

from robust_transfer import data
from robust_transfer.logs import to_log

to_log(snakemake)
cfg = snakemake.config["data"]
root = Path(snakemake.output.ready).parent
mirror = Path(cfg["mirror"]) / snakemake.wildcards.loader if cfg.get("mirror") else None
data.download(snakemake.wildcards.loader, root, mirror, cfg.get("offline", False))
Path(snakemake.output.ready).write_text("ok\n")
