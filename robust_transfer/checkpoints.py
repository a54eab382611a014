"""Source checkpoints: convert to one canonical, tensors-only file (downloads: files.fetch).

Canonical file (loads with ``torch.load(weights_only=True)``)::

    {"arch": "resnet50", "width_per_group": int, "num_classes": int,
     "state_dict": <torchvision ResNet-50 keys>, "meta": {str: str}}
"""

from __future__ import annotations

from pathlib import Path

import torch

from .models import resnet50


class BadCheckpoint(ValueError):
    pass


def _load_any(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        # robustness-library files pickle extra Python objects (args, sometimes with dill);
        # the source is a file the config names (and sha256-pins), so a full load is acceptable.
        return torch.load(path, map_location="cpu", weights_only=False)


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
    sd = to_torchvision(_load_any(src))
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
    torch.save(payload, dest)
    return payload


def load(path: Path):
    """The source model of a canonical file, on the CPU, and its metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = resnet50(payload["num_classes"], payload["width_per_group"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model, payload["meta"]
