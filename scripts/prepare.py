"""Snakemake entry point: both splits of a dataset as uint8 arrays at the configured size."""

from pathlib import Path

from robust_transfer import data
from robust_transfer.joblog import to_log

to_log(snakemake)
splits = data.prepare(snakemake.params.spec, Path(snakemake.input.ready).parent)
for name, (images, labels, *extents) in splits.items():
    data.save_split(snakemake.output[name], images, labels, *extents)
    print(f"{name}: images {images.shape} {images.dtype}, {len(set(labels.tolist()))} classes")
