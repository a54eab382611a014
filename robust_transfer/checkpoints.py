"""Source checkpoints: convert to one canonical, tensors-only file (downloads: files.fetch).

Downloaded files are never fully unpickled: they load with ``torch.load(weights_only=True)``,
which builds tensors, containers and numbers only; the few other types a robustness-library
checkpoint really holds (NumPy scalars for its accuracies, an argparse Namespace of plain
values) are admitted by name. Anything else is refused before it runs.

Canonical file (loads with ``torch.load(weights_only=True)``)::

    {"arch": <archs.ARCHS>, "width_per_group": int (ResNet family only), "num_classes": int,
     "state_dict": <torchvision keys>, "meta": {str: str}}

A file without "arch" (written before there were others) is a ResNet-50.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from . import archs


class BadCheckpoint(ValueError):
    pass


def _safe_globals() -> list:
    """What a robustness-library checkpoint holds besides tensors: NumPy scalars and their
    dtypes (best_prec1 and friends), and an argparse Namespace of settings."""
    scalar = getattr(np, "_core", np.core).multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [scalar, np.dtype, *dtypes, argparse.Namespace]


def safe_load(path: Path):
    """torch.load with weights_only=True and the robustness library's few extra types; a file
    that needs anything else (a function, a class that runs code) raises BadCheckpoint naming
    the file, what it asked for, and the fix."""
    try:
        with _admitting(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise BadCheckpoint(
            f"{path}: refused to unpickle {_found(path, err)}. A checkpoint may hold tensors, containers, numbers, "
            "NumPy scalars and an argparse Namespace only; anything else could run code when loaded. Fix: load it "
            "yourself where you trust it and re-save the weights (torch.save(model.state_dict(), path)), or point "
            "the source's url at a trusted copy."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:  # truncated, not a torch file
        raise BadCheckpoint(
            f"{path}: not a readable torch checkpoint ({err}). Fix: delete it so that it is fetched again "
            "(a truncated download), or check the source's url."
        ) from None


def _admitting(names):
    if hasattr(torch.serialization, "safe_globals"):  # torch >= 2.5
        return torch.serialization.safe_globals(names)
    torch.serialization.add_safe_globals(names)  # torch 2.4: process-wide
    return contextlib.nullcontext()


def _found(path: Path, err: Exception) -> str:
    """The globals the file asks for that are not allowed (the type found)."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _safe_globals()}
        names = [g for g in unsafe if g not in allowed]
        if names:
            return ", ".join(names)
    except Exception:  # older torch, or not a zip checkpoint: fall back to the message
        pass
    m = re.search(r"GLOBAL ([\w.]+)", str(err))
    return m.group(1) if m else f"an object ({str(err).splitlines()[0][:200]})"


def to_torchvision(obj: dict) -> dict[str, torch.Tensor]:
    """A torchvision state dict from a robustness-library checkpoint ({'model' or 'state_dict':
    {'module.model.*', 'module.attacker.model.*', 'module.normalizer.*', ...}}), a DataParallel
    ('module.*') or a plain torchvision state dict. Architectures the authors took from
    torchvision sit in one more wrapper (robustness's DummyModel: 'module.model.model.*')."""
    sd = obj
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    sd = {k.removeprefix("module."): v for k, v in sd.items() if torch.is_tensor(v)}
    if any(k.startswith("model.") for k in sd):  # robustness: drop attacker copy and normalizer
        sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
        if sd and all(k.startswith("model.") for k in sd):  # DummyModel
            sd = {k.removeprefix("model."): v for k, v in sd.items()}
    return sd


def convert(src: Path, dest: Path, meta: dict | None = None, arch: str = "resnet50") -> dict:
    """Convert a downloaded checkpoint of architecture `arch` (archs.ARCHS) into the canonical
    file; the weights must fit archs.build(arch) exactly (classes: the head's rows; ResNet
    family: width_per_group read from the weights, so narrow stand-ins convert too)."""
    sd = to_torchvision(safe_load(src))
    head = sd.get(HEAD_WEIGHT.get(arch, ""))
    width = _width(src, sd, arch)
    try:
        with torch.device("meta"):  # shapes only: the file's tensors become the weights
            model = archs.build(arch, head.shape[0] if head is not None else 1000, width)
    except ValueError as err:  # an unknown arch; a width a BasicBlock cannot take
        raise BadCheckpoint(f"{src}: cannot build {arch}: {err}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} {tuple(sd[k].shape)} not {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        problems = [
            f"{len(found)} {what} (first: {', '.join(found[:4])})"
            for what, found in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes))
            if found
        ]
        raise BadCheckpoint(
            f"{src} is not a {arch} checkpoint: {'; '.join(problems)}. Fix: set the source's arch to the "
            f"architecture the file was trained as (one of {', '.join(archs.ARCHS)})."
        )
    model.load_state_dict(_versioned({k: v.to(expected[k].dtype) for k, v in sd.items()}, model), assign=True)
    return save(model, dest, meta or {}, arch)


# the head's weight per arch: its rows are the classes
HEAD_WEIGHT = {a: "fc.weight" for a in (*archs.RESNETS, "shufflenet")} | {
    "densenet": "classifier.weight",
    "mnasnet": "classifier.1.weight",
    "mobilenet": "classifier.1.weight",
    "vgg16_bn": "classifier.6.weight",
}


def _width(src: Path, sd: dict, arch: str) -> int | None:
    """width_per_group of a ResNet-family checkpoint, from its first block; a width that is
    another published arch's (ResNet-50 64, WRN-50-2 128, WRN-50-4 256) names the mix-up."""
    if arch not in archs.RESNETS or archs.RESNETS[arch][0] is not Bottleneck or "layer1.0.conv1.weight" not in sd:
        return None  # ResNet-18's BasicBlock has one width
    groups = archs.RESNETS[arch][2]
    width = sd["layer1.0.conv1.weight"].shape[0] // groups
    nominal = {a: w for a, (block, _, g, w) in archs.RESNETS.items() if block is Bottleneck and g == 1}
    if arch in nominal and width != nominal[arch] and width in nominal.values():
        other = next(a for a, w in nominal.items() if w == width)
        raise BadCheckpoint(f"{src} is not a {arch} checkpoint: its width_per_group is {width}, that of {other}")
    return width


def save(model, dest: Path, meta: dict, arch: str = "resnet50") -> dict:
    """Write `model` (an archs.build(arch) network) as a canonical file, atomically."""
    width = archs.width_of(model)
    payload = {
        "arch": arch,
        **({"width_per_group": width} if width is not None else {}),
        "num_classes": model.get_submodule(archs.head_name(model)).out_features,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": {k: str(v) for k, v in meta.items()},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    torch.save(payload, tmp)
    os.replace(tmp, dest)  # whole or absent, never half written
    return payload


_LOADED: OrderedDict[str, tuple[tuple, dict]] = OrderedDict()  # a runner's recent sources (runner.py)
KEEP = 8  # sources kept in memory between a process's runs


def load(path: Path):
    """The source model of a canonical file, on the CPU, and its metadata. A process that trains
    many runs (robust_transfer.runner) reads each source file once: the file's tensors are kept
    (the last KEEP files, while the file is unchanged) and every model gets fresh copies."""
    payload = _cached(path)
    arch, width = architecture(path)
    with torch.device("meta"):  # no random init to overwrite: a third of a job's start-up on the CPU
        model = archs.build(arch, payload["num_classes"], width)
    weights = {k: v.clone() for k, v in payload["state_dict"].items()}  # training must not touch the kept ones
    model.load_state_dict(_versioned(weights, model), strict=True, assign=True)  # the copies become the weights
    return model, dict(payload["meta"])


def _versioned(sd: dict, model: nn.Module) -> OrderedDict:
    """sd with the module versions of `model` attached, as its own state_dict() has them: a
    plain dict has none, and MNASNet refuses to load without its version."""
    out = OrderedDict(sd)
    out._metadata = model.state_dict()._metadata
    return out


def architecture(path: Path) -> tuple[str, int | None]:
    """The arch (archs.ARCHS) and width_per_group (ResNet family; else None) of a canonical file."""
    payload = _cached(path)
    return payload.get("arch", "resnet50"), payload.get("width_per_group")


def _cached(path: Path) -> dict:
    stat = os.stat(path)
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = str(Path(path).resolve())
    if key in _LOADED and _LOADED[key][0] == stamp:
        _LOADED.move_to_end(key)
    else:
        _LOADED[key] = (stamp, safe_load(path))
        while len(_LOADED) > KEEP:
            _LOADED.popitem(last=False)
    return _LOADED[key][1]
