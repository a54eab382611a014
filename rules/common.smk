import re
from pathlib import Path

from snakemake.utils import validate

from robust_transfer import grid
from robust_transfer.data import LOADERS

validate(config, "../schemas/config.schema.yaml")

# The package's plotting code is an input of figure and table jobs: editing it reruns those
# jobs (and only those). Snakemake tracks `script:` files itself, not the modules they import.
PLOTS_CODE = str(Path(workflow.basedir) / "robust_transfer" / "plots.py")
STATS_CODE = str(Path(workflow.basedir) / "robust_transfer" / "stats.py")
PUBLISHED_CODE = str(Path(workflow.basedir) / "robust_transfer" / "published.py")


def check_config(config):
    """Cross-references the schema cannot express; one error listing every problem."""
    problems = []
    datasets, sources = config["datasets"], config["sources"]
    for name, spec in datasets.items():
        if spec["loader"] not in LOADERS:
            problems.append(
                f"datasets.{name}.loader {spec['loader']!r} is not one of {LOADERS}"
            )
    for name, spec in sources.items():
        train = spec.get("train")
        if train and train["dataset"] not in datasets:
            problems.append(
                f"sources.{name}.train.dataset {train['dataset']!r} is not in datasets"
            )
    for fig in config["figures"]:
        sel = grid.figure_selection(config, fig)
        problems += [
            f"figures.{fig}: dataset {d!r} is not in datasets"
            for d in sel["datasets"]
            if d not in datasets
        ]
        problems += [
            f"figures.{fig}: source {s!r} is not in sources"
            for s in sel["sources"]
            if s not in sources
        ]
    if problems:
        raise WorkflowError(
            "config.yaml has problems:\n  "
            + "\n  ".join(problems)
            + "\nFix these entries (see README, 'Config reference')."
        )


check_config(config)


def _choice(names):
    return "|".join(map(re.escape, names)) or "(?!x)x"


FETCHED = [s for s, spec in config["sources"].items() if "url" in spec]
TRAINED = [s for s, spec in config["sources"].items() if "train" in spec]
RANDOM = [s for s, spec in config["sources"].items() if "random_init" in spec]
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


def dataset_ready(wildcards):
    loader = config["datasets"][wildcards.dataset]["loader"]
    return ancient(f"resources/data/{loader}/READY")


def pretrain_split(split):
    def inner(wildcards):
        return f"results/data/{config['sources'][wildcards.source]['train']['dataset']}/{split}.npz"

    return inner


def run_files(runs):
    return [f"{r.path}.csv" for r in runs]


def figure_runs(wildcards):
    return run_files(grid.figure_runs(config, wildcards.fig))


def figure_spec(wildcards):
    """A figure's resolved config, as a param: editing it reruns that figure's jobs only."""
    return grid.figure_spec(config, wildcards.fig)


def figure_files(prefix, figs):
    return [
        f"{prefix}{f}.{ext}"
        for f in figs
        for ext in (("csv", "md") if f in TABLES else ("pdf",))
    ]


def all_targets():
    return figure_files("figures/", IN_ALL) + ["results/runs.csv"]
