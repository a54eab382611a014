import os
import re
from pathlib import Path

from snakemake.utils import validate

from robust_transfer import grid
from robust_transfer.data import LOADERS, SUBSET_RULES

validate(config, "../schemas/config.schema.yaml")

# Package modules are inputs of the jobs whose numbers or looks they make: editing one reruns
# those jobs (and only those). Snakemake tracks `script:` files itself, not what they import.
# Relative to the working directory: Snakemake's records of each job's inputs
# (.snakemake/metadata, versioned by DVC: docs/dvc.md) then name the same files in every clone.
PACKAGE = Path(os.path.relpath(Path(workflow.basedir) / "robust_transfer"))
PLOTS_CODE = str(PACKAGE / "plots.py")
STATS_CODE = str(PACKAGE / "stats.py")
PUBLISHED_CODE = str(PACKAGE / "published.py")
METRICS_CODE = str(PACKAGE / "metrics.py")


def check_config(config):
    """Cross-references the schema cannot express (grid.problems); one error listing every one."""
    problems = grid.problems(config)
    if problems:
        raise WorkflowError(
            "config.yaml has problems:\n  "
            + "\n  ".join(problems)
            + "\nFix these entries (see README, 'Config reference')."
        )


check_config(config)


def _choice(names):
    return "|".join(map(re.escape, names)) or "(?!x)x"


FETCHED = grid.sources_of_kind(config, "url")
TRAINED = grid.sources_of_kind(config, "train")
RANDOM = grid.sources_of_kind(config, "random_init")
FIGURES = [f for f, spec in config["figures"].items() if spec["kind"] != "table"]
TABLES = [f for f, spec in config["figures"].items() if spec["kind"] == "table"]
IN_ALL = grid.in_all(config)


wildcard_constraints:
    dataset=_choice(config["datasets"]),
    source=_choice(config["sources"]),
    loader=_choice(LOADERS),
    fig=_choice(config["figures"]),
    k=r"\d+",
    size=r"\d+|full",
    seed=r"\d+",
    method="|".join(SUBSET_RULES),


# ---- resolved settings, one job at a time (params: editing a key reruns exactly its users)


def dataset_spec(wildcards):
    return config["datasets"][wildcards.dataset]


def source_spec(key):
    def inner(wildcards):
        return config["sources"][wildcards.source].get(key)

    return inner


def run_settings(wildcards):
    return grid.run_settings(
        config, wildcards.dataset, wildcards.source, wildcards.size
    )


def run_subset(wildcards):
    method = grid.subset_rule(config, wildcards.source)
    return f"results/subsets/{wildcards.dataset}/{method}/n{wildcards.size}/s{wildcards.seed}.npy"


def pretrain_settings(wildcards):
    return grid.pretrain_settings(config, wildcards.source)


def figure_statistics(wildcards):
    return grid.figure_statistics(config, wildcards.fig)


def figure_spec(wildcards):
    """A figure's resolved config, as a param: editing it reruns that figure's jobs only."""
    return grid.figure_spec(config, wildcards.fig)


def report_labels(wildcards, input):
    """What `snakemake --report` shows beside a figure or table, read from its summary when the
    report is made (never at run time): its runs, the seeds per point, the collapsed runs.
    """
    import pandas as pd

    from robust_transfer import stats

    summary = pd.read_csv(input.summary, dtype={"size": str})
    return {"id": wildcards.fig, **stats.counts(summary)}


# ---- time limits (resources: runtime, minutes), the one place a job's limit comes from: an
# estimate from the job's size, epochs, input size and test set (robust_transfer.grid), times
# the attempt (1, then 2, 3 when profiles/slurm retries a job). A profile's set-resources would
# override it; profiles/slurm leaves runtime of these rules alone.


def finetune_runtime(wildcards, attempt):
    return grid.run_minutes(config, wildcards.dataset, wildcards.size, attempt)


def pretrain_runtime(wildcards, attempt):
    return grid.pretrain_minutes(config, wildcards.source, attempt)


# ---- inputs and targets


def dataset_ready(wildcards):
    loader = config["datasets"][wildcards.dataset]["loader"]
    return ancient(f"resources/data/{loader}/READY")


def pretrain_split(split):
    def inner(wildcards):
        dataset = config["sources"][wildcards.source]["train"]["dataset"]
        return f"results/data/{dataset}/{split}.npz"

    return inner


def metrics_files(runs):
    return [f"{r.path}.csv" for r in runs]


def figure_runs(wildcards):
    return metrics_files(grid.figure_runs(config, wildcards.fig))


def figure_files(prefix, figs):
    return [
        f"{prefix}{f}.{ext}"
        for f in figs
        for ext in (("csv", "md") if f in TABLES else ("pdf",))
    ]


def all_targets():
    """Every figure and table of `all` with its headline numbers and lines (so that `dvc metrics
    show` and `dvc plots show` work after the demo), and the run table."""
    return (
        figure_files("figures/", IN_ALL)
        + figure_metrics_files(IN_ALL)
        + ["results/runs.csv"]
    )


# ---- the targets of dvc.yaml's stages (docs/dvc.md): rules data, runs and figures

SPLITS = ("train", "test")


def data_targets():
    """The prepared datasets and source weights that the runs of `all` use (sources pretrained
    here bring their pretraining dataset along)."""
    runs = grid.all_runs(config)
    datasets = dict.fromkeys(r.dataset for r in runs)
    sources = dict.fromkeys(r.source for r in runs)
    splits = [f"results/data/{d}/{split}.npz" for d in datasets for split in SPLITS]
    return splits + [f"results/sources/{s}.pt" for s in sources]


def figure_metrics_files(figs):
    """Each figure's headline numbers (dvc metrics) and lines (dvc plots)."""
    return [f"results/metrics/{f}.json" for f in figs] + [
        f"results/plots/{f}.csv" for f in figs
    ]
