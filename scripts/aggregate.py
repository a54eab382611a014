"""Snakemake entry point: the tidy run table of one figure and its summary (mean, bootstrap CI).

The same for every origin of runs: our per-run metrics, or the authors' converted logs."""

# First: the rest of this file runs in a runner process shared with other jobs (config: pack),
# which has imported what follows already.
from robust_transfer.runner import delegate

delegate(snakemake, "light")

from robust_transfer import stats, sweeps
from robust_transfer.joblog import to_log

to_log(snakemake)
spec, cfg = snakemake.params.statistics, snakemake.params.settings
if "study" in spec:  # a study's figure (Salman et al.): the best learning rate per cell
    # published tables mark each row's origin; one origin per figure (our runs have none)
    runs = sweeps.select(stats.read_runs(snakemake.input.runs), spec, spec.get("origin", "submission"))
    runs.to_csv(snakemake.output.runs, index=False)
    summary = sweeps.summary(runs, spec, cfg["bootstrap_seed"], cfg["collapse_margin"], cfg["include_collapsed"])
    summary.to_csv(snakemake.output.summary, index=False)
    cells = summary[summary["role"] == "cell"]
    print(f"{len(runs)} rows; {len(cells)} cells; {int(cells['collapsed'].sum())} collapsed runs")
else:
    runs = stats.select(stats.read_runs(snakemake.input.runs), spec)
    runs = stats.flag_collapsed(runs, cfg["collapse_margin"])
    runs.to_csv(snakemake.output.runs, index=False)
    summary = stats.figure_summary(runs, spec, cfg["bootstrap_seed"], cfg["include_collapsed"])
    summary.to_csv(snakemake.output.summary, index=False)
    flags = runs.drop_duplicates(stats.RUN_KEYS)["collapsed"]
    how = "averaged in" if cfg["include_collapsed"] else "left out (aggregate.include_collapsed: false)"
    short = int((summary["runs"] < summary["expected"]).sum())
    print(f"{len(flags)} runs; {int(flags.sum())} collapsed, {how}; {short} cells short of seeds")
