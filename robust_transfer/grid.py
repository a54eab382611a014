"""The experiment grid: which runs exist, which each figure needs, and the settings each job gets.

Pure Python (no torch, numpy or pandas): the Snakefile imports this at parse time, and the
Snakefile is re-parsed for every cluster job. Every function here turns the config into the
resolved values one job depends on, so that a rule hands its script exactly those (`params:`)
and editing a key reruns exactly the jobs that use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

FULL = "full"

# One fine-tuning run's files, without extension (.csv: metrics per logged epoch; .json: metadata).
RUN = "results/runs/{dataset}/{source}/k{k}/n{size}/s{seed}"

# How a source model comes to exist: the key of its config entry that holds the recipe.
SOURCE_KINDS = {
    "url": "fetched from a URL and converted (rules fetch_checkpoint, source)",
    "train": "pretrained here, naturally or adversarially (rule pretrain_source)",
    "random_init": "a random initialisation, the from-scratch baseline (rule random_source)",
}

# Fine-tuning keys that say where a run executes, not what it computes.
PLACEMENT = ("threads",)


@dataclass(frozen=True)
class Run:
    dataset: str
    source: str
    k: int
    size: str  # "100", ..., or "full"
    seed: int

    @property
    def path(self) -> str:
        return RUN.format(**asdict(self))


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


def schedule(finetune: dict, size) -> dict:
    """Epochs and evaluation epochs of a run of this size (first matching max_size wins)."""
    for rule in finetune["schedule"]:
        limit = rule.get("max_size")
        if limit is None or size_key(size) <= limit:
            epochs, every = rule["epochs"], rule["eval_every"]
            evals = sorted(set(range(1, epochs + 1, every)) | {epochs})
            return {"epochs": epochs, "eval_epochs": evals}
    raise ValueError(f"finetune.schedule has no entry for size {size}: add one without max_size")


def run_settings(config: dict, size) -> dict:
    """Everything one fine-tuning run computes with: the `finetune` section, resolved for its
    size (epochs and evaluation epochs instead of the schedule table), without placement."""
    cfg = config["finetune"]
    out = {k: v for k, v in cfg.items() if k not in ("schedule", *PLACEMENT)}
    return {**out, **schedule(cfg, size)}


def pretrain_settings(config: dict, source: str) -> dict:
    """Everything pretraining a source computes with: the `pretrain` section, overridden by the
    source's own `train` entry (dataset, seed, width, attack, and any `pretrain` key)."""
    cfg = config["pretrain"]
    out = {k: v for k, v in cfg.items() if k not in PLACEMENT}
    return {**out, **config["sources"][source]["train"]}


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


def figure_statistics(config: dict, fig: str) -> dict:
    """What a figure's aggregation computes with: its run selection, per-run number and delta.
    Editing the look of a figure (title, y range, styles) reruns its drawing only."""
    spec = config["figures"][fig]
    return {**{k: spec[k] for k in STATISTICS if spec.get(k) is not None}, **figure_selection(config, fig)}


def figure_spec(config: dict, fig: str) -> dict:
    """A figure's config entry with its run selection resolved, display names, palette, title
    tag, and its published y range unless `paper_ylim` is off."""
    spec = {k: v for k, v in config["figures"][fig].items() if v is not None}
    if not config.get("paper_ylim", True):
        spec.pop("ylim", None)
    spec = {**spec, **figure_selection(config, fig), "palette": list(config["datasets"])}
    spec["labels"] = {**(config.get("labels") or {}), **(spec.get("labels") or {})}
    if config.get("title_tag"):
        spec["title_tag"] = config["title_tag"]
    return spec


def figure_runs(config: dict, fig: str) -> list[Run]:
    sel = figure_selection(config, fig)
    return [
        Run(d, s, k, size, seed)
        for d in sel["datasets"]
        for s in sel["sources"]
        for k in source_ks(sel, s)
        for size in sel["sizes"]
        for seed in seeds(config, size)
    ]


def in_all(config: dict) -> list[str]:
    """The figures and tables `snakemake` (rule all) builds: all but the named variants."""
    return [f for f, spec in config["figures"].items() if spec.get("in_all", True)]


def all_runs(config: dict) -> list[Run]:
    """Every run some figure or table of `all` needs, each once, in a stable order."""
    seen: dict[Run, None] = {}
    for fig in in_all(config):
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
