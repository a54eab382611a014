"""The experiment grid: which runs exist, which each figure needs, and the settings each job gets.

Pure Python (no torch, numpy or pandas): the Snakefile imports this at parse time, and the
Snakefile is re-parsed for every cluster job. Every function here turns the config into the
resolved values one job depends on, so that a rule hands its script exactly those (`params:`)
and editing a key reruns exactly the jobs that use it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

FULL = "full"

# One fine-tuning run's files, without extension (.csv: metrics per logged epoch; .json: metadata).
# `tuning` says how the source is fine-tuned: k<k> for the Utrera recipe (`finetune`: the last k
# blocks train), <recipe>-<mode>-lr<lr> for another recipe section (Salman et al.'s `salman`).
RUN = "results/runs/{dataset}/{source}/{tuning}/n{size}/s{seed}"
DEFAULT_RECIPE = "finetune"  # the config section of Utrera's recipe; its runs' paths name only k
# Salman et al.'s two modes as k: every parameter trains (their --freeze-level -1), or the head
# only (fixed-feature; BatchNorm statistics still move, as in their code). A path names a mode
# by its first word (full, fixed).
MODES = {-1: "full-network", 0: "fixed-feature"}
MODE_K = {name: k for k, name in MODES.items()}
_TUNING = r"k(?P<k>\d+)|(?P<recipe>[a-z0-9]+)-(?P<mode>full|fixed)-lr(?P<lr>[0-9.e-]+)"
TUNING = re.sub(r"\(\?P<\w+>", "(?:", _TUNING)  # the wildcard's pattern (Snakemake wraps it in its group)


# How a source model comes to exist: the key of its config entry that holds the recipe.
SOURCE_KINDS = {
    "url": "fetched from a URL and converted (rules fetch_checkpoint, source)",
    "train": "pretrained here, naturally or adversarially (rule pretrain_source)",
    "random_init": "a random initialisation, the from-scratch baseline (rule random_source)",
}


def lr_text(lr: float) -> str:
    """A learning rate as a path names it: 0.01 -> "0.01", 1e-05 -> "1e-05"."""
    return format(float(lr), "g")


@dataclass(frozen=True)
class Run:
    dataset: str
    source: str
    k: int  # blocks fine-tuned; -1: every parameter (Salman's full-network), 0: the head only
    size: str  # "100", ..., or "full"
    seed: int
    recipe: str = DEFAULT_RECIPE  # the config section of its fine-tuning settings
    lr: float | None = None  # the learning rate of a recipe with a grid of them (None: the recipe's)

    @property
    def tuning(self) -> str:
        if self.recipe == DEFAULT_RECIPE:
            return f"k{self.k}"
        return f"{self.recipe}-{MODES[self.k].split('-')[0]}-lr{lr_text(self.lr)}"

    @property
    def mode(self) -> str:
        """Salman et al.'s name of the run's mode (full-network, fixed-feature), else k=<k>."""
        return f"k={self.k}" if self.recipe == DEFAULT_RECIPE else MODES[self.k]

    @property
    def path(self) -> str:
        return RUN.format(dataset=self.dataset, source=self.source, tuning=self.tuning, size=self.size, seed=self.seed)

    @classmethod
    def of(cls, wildcards) -> Run:
        """The run of a finetune job's wildcards (text, as Snakemake gives them)."""
        w = wildcards
        m = re.fullmatch(_TUNING, w.tuning)
        if m is None:
            raise ValueError(f"{w.tuning!r} is not a run's tuning (k<k> or <recipe>-<full|fixed>-lr<lr>)")
        if m["k"] is not None:
            return cls(w.dataset, w.source, int(m["k"]), w.size, int(w.seed))
        k = next(k for k, name in MODES.items() if name.startswith(f"{m['mode']}-"))
        return cls(w.dataset, w.source, k, w.size, int(w.seed), m["recipe"], float(m["lr"]))


def size_key(size) -> float:
    """Sort key and numeric value of a size label; "full" sorts last."""
    return float("inf") if str(size) == FULL else float(size)


def source_kind(spec: dict) -> str:
    """Which of SOURCE_KINDS a source entry is: the one recipe key that is set (not null)."""
    kinds = [k for k in SOURCE_KINDS if spec.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError(f"a source needs exactly one of {list(SOURCE_KINDS)}, got {kinds or 'none'}")
    return kinds[0]


def sources_of_kind(config: dict, kind: str) -> list[str]:
    return [name for name, spec in config["sources"].items() if source_kind(spec) == kind]


def seeds(config: dict, size) -> list[int]:
    """Seeds of a training-set size: seed i is base + step * i (the paper: 20000000 + 100000 i)."""
    spec = config["grid"]["seeds"]
    by_size = {str(k): v for k, v in (spec.get("by_size") or {}).items()}  # YAML may give int keys
    count = by_size.get(str(size), spec["count"])
    return [spec["base"] + spec["step"] * i for i in range(count)]


def cluster_packs(config: dict, runs: list[Run]) -> dict[str, str]:
    """Run path -> the name of its pack on a cluster (rules/finetune.smk `group:`; one
    submission per pack): `runs` (those to be made) grouped by dataset, by size, source, k and
    seed (and by architecture), cut so that a pack's time limits (plan.time_limit) add up to at most
    pack.cluster_hours (a run longer than that is a pack of its own)."""
    from .plan import time_limit

    budget = config["pack"]["cluster_hours"] * 60
    by_dataset: dict[tuple[str, str], list[Run]] = {}
    for run in dict.fromkeys(runs):  # and by architecture: a pack loads one kind of model
        arch = config["sources"][run.source].get("arch") or "resnet50"
        by_dataset.setdefault((run.dataset, arch), []).append(run)
    packs = {}
    for (dataset, arch), members in by_dataset.items():
        pack, used = 0, 0
        name = dataset if arch == "resnet50" else f"{dataset}-{arch}"
        for run in sorted(members, key=lambda r: (size_key(r.size), r.source, r.recipe, r.k, r.lr or 0, r.seed)):
            minutes = time_limit(config, run)
            if used and used + minutes > budget:
                pack, used = pack + 1, 0
            used += minutes
            packs[run.path] = f"finetune-{name}-{pack}"
    return packs


def figure_selection(config: dict, fig: str) -> dict:
    """The runs a figure or table uses, with every default filled in from `grid`."""
    spec = config["figures"][fig]
    grid = config["grid"]
    delta = spec.get("delta")
    sel = {
        "datasets": spec.get("datasets") or grid["datasets"],
        "sources": spec.get("sources") or grid["sources"],
        "k": spec.get("k") or grid["k"],
        "sizes": [str(s) for s in spec.get("sizes") or grid["sizes"]],
        "k_by_source": spec.get("k_by_source") or {},
    }
    if delta:
        key = {"source": "sources", "k": "k"}[delta["by"]]
        pair = [delta["a"], delta["b"]]
        sel[key] = pair if spec["kind"] == "delta" else sel[key] + [x for x in pair if x not in sel[key]]
    return sel


def source_ks(selection: dict, source: str) -> list[int]:
    """The k values a figure uses for one source (`k_by_source` overrides `k`)."""
    return [int(k) for k in selection["k_by_source"].get(source, selection["k"])]


# The keys of a figure entry that decide its numbers; the rest is its look.
STATISTICS = ("kind", "metric", "epochs", "delta")


# A study figure's keys that decide its numbers (studies.py); the rest is its look.
STUDY_STATISTICS = ("kind", "accuracy", "origin")
TABLE_KINDS = ("table", "headline", "archs", "peak")  # written as CSV and Markdown, not drawn


def is_study_figure(config: dict, fig: str) -> bool:
    return bool(config["figures"][fig].get("study"))


def figure_statistics(config: dict, fig: str) -> dict:
    """What a figure's aggregation computes with: its run selection, per-run number and delta,
    and the number of seeds each size should have. Editing the look of a figure (title, y range,
    styles) reruns its drawing only. A study figure's: its selection, accuracy (top-1, or the
    authors' choice: mean per-class on their per-class datasets), the sources' metadata."""
    from . import studies

    spec = config["figures"][fig]
    if is_study_figure(config, fig):
        sel = studies.selection(config, fig)
        recipe = config[sel["recipe"]]
        loaders = {d: config["datasets"][d]["loader"] for d in sel["datasets"]}
        return {
            **{k: spec[k] for k in STUDY_STATISTICS if spec.get(k) is not None},
            **sel,
            "k": [MODE_K[m] for m in sel["modes"]],
            "per_class": [d for d, loader in loaders.items() if loader in recipe["per_class"]],
            "source_meta": {s: studies.source_meta(config, s) for s in sel["sources"]},
            "seeds": {FULL: len(sel["seeds"])},
        }
    sel = figure_selection(config, fig)
    counts = {size: len(seeds(config, size)) for size in sel["sizes"]}
    return {**{k: spec[k] for k in STATISTICS if spec.get(k) is not None}, **sel, "seeds": counts}


def figure_spec(config: dict, fig: str) -> dict:
    """A figure's config entry with its run selection resolved, display names, palette, title
    tag, and its published y range unless `paper_ylim` is off."""
    spec = {k: v for k, v in config["figures"][fig].items() if v is not None}
    if not config.get("paper_ylim", True):
        spec.pop("ylim", None)
    spec = {**spec, **figure_statistics(config, fig), "palette": list(config["datasets"])}
    spec["labels"] = {**(config.get("labels") or {}), **(spec.get("labels") or {})}
    if config.get("title_tag"):
        spec["title_tag"] = config["title_tag"]
    if is_study_figure(config, fig):  # what its sources trained on, as axes and tables name it
        spec["source_task"] = config["studies"][spec["study"]].get("source_task", "ImageNet")
    return spec


def figure_runs(config: dict, fig: str) -> list[Run]:
    if is_study_figure(config, fig):
        from . import studies

        return studies.figure_runs(config, fig)
    sel = figure_selection(config, fig)
    return [
        Run(d, s, k, size, seed)
        for d in sel["datasets"]
        for s in sel["sources"]
        for k in source_ks(sel, s)
        for size in sel["sizes"]
        for seed in seeds(config, size)
    ]


def in_all(config: dict, study: str | None = None) -> list[str]:
    """The figures and tables a study's target builds (`snakemake`, rule all: Utrera et al.'s,
    study None; rule salman2020: that study's): all of the study's but the named variants."""
    return [f for f, spec in config["figures"].items() if spec.get("in_all", True) and spec.get("study") == study]


def built_runs(config: dict) -> list[Run]:
    """Every run `snakemake` (all) and the DVC stages build: Utrera et al.'s `all`, and each study
    of `studies_in_all`'s."""
    runs = dict.fromkeys(all_runs(config))
    for study in config.get("studies_in_all") or []:
        runs.update(dict.fromkeys(all_runs(config, study)))
    return list(runs)


def all_runs(config: dict, study: str | None = None) -> list[Run]:
    """Every run some figure or table of a study's `all` needs, each once, in a stable order."""
    seen: dict[Run, None] = {}
    for fig in in_all(config, study):
        for run in figure_runs(config, fig):
            seen.setdefault(run, None)
    return list(seen)


def digest(obj) -> str:
    """A short, stable digest of a JSON-serialisable object (run metadata, caching)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def state_path(output: str) -> str:
    """Where the job making `output` keeps its resume state: beside results/, never among a
    job's declared outputs (Snakemake deletes those before a rerun)."""
    return f"resume/{output.removeprefix('results/')}.state"
