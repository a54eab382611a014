"""The experiment grid: which runs exist, which each figure needs, and the settings each job gets.

Pure Python (no torch, numpy or pandas): the Snakefile imports this at parse time, and the
Snakefile is re-parsed for every cluster job. Every function here turns the config into the
resolved values one job depends on, so that a rule hands its script exactly those (`params:`)
and editing a key reruns exactly the jobs that use it.
"""

from __future__ import annotations

import hashlib
import json
import math
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

# Training keys that say where a job executes, not what it computes: never params, so changing
# one reruns nothing (threads reach a job as its `threads:`, allow_cpu through the config).
PLACEMENT = ("threads", "allow_cpu")


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

    @classmethod
    def of(cls, wildcards) -> Run:
        """The run of a finetune job's wildcards (text, as Snakemake gives them)."""
        w = wildcards
        return cls(w.dataset, w.source, int(w.k), w.size, int(w.seed))


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


NO_AUGMENT = {"pad": 0, "flip": False, "jitter": 0, "degrees": 0}


def run_settings(config: dict, dataset: str, source: str, size) -> dict:
    """Everything one fine-tuning run computes with: the `finetune` section resolved for its
    size (epochs and evaluation epochs instead of the schedule table), without placement, and
    its source's recipe: a source model's weights normalised with ImageNet's statistics and an
    N(0, head_std) head; or, from scratch (`random_init`), the authors' switches: a fresh init
    per run seed (init: run), PyTorch's default head (head_std: null), the target's own
    statistics, no augmentation on the listed loaders."""
    from .data import LOADERS  # numpy, no torch: still cheap at parse time

    cfg = config["finetune"]
    out = {k: v for k, v in cfg.items() if k not in ("schedule", *PLACEMENT)}
    out.update(schedule(cfg, size), init=None, normalize="imagenet")
    scratch = config["sources"][source].get("random_init")
    loader = LOADERS[config["datasets"][dataset]["loader"]]
    if scratch is not None:
        out["init"] = "run" if scratch["seed"] == "run" else None
        out["head_std"] = None if scratch.get("head", "default") == "default" else cfg["head_std"]
        out["normalize"] = scratch.get("normalize", "dataset")
        if config["datasets"][dataset]["loader"] in scratch.get("no_augment", []):
            out["augment"] = NO_AUGMENT
    stats = (loader.mean, loader.std) if out["normalize"] == "dataset" else (None, None)
    out["mean"], out["std"] = (list(s) if s else None for s in stats)
    return out


def subset_rule(config: dict, source: str) -> str:
    """Which subset rule a source's runs use (data.SUBSET_RULES): the paper's make_mask, or the
    robustness library's make_loaders for from-scratch runs (the authors' `subset` switch)."""
    scratch = config["sources"][source].get("random_init")
    return scratch.get("subset", "make_loaders") if scratch is not None else "make_mask"


def pretrain_settings(config: dict, source: str) -> dict:
    """Everything pretraining a source computes with: the `pretrain` section, overridden by the
    source's own `train` entry (dataset, seed, width, attack, and any `pretrain` key)."""
    merged = {**config["pretrain"], **config["sources"][source]["train"]}
    return {k: v for k, v in merged.items() if k not in PLACEMENT}


def allow_cpu(config: dict, source: str | None = None) -> bool:
    """Whether a training job may run on the CPU when no GPU is visible (device auto): the
    fine-tuning runs' finetune.allow_cpu, or pretraining `source`'s pretrain.allow_cpu (its
    train entry may override it). Placement: the scripts read it here, it is no param."""
    if source is None:
        return bool(config["finetune"]["allow_cpu"])
    return bool({**config["pretrain"], **config["sources"][source]["train"]}["allow_cpu"])


def cluster_packs(config: dict, runs: list[Run]) -> dict[str, str]:
    """Run path -> the name of its pack on a cluster (rules/finetune.smk `group:`; one
    submission per pack): `runs` (those to be made) grouped by dataset, by size, source, k and
    seed, cut so that a pack's time limits (run_minutes) add up to at most
    pack.cluster_hours (a run longer than that is a pack of its own)."""
    budget = config["pack"]["cluster_hours"] * 60
    by_dataset: dict[str, list[Run]] = {}
    for run in dict.fromkeys(runs):
        by_dataset.setdefault(run.dataset, []).append(run)
    packs = {}
    for dataset, members in by_dataset.items():
        pack, used = 0, 0
        for run in sorted(members, key=lambda r: (size_key(r.size), r.source, r.k, r.seed)):
            minutes = run_minutes(config, dataset, run.size)
            if used and used + minutes > budget:
                pack, used = pack + 1, 0
            used += minutes
            packs[run.path] = f"finetune-{dataset}-{pack}"
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


def figure_statistics(config: dict, fig: str) -> dict:
    """What a figure's aggregation computes with: its run selection, per-run number and delta,
    and the number of seeds each size should have. Editing the look of a figure (title, y range,
    styles) reruns its drawing only."""
    spec = config["figures"][fig]
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


# ---------------------------------------------------------------------------------------------
# The config's cross-references, checked before any job starts

BLOCKS = 16  # residual blocks of a ResNet-50 ([3, 4, 6, 3]): k is 0 ... 16


def _split_rule(config: dict, dataset: str):
    """A dataset's loader record, its `split` entry (None: the official split) and kept classes."""
    from .data import LOADERS

    spec = config["datasets"][dataset]
    return LOADERS[spec["loader"]], spec.get("split"), spec.get("classes")


def train_size(config: dict, dataset: str) -> int | None:
    """Images in a dataset's training split as prepare() will make it, where the registry
    tells (None: unknown before preparing)."""
    loader, split, classes = _split_rule(config, dataset)
    if not split:
        return loader.train_size if not classes else None
    counts = loader.class_counts
    if split.get("train_per_class") is not None:
        return split["train_per_class"] * (len(classes) if classes else loader.classes or 0) or None
    if counts is None:
        return None
    kept = [counts[c] for c in classes] if classes else counts
    return sum(c - int(round(c * split["test_fraction"])) for c in kept)


def test_size(config: dict, dataset: str) -> int | None:
    """Images in a dataset's test split as prepare() will make it (every evaluation reads them
    all), where the registry tells (None: unknown before preparing)."""
    loader, split, classes = _split_rule(config, dataset)
    if not split:
        return loader.test_size if not classes else None
    counts = loader.class_counts
    if counts is not None:
        kept = [counts[c] for c in classes] if classes else list(counts)
    elif loader.images and not classes:
        kept = None
    else:
        return None
    if split.get("train_per_class") is not None:
        train = train_size(config, dataset)
        return (sum(kept) if kept else loader.images) - train if train is not None else None
    if kept is None:
        return int(round(loader.images * split["test_fraction"]))
    return sum(int(round(c * split["test_fraction"])) for c in kept)


def class_count(config: dict, dataset: str) -> int | None:
    from .data import LOADERS

    spec = config["datasets"][dataset]
    return len(spec["classes"]) if spec.get("classes") else LOADERS[spec["loader"]].classes


def _url_problem(url: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return None
    if parts.scheme == "file" and parts.path:
        return None
    if not parts.scheme and "://" not in url and url.strip():
        return None  # a local path
    return f"{url!r} is not an http(s):// or file:// URL or a local path"


def problems(config: dict) -> list[str]:
    """Every cross-reference the schema cannot express, one message per problem."""
    from .data import LOADERS

    out = []
    datasets, sources = config["datasets"], config["sources"]
    for name, spec in datasets.items():
        loader = LOADERS.get(spec["loader"])
        if loader is None:
            out.append(f"datasets.{name}.loader {spec['loader']!r} is not one of {sorted(LOADERS)}")
        elif spec.get("lowpass") and spec.get("train_crop") == "random":
            out.append(f"datasets.{name}: lowpass filters the square stored image; it needs train_crop: center")
        elif not loader.official_split and not spec.get("split"):
            out.append(
                f"datasets.{name}: {spec['loader']} has no official train/test split; "
                "set split: {seed: ..., train_per_class: ...} or {seed: ..., test_fraction: ...}"
            )
    for name, spec in sources.items():
        try:
            kind = source_kind(spec)
        except ValueError as err:
            out.append(f"sources.{name}: {err}")
            continue
        if kind == "train" and spec["train"]["dataset"] not in datasets:
            out.append(f"sources.{name}.train.dataset {spec['train']['dataset']!r} is not in datasets")
        if kind == "url" and (problem := _url_problem(spec["url"])):
            out.append(f"sources.{name}.url: {problem}")
        unknown = [x for x in (spec.get("random_init") or {}).get("no_augment", []) if x not in LOADERS]
        if unknown:
            out.append(f"sources.{name}.random_init.no_augment: {unknown} are not loaders ({sorted(LOADERS)})")
    if config.get("published") and (problem := _url_problem(config["published"]["url"])):
        out.append(f"published.url: {problem}")
    out += [f"grid.datasets: {d!r} is not in datasets" for d in config["grid"]["datasets"] if d not in datasets]
    out += [f"grid.sources: {s!r} is not in sources" for s in config["grid"]["sources"] if s not in sources]
    for fig in config["figures"]:
        out += _figure_problems(config, fig)
    return out


def _figure_problems(config: dict, fig: str) -> list[str]:
    spec, sel = config["figures"][fig], figure_selection(config, fig)
    datasets, sources = config["datasets"], config["sources"]
    out = [f"figures.{fig}: dataset {d!r} is not in datasets" for d in sel["datasets"] if d not in datasets]
    out += [f"figures.{fig}: source {s!r} is not in sources" for s in sel["sources"] if s not in sources]
    out += [f"figures.{fig}.k_by_source: {s!r} is not in sources" for s in sel["k_by_source"] if s not in sources]
    ks = {k for s in sel["sources"] for k in source_ks(sel, s)}
    out += [
        f"figures.{fig}: k={k} is not in ResNet-50, which has {BLOCKS} blocks (k is 0 ... {BLOCKS})"
        for k in sorted(ks)
        if not 0 <= k <= BLOCKS
    ]
    if out:
        return out
    if not figure_runs(config, fig):
        return [f"figures.{fig} selects no runs: check its datasets, sources, k and sizes (and grid)"]
    for d in sel["datasets"]:
        size, classes = train_size(config, d), class_count(config, d)
        for n in sel["sizes"]:
            if n == FULL:
                continue
            if size is not None and int(n) > size:
                out.append(
                    f"figures.{fig}: n={n} is more than the {size} training images of {d}; use a smaller n or full"
                )
            if classes and int(n) < classes and any(subset_rule(config, s) == "make_mask" for s in sel["sources"]):
                out.append(
                    f"figures.{fig}: n={n} is fewer than the {classes} classes of {d}: every class needs an image"
                )
    if spec.get("metric") == "epoch":
        for n in sel["sizes"]:
            logged = schedule(config["finetune"], n)["eval_epochs"]
            missing = [e for e in spec.get("epochs") or [] if e not in logged]
            if missing:
                logged_at = f"n={n} logs epochs {logged}"
                out.append(f"figures.{fig}: epochs {missing} are not logged ({logged_at}); see finetune.schedule")
    return out


# ---------------------------------------------------------------------------------------------
# How long a job may take: the time limit (minutes) a cluster job asks for (`resources: runtime`)
#
# An estimate, not a measurement: one fixed cost per job plus a throughput, fitted to the
# authors' timing of their April-2020 runs (../shared/docs/experiment-spec.md, "Compute"): a mean
# n=100 run took 343 s (100 epochs of 100 images, 6 evaluations of a test set of about 10,000
# images: 70,000 images) and a mean n=25,600 run 3,162 s (150 epochs: 3.84 M training images, 16
# evaluations: 4.0 M images) on their GPUs, at 224 x 224. Those two points give about 290 s of
# fixed cost (start, loading, evaluation set-up) and 1,400 images per second, training and
# evaluation counted alike. Cost scales with the input's pixels (a ResNet-50's work does), so a
# 16-px demo run costs 1/196 of a 224-px one per image. SAFETY covers slower GPUs, busy file
# systems and runs that train more blocks (from scratch, k=16: about 2.5 x the work, still inside
# 3 x); a retry asks for `attempt` times the estimate (rules/common.smk).

RUNTIME_FIXED_S = 290  # seconds per job before the first image
RUNTIME_IMAGES_PER_S = 1400  # 224-px images per second, training and evaluation alike
RUNTIME_PIXELS = 224  # the input size RUNTIME_IMAGES_PER_S was measured at
RUNTIME_SAFETY = 3  # time limit = SAFETY x estimate
RUNTIME_MIN_MINUTES = 10  # never ask for less (start-up of Snakemake and the job itself)
FULL_NETWORK_COST = 2.5  # training every block (pretraining) vs the authors' fine-tuning, per image
ASSUMED_SPLIT = {"train": 50000, "test": 10000}  # a split whose size the registry cannot tell


def split_size(config: dict, dataset: str, split: str) -> int:
    """Images in a dataset's train or test split, exact where the registry tells (official
    splits, per-class splits of known class counts), else an estimate (a class subset of an
    official split: its share of the classes; unknown: ASSUMED_SPLIT). For time limits only."""
    from .data import LOADERS

    spec = config["datasets"][dataset]
    loader = LOADERS[spec["loader"]]
    counts, classes, cut = loader.class_counts, spec.get("classes"), spec.get("split")
    if cut and counts is not None:
        kept = [counts[c] for c in classes] if classes else list(counts)
        if cut.get("train_per_class") is not None:
            train = [min(c, cut["train_per_class"]) for c in kept]
        else:
            train = [c - int(round(c * cut["test_fraction"])) for c in kept]
        return sum(train) if split == "train" else sum(kept) - sum(train)
    if cut and cut.get("train_per_class") is not None and split == "train":
        return cut["train_per_class"] * (len(classes) if classes else loader.classes or 1)
    official = loader.train_size if split == "train" else loader.test_size
    if not cut and official:
        share = len(classes) / loader.classes if classes and loader.classes else 1
        return max(1, int(official * share))
    return ASSUMED_SPLIT[split]


def estimate_minutes(fixed_s: float, images: float, input_size: int, attempt: int = 1) -> int:
    """The time limit of a job that pushes `images` images of `input_size` px through a
    ResNet-50, after `fixed_s` seconds of set-up: SAFETY x the estimate, at least
    RUNTIME_MIN_MINUTES, times the attempt (1, then 2, 3 on retries)."""
    seconds = fixed_s + images * (input_size / RUNTIME_PIXELS) ** 2 / RUNTIME_IMAGES_PER_S
    return attempt * max(RUNTIME_MIN_MINUTES, math.ceil(RUNTIME_SAFETY * seconds / 60))


def run_minutes(config: dict, dataset: str, size, attempt: int = 1) -> int:
    """Time limit of one fine-tuning run: n x epochs training images (n: the run's size, the
    full training split for "full") plus one pass over the test set per logged epoch."""
    cfg = config["finetune"]
    sched = schedule(cfg, size)
    n = split_size(config, dataset, "train") if str(size) == FULL else int(size)
    images = n * sched["epochs"] + split_size(config, dataset, "test") * len(sched["eval_epochs"])
    return estimate_minutes(RUNTIME_FIXED_S, images, cfg.get("input_size", RUNTIME_PIXELS), attempt)


def pretrain_minutes(config: dict, source: str, attempt: int = 1) -> int:
    """Time limit of pretraining a source: every epoch over its training split, each image
    1 + PGD steps times (an adversarial step costs a forward and backward pass per PGD step),
    every block trained (FULL_NETWORK_COST); one clean and one adversarial test pass at the end."""
    cfg = pretrain_settings(config, source)
    attack = cfg.get("attack") or {}
    passes = 1 + (attack.get("steps") or 0 if attack.get("eps") else 0)
    train = split_size(config, cfg["dataset"], "train") * cfg["epochs"] * passes * FULL_NETWORK_COST
    test = split_size(config, cfg["dataset"], "test") * (1 + passes)
    return estimate_minutes(RUNTIME_FIXED_S, train + test, cfg.get("input_size", RUNTIME_PIXELS), attempt)
