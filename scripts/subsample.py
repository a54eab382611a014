"""Snakemake entry point: the indices of one (dataset, n, seed) training subset."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import numpy as np

from robust_transfer import store, subsets
from robust_transfer.joblog import to_log

to_log(snakemake)
labels = store.load_labels(snakemake.input.train)  # a broken split fails naming the file
w = snakemake.wildcards
idx = subsets.draw_subset(w.method, labels, w.size, int(w.seed))
np.save(snakemake.output.idx, idx)
print(f"{len(idx)} of {len(labels)} images, {len(np.unique(labels[idx]))} classes")
