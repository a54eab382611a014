"""The config's cross-references, checked before any job starts (the schema cannot express them):
one message per problem, all at once. Pure Python, at parse time.
"""

from __future__ import annotations

from .grid import FULL, figure_runs, figure_selection, is_study_figure, source_kind, source_ks
from .recipes import schedule, subset_rule
from .sizes import class_count, train_size

BLOCKS = 16  # residual blocks of a ResNet-50 ([3, 4, 6, 3]): k is 0 ... 16


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
    from .datasets import LOADERS

    out = []
    datasets, sources = config["datasets"], config["sources"]
    for name, spec in datasets.items():
        loader = LOADERS.get(spec["loader"])
        if loader is None:
            out.append(f"datasets.{name}.loader {spec['loader']!r} is not one of {sorted(LOADERS)}")
        elif spec.get("lowpass") and spec.get("train_crop") in ("random", "random_resized"):
            out.append(f"datasets.{name}: lowpass filters the square stored image; it needs train_crop: center")
        elif not loader.official_split and not spec.get("split"):
            out.append(
                f"datasets.{name}: {spec['loader']} has no official train/test split; "
                "set split: {seed: ..., train_per_class: ...}, {seed: ..., test_fraction: ...} "
                "or {first_per_class: ...} (the first images of each class, in file order)"
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
    out += _study_problems(config)
    for fig in config["figures"]:
        out += _study_figure_problems(config, fig) if is_study_figure(config, fig) else _figure_problems(config, fig)
    return out


def _study_problems(config: dict) -> list[str]:
    from .studies import ARCH_NAMES

    out = []
    for name, study in (config.get("studies") or {}).items():
        if study["recipe"] not in config:
            out.append(f"studies.{name}.recipe {study['recipe']!r} is not a settings section of the config")
        out += [
            f"studies.{name}.datasets: {d!r} is not in datasets"
            for d in study["datasets"]
            if d not in config["datasets"]
        ]
        spec = study.get("sources") or {}
        for family in spec.get("families", []):
            out += [
                f"studies.{name}.sources.families: arch {a!r} is not one of {sorted(ARCH_NAMES)}"
                for a in family["archs"]
                if a not in ARCH_NAMES
            ]
        if spec.get("families") and not spec.get("url") and spec.get("train") is None:
            out.append(f"studies.{name}.sources: set url (a pattern to fetch from) or train (pretrain them here)")
        for extra in spec.get("extra") or []:
            source = config["sources"].get(extra)
            if source is None:
                out.append(f"studies.{name}.sources.extra: {extra!r} is not in sources")
            elif any(source.get(k) is None for k in ("arch", "norm", "eps")):
                out.append(f"studies.{name}.sources.extra: sources.{extra} needs arch, norm and eps (figure axes)")
    out += [
        f"studies_in_all: {s!r} is not in studies ({sorted(config.get('studies') or {})})"
        for s in config.get("studies_in_all") or []
        if s not in (config.get("studies") or {})
    ]
    for name, spec in config["sources"].items():
        if spec.get("arch") is not None and spec["arch"] not in ARCH_NAMES:
            out.append(f"sources.{name}.arch {spec['arch']!r} is not one of {sorted(ARCH_NAMES)}")
    return out


def _study_figure_problems(config: dict, fig: str) -> list[str]:
    from . import studies

    study = config["figures"][fig]["study"]
    if study not in (config.get("studies") or {}):
        return [f"figures.{fig}.study {study!r} is not in studies ({sorted(config.get('studies') or {})})"]
    if not fig.startswith(f"{study}/"):
        return [f"figures.{fig}: a figure of study {study} is named {study}/<id> (its target: figures/{study}/<id>)"]
    sel = studies.selection(config, fig)
    out = [f"figures.{fig}: dataset {d!r} is not in datasets" for d in sel["datasets"] if d not in config["datasets"]]
    out += [f"figures.{fig}: source {s!r} is not in sources" for s in sel["sources"] if s not in config["sources"]]
    if not out and not sel["sources"]:
        out.append(f"figures.{fig} selects no sources: check its archs, norm and eps against studies.{study}.sources")
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
