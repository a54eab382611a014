"""Raw datasets on disk: copied from a local mirror first, unpacked from mirrored archives, else
downloaded by torchvision; datasets no download can fetch (Stanford Cars, Birdsnap, SUN397's
partition files) must be staged by hand, and fail at once naming the files and their layout."""

from __future__ import annotations

import shutil
from pathlib import Path

from .datasets import LOADERS, _sources


class MissingData(RuntimeError):
    pass


def missing_files(loader: str, root: Path) -> list[str]:
    return [f for f in LOADERS[loader].files if not (root / f).exists()]


def download(loader: str, root: Path, mirror: Path | None = None, offline: bool = False) -> None:
    """Make `root` hold what torchvision reads for `loader`: mirror first, then the internet."""
    root.mkdir(parents=True, exist_ok=True)
    spec = LOADERS[loader]
    if not spec.files:
        (root / "SOURCE").write_text(f"{loader}: bundled with a pip package; nothing to download\n")
        return
    if mirror is not None:
        for rel in spec.files + _archives(loader):
            src, dst = Path(mirror) / rel, root / rel
            if src.exists() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    if missing_files(loader, root):
        _unpack(loader, root)
    if any(not (root / f).exists() for f in spec.staged):  # before any (long) download
        raise _missing(loader, root, mirror, "no download exists for some of it: stage the files by hand")
    if missing_files(loader, root) and not offline:
        try:
            for split in ("train", "test"):
                _sources(loader, split, root, download=True)
        except Exception as err:  # no network, host down, checksum mismatch
            raise _missing(loader, root, mirror, f"download failed: {err}") from err
    if missing_files(loader, root):
        raise _missing(loader, root, mirror, "offline mode: no download attempted")
    for split in ("train", "test"):  # torchvision's own integrity checks (md5 for CIFAR, SVHN, Flowers)
        _sources(loader, split, root)


def _archives(loader: str) -> tuple[str, ...]:
    return tuple(archive for archive, _ in LOADERS[loader].archives)


def _unpack(loader: str, root: Path) -> None:
    """Unpack archives already in root (from a mirror), as torchvision's download() would."""
    from torchvision.datasets.utils import extract_archive

    for archive, into in LOADERS[loader].archives:
        if (root / archive).exists():
            extract_archive(str(root / archive), str(root / into))


def _missing(loader, root, mirror, why) -> MissingData:
    spec = LOADERS[loader]
    files = "\n  ".join(
        f + ("  (no download: stage it)" if f in spec.staged else "") for f in missing_files(loader, root)
    )
    where = (
        f"{mirror}/ (data.mirror) or {root}/"
        if mirror
        else f"{root}/ (or set data.mirror to a folder laid out the same way)"
    )
    layout = f"Layout: {spec.layout}\n" if spec.layout else ""
    return MissingData(
        f"dataset {loader!r} is incomplete ({why}). Missing files:\n  {files}\n{layout}"
        f"Put them, at these relative paths (torchvision's layout), under {where}; "
        f"torchvision's archives ({', '.join(_archives(loader)) or 'none for this dataset'}) work too."
    )
