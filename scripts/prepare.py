"""Snakemake entry point: both splits of a dataset as uint8 arrays at the configured size."""

from pathlib import Path

from robust_transfer import datasets, store
from robust_transfer.joblog import to_log

to_log(snakemake)
splits = datasets.prepare(snakemake.params.spec, Path(snakemake.input.ready).parent)
for name, (images, labels, *extents) in splits.items():
    store.save_split(snakemake.output[name], images, labels, *extents)
    print(f"{name}: images {images.shape} {images.dtype}, {len(set(labels.tolist()))} classes")
