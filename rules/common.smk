import collections
import copy
import os
import re
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.utils import update_config, validate

from robust_transfer import checks, configs, grid, names, recipes, studies
from robust_transfer.datasets import LOADERS
from robust_transfer.subsets import SUBSET_RULES

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"


def compose_config():
    """config.yaml, then the workflow profile's overlays, then --configfile, then --config
    (robust_transfer.configs): Snakemake itself drops a profile's `configfile:` as soon as the
    command line names one, which silently swaps the demo for the paper's grid. Cluster jobs get
    the whole list back as their --configfiles."""
    settings = workflow.config_settings
    profile = configs.workflow_profile(sys.argv, workflow.basedir)
    overlays = configs.profile_overlays(profile)
    missing = configs.missing_overlays(overlays, workflow.overwrite_configfiles)
    if not missing or settings.replace_workflow_config:
        return
    given = [os.path.relpath(f) for f in workflow.overwrite_configfiles]
    base = configs.missing_overlays(workflow.configfiles, given)  # config.yaml
    # Exactly as Snakemake merges `--configfiles <overlays> <given>`: the overlays (and --config)
    # first, then config.yaml under them, then the overlays again. Key order matters: a param
    # is recorded as text, so the same values in another order would rerun its jobs.
    overlay = {}
    for path in missing:
        update_config(overlay, yaml.safe_load(Path(path).read_text()) or {})
    update_config(overlay, copy.deepcopy(dict(settings.overwrite_config)))
    composed = copy.deepcopy(overlay)
    for path in base:
        update_config(composed, yaml.safe_load(Path(path).read_text()) or {})
    update_config(composed, overlay)
    config.clear()
    config.update(composed)
    settings.configfiles = [Path(p) for p in missing] + list(
        workflow.overwrite_configfiles
    )
    logger.info(
        f"config: {' + '.join([*base, *missing, *given])}"
        f" ({', '.join(missing)} from the workflow profile {profile.parent})"
    )


def check_schema(config):
    """Text from --config typed as the schema wants; then one short line per problem."""
    schema = configs.load_schema(SCHEMA)
    configs.coerce(config, schema)
    problems = configs.problems(config, schema)
    if problems:
        raise WorkflowError(configs.error_text(problems, "schemas/config.schema.yaml"))
    validate(config, str(SCHEMA))  # fills the schema's defaults


compose_config()
check_schema(config)
# each study's source families, as sources entries
studies.expand(config, Path(workflow.basedir))

# Package modules are inputs of the jobs whose numbers or looks they make: editing one reruns
# those jobs (and only those). Snakemake tracks `script:` files itself, not what they import.
# Relative to the working directory: Snakemake's records of each job's inputs
# (.snakemake/metadata, versioned by DVC: docs/dvc.md) then name the same files in every clone.
PACKAGE = Path(os.path.relpath(Path(workflow.basedir) / "robust_transfer"))
# figures and tables, and their display names
PLOTS_CODE = [str(PACKAGE / "plots.py"), str(PACKAGE / "names.py")]
STATS_CODE = str(PACKAGE / "stats.py")
PUBLISHED_CODE = str(PACKAGE / "published.py")
METRICS_CODE = str(PACKAGE / "metrics.py")
CLAIMS_CODE = str(PACKAGE / "claims.py")
SWEEPS_CODE = str(PACKAGE / "sweeps.py")  # a study figure's numbers and look


def figure_code(code):
    """A figure job's code inputs: `code`, and sweeps.py for a study's figure."""

    def inner(wildcards):
        study = grid.is_study_figure(config, wildcards.fig)
        return list(code) + ([SWEEPS_CODE] if study else [])

    return inner


stats_code = figure_code([STATS_CODE])  # aggregation
plots_code = figure_code(PLOTS_CODE)  # drawing and tables


def check_config(config):
    """Cross-references the schema cannot express (checks.problems); one error listing every one."""
    problems = checks.problems(config)
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
FIGURES = [f for f, s in config["figures"].items() if s["kind"] not in grid.TABLE_KINDS]
TABLES = [f for f, s in config["figures"].items() if s["kind"] in grid.TABLE_KINDS]
IN_ALL = grid.in_all(config)  # Utrera et al.'s: `snakemake` (rule all)
STUDIES = list(config.get("studies") or {})


wildcard_constraints:
    dataset=_choice(config["datasets"]),
    source=_choice(config["sources"]),
    loader=_choice(LOADERS),
    fig=_choice(config["figures"]),
    tuning=grid.TUNING,
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
    return recipes.settings_of(config, grid.Run.of(wildcards))


def run_threads(wildcards):
    """A run's CPU threads: its recipe section's (placement: no param, no rerun)."""
    return config[grid.Run.of(wildcards).recipe]["threads"]


def run_subset(wildcards):
    method = recipes.subset_rule(config, wildcards.source)
    return f"results/subsets/{wildcards.dataset}/{method}/n{wildcards.size}/s{wildcards.seed}.npy"


def pretrain_settings(wildcards):
    return recipes.pretrain_settings(config, wildcards.source)


def figure_statistics(wildcards):
    return grid.figure_statistics(config, wildcards.fig)


def figure_spec(wildcards):
    """A figure's resolved config, as a param: editing it reruns that figure's jobs only."""
    return grid.figure_spec(config, wildcards.fig)


def figure_caption(wildcards):
    """The readable names in a figure's report caption (report/*.rst): its title filled in, its
    datasets, sources and delta by their display names in the active config (the demo's too).
    From figure_spec and the top-level labels (in that spec already): it reruns nothing that
    editing the figure would not.
    """
    return names.caption(grid.figure_spec(config, wildcards.fig), config.get("labels"))


def report_labels(wildcards, input):
    """What `snakemake --report` shows beside a figure or table, read from its summary when the
    report is made (never at run time): its runs, the seeds per point, the collapsed runs.
    As text: the report leaves a numeric 0 blank.
    """
    import pandas as pd

    from robust_transfer import stats

    summary = pd.read_csv(input.summary, dtype={"size": str})
    return {
        "id": wildcards.fig,
        **{k: str(v) for k, v in stats.counts(summary).items()},
    }


# ---- cost before work, then progress (Snakefile `onstart`: after the DAG is built, before the
# first job; never in dry runs or inside cluster jobs)


def planned_jobs():
    """What this invocation will make: its fine-tuning runs, and the datasets it prepares and
    the sources it makes (pretrained, converted or drawn)."""
    runs, datasets, sources = [], set(), {}
    for job in workflow.dag.needrun_jobs():
        w, name = job.wildcards, job.rule.name
        if name == "finetune":
            runs.append(grid.Run.of(w))
        elif name == "prepare":
            datasets.add(w.dataset)
        elif name in ("pretrain_source", "source", "random_source"):
            sources[w.source] = name
    return runs, datasets, sources


def before_work():
    """Print what this invocation will train and stop above cost.max_device_hours; then watch
    the grid's progress on a terminal."""
    from robust_transfer import plan, progress

    if "code" in map(str, workflow.rerun_triggers):
        logger.warning(
            "rerun trigger 'code' is on (no profile of this workflow in use?): a touch, git "
            "checkout or cp -r of a script replans every finished job of its rule; the profiles "
            "use --rerun-triggers mtime params input software-env (README, 'Safe by default')."
        )
    runs, datasets, sources = planned_jobs()
    if not runs:
        return
    costs = plan.load_costs()
    device = plan.device_for(config, costs)
    text, hours = plan.summary(config, runs, device, costs, (datasets, set(sources)))
    pretrain = sum(kind == "pretrain_source" for kind in sources.values())
    extra = f"; and {pretrain} source pretraining jobs" if pretrain else ""
    logger.info(f"Cost of this invocation{extra}:\n{text}")
    targets = [
        *map(str, workflow.dag.targetfiles),
        *(r.name for r in workflow.dag.targetrules),
    ]
    stop = plan.gate(hours, config["cost"]["max_device_hours"], targets)
    if stop:
        raise WorkflowError(stop)
    if sys.stderr.isatty():
        planned = {
            f"{r.path}.json": plan.run_seconds_of(config, r, device) for r in runs
        }
        watch = progress.Watch(planned, logger.info)
        watch.start()
        WATCHES.append(watch)


WATCHES = []  # the progress watcher of this invocation, if any


def after_work():
    """The grid's last progress line (Snakefile `onsuccess` and `onerror`)."""
    for watch in WATCHES:
        watch.finish()


# ---- time limits (resources: runtime, minutes), the one place a job's limit comes from: the cost
# model of robust_transfer.plan (benchmarks/costs.yaml, the device of the config's `cost`), the
# same that prints an invocation's cost, with a margin, times the attempt (1, then 2, 3 when
# profiles/slurm retries a job). A profile's set-resources would override it; profiles/slurm
# leaves runtime of these rules alone.


def finetune_runtime(wildcards, attempt):
    from robust_transfer import plan

    return plan.time_limit(config, grid.Run.of(wildcards), attempt)


def pretrain_runtime(wildcards, attempt):
    from robust_transfer import plan

    return plan.pretrain_limit(config, wildcards.source, attempt)


# ---- packs on a cluster (pack.cluster_hours): the `group` of each fine-tuning job.
# Snakemake forms groups only when jobs go to a cluster (and in its dry runs); a group job is one
# submission asking for the sum of its runs' time limits, and its runs share a runner
# (robust_transfer.runner).


def finetune_pack(wildcards):
    """The pack of a run among the runs this invocation makes (grid.cluster_packs). Snakemake
    asks once the jobs to run are known (before it forms groups); every pack of two or more
    runs then becomes one group job (Snakemake merges only the jobs of a group named in its
    group_components; --group-components given on the command line are kept)."""
    global PACKS
    if not workflow.non_local_exec_or_dryrun:  # a local run: Snakemake forms no groups
        return None
    if PACKS is None:
        runs = [
            grid.Run.of(job.wildcards)
            for job in workflow.dag.needrun_jobs()
            if job.rule.name == "finetune"
        ]
        packs = grid.cluster_packs(config, runs)
        sizes = collections.Counter(packs.values())
        PACKS = {path: pack for path, pack in packs.items() if sizes[pack] > 1}
        settings = workflow.group_settings
        merged = dict.fromkeys(PACKS.values(), max(1, len(runs)))
        merged.update(settings.group_components)
        settings.group_components = type(settings.group_components)(merged)
        # A pack asks for one GPU and runs its members one after another, its time limit their
        # sum: Snakemake lays a group job out within --resources, which on a cluster caps
        # nothing else (profiles/slurm: the gpu resource is local to each submission).
        workflow.global_resources["gpu"] = 1
    return PACKS.get(
        grid.Run.of(wildcards).path
    )  # None: a run alone is a job of its own


PACKS = None


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


def study_published(key):
    """A file of a study's published tables, relative to the workflow (the repository ships it)."""

    def inner(wildcards):
        path = (
            Path(workflow.basedir)
            / config["studies"][wildcards.study]["published"][key]
        )
        return os.path.relpath(path)

    return inner


def published_runs(wildcards):
    """The published run table of a figure's study: Utrera et al.'s logs, or a study's tables."""
    study = config["figures"][wildcards.fig].get("study")
    return [
        f"results/published/{study}/runs.csv" if study else "results/published/runs.csv"
    ]


def claim_list(wildcards):
    """The claims of a study (Utrera et al.'s: the top-level `claims`)."""
    study = wildcards.get("study")
    return (config["studies"][study] if study else config).get("claims") or []


def claim_figures(wildcards):
    return list(dict.fromkeys(c["figure"] for c in claim_list(wildcards)))


def claim_summaries(prefix):
    def inner(wildcards):
        return [f"{prefix}{fig}/summary.csv" for fig in claim_figures(wildcards)]

    return inner


def figure_files(prefix, figs):
    return [
        f"{prefix}{f}.{ext}"
        for f in figs
        for ext in (("csv", "md") if f in TABLES else ("pdf",))
    ]


def built_figures():
    """The figures and tables of each study in `studies_in_all` (beside Utrera et al.'s IN_ALL)."""
    return [f for s in config["studies_in_all"] for f in grid.in_all(config, s)]


def all_targets():
    """Every figure and table of `all` with its headline numbers and lines (so that `dvc metrics
    show` and `dvc plots show` work after the demo), and the run table; and the figures and
    tables of the studies in `studies_in_all`."""
    return (
        figure_files("figures/", IN_ALL + built_figures())
        + figure_metrics_files(IN_ALL)
        + ["results/runs.csv"]
    )


# ---- the targets of dvc.yaml's stages (docs/dvc.md): rules data, runs and figures

SPLITS = ("train", "test")


def data_targets():
    """The prepared datasets and source weights that the runs of `all` use (sources pretrained
    here bring their pretraining dataset along)."""
    runs = grid.built_runs(config)
    datasets = dict.fromkeys(r.dataset for r in runs)
    sources = dict.fromkeys(r.source for r in runs)
    splits = [f"results/data/{d}/{split}.npz" for d in datasets for split in SPLITS]
    return splits + [f"results/sources/{s}.pt" for s in sources]


def figure_metrics_files(figs):
    """Each figure's headline numbers (dvc metrics) and lines (dvc plots)."""
    return [f"results/metrics/{f}.json" for f in figs] + [
        f"results/plots/{f}.csv" for f in figs
    ]
