"""Snakemake entry point: the papers' headline claims (config: claims), each checked against the
summary of its figure, from our runs and from the published numbers: a CSV and a Markdown table."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

import pandas as pd

from robust_transfer import claims
from robust_transfer.disk import writing
from robust_transfer.joblog import to_log

to_log(snakemake)
figures = list(snakemake.params.figures)
summaries = {}
for origin in ("ours", "published"):
    paths = list(getattr(snakemake.input, origin, None) or [])
    if paths and len(paths) != len(figures):
        raise ValueError(f"{len(paths)} {origin} summaries for {len(figures)} figures {figures}: give one per figure")
    for fig, path in zip(figures, paths):
        summaries[(origin, fig)] = pd.read_csv(path)
checked = claims.table(list(snakemake.params.claims), summaries)
checked.to_csv(snakemake.output.csv, index=False)
with writing(snakemake.output.md, "claims table"):
    with open(snakemake.output.md, "w") as out:
        out.write(claims.markdown(checked))
print(checked["verdict"].value_counts().to_string())
