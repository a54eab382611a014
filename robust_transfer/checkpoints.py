"""Source checkpoints: convert to one canonical, tensors-only file (downloads: files.fetch).

Downloaded files are never fully unpickled: they load with ``torch.load(weights_only=True)``,
which builds tensors, containers and numbers only; the few other types a robustness-library
checkpoint really holds (NumPy scalars for its accuracies, an argparse Namespace of plain
values) are admitted by name. Anything else is refused before it runs.

Canonical file (loads with ``torch.load(weights_only=True)``)::

    {"arch": "resnet50", "width_per_group": int, "num_classes": int,
     "state_dict": <torchvision ResNet-50 keys>, "meta": {str: str}}
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

from .models import resnet50


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
    """A torchvision ResNet state dict from a robustness-library checkpoint ({'model' or
    'state_dict': {'module.model.*', 'module.attacker.model.*', 'module.normalizer.*', ...}}),
    a DataParallel ('module.*') or a plain torchvision state dict."""
    sd = obj
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    sd = {k.removeprefix("module."): v for k, v in sd.items() if torch.is_tensor(v)}
    if any(k.startswith("model.") for k in sd):  # robustness: drop attacker copy and normalizer
        sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
    return sd


def convert(src: Path, dest: Path, meta: dict | None = None) -> dict:
    """Convert a downloaded checkpoint into the canonical file; strict-loads it to check."""
    sd = to_torchvision(safe_load(src))
    if "fc.weight" not in sd:
        raise BadCheckpoint(f"{src}: no ResNet weights found (keys start: {sorted(sd)[:5]})")
    width = sd["layer1.0.conv1.weight"].shape[0]
    model = resnet50(num_classes=sd["fc.weight"].shape[0], width_per_group=width)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise BadCheckpoint(f"{src} is not a torchvision ResNet-50 checkpoint: {err}") from err
    return save(model, dest, meta or {})


def save(model, dest: Path, meta: dict) -> dict:
    payload = {
        "arch": "resnet50",
        "width_per_group": model.layer1[0].conv1.out_channels,
        "num_classes": model.fc.out_features,
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
    stat = os.stat(path)
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = str(Path(path).resolve())
    if key in _LOADED and _LOADED[key][0] == stamp:
        _LOADED.move_to_end(key)
    else:
        _LOADED[key] = (stamp, safe_load(path))
        while len(_LOADED) > KEEP:
            _LOADED.popitem(last=False)
    payload = _LOADED[key][1]
    with torch.device("meta"):  # no random init to overwrite: a third of a job's start-up on the CPU
        model = resnet50(payload["num_classes"], payload["width_per_group"])
    weights = {k: v.clone() for k, v in payload["state_dict"].items()}  # training must not touch the kept ones
    model.load_state_dict(weights, strict=True, assign=True)  # the copies become the weights
    return model, dict(payload["meta"])
