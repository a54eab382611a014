"""Where a training job writes: every folder it will write can be, with room for what it will
write, checked before any training; and a write that fails during training names its path.

Without this, a read-only, misplaced or full results or resume folder fails only when the
first state is saved, after an epoch of work, with the library's bare "open file failed".
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

MB = 1e6
MARGIN = 1.1  # what torch.save adds beyond the tensors (pickled names, alignment), and some


class Unwritable(OSError):
    """A folder a job must write cannot be written, or has no room: the path and the fix."""


FIX = (
    "Fix: make the folder writable (its permissions, `chattr -i`, a read-write mount) and free "
    "space there, or run the workflow from another working directory (snakemake --directory)."
)
FIX_SPACE = (
    "Fix: free that much space on its file system, or run the workflow from a working directory "
    "on another one (snakemake --directory)."
)


def _kind(err: OSError) -> str:
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "read-only"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "not a folder"
    return "not writable"


def _file_in_the_way(folder: Path) -> Path | None:
    """The first component of `folder` that exists but is not a folder."""
    for part in [*reversed(folder.parents), folder]:
        if part.exists() and not part.is_dir():
            return part
    return None


def check_folders(folders: Iterable[Path | str]) -> None:
    """Create each folder and write, fsync and remove a small file in it; the first that fails
    raises Unwritable naming it, what failed and the fix."""
    for folder in dict.fromkeys(Path(f) for f in folders):
        probe = folder / f".write-probe-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(probe, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
            probe.unlink()
        except OSError as err:
            blocker = _file_in_the_way(folder)
            what = f"not a folder: {blocker} is a file" if blocker else f"{_kind(err)}: {err.strerror}"
            raise Unwritable(f"this job cannot write its folder {folder} ({what}). {FIX}") from err


def check_space(needs: Iterable[tuple[Path | str, int]]) -> None:
    """`needs`: (existing folder, bytes the job will write there) pairs. Folders on one file
    system share its free space (shutil.disk_usage): their needs add up. Raises Unwritable
    naming the folders, the free and the needed megabytes, and the fix."""
    by_device: dict[int, list[tuple[Path, int]]] = {}
    for folder, size in needs:
        folder = Path(folder)
        by_device.setdefault(os.stat(folder).st_dev, []).append((folder, size))
    for entries in by_device.values():
        needed = sum(size for _, size in entries)
        free = shutil.disk_usage(entries[0][0]).free
        if free < needed:
            names = ", ".join(dict.fromkeys(str(f) for f, _ in entries))
            raise Unwritable(
                f"not enough disk space for this job in {names}: {free / MB:.1f} MB free, "
                f"{needed / MB:.1f} MB needed (its resume state and outputs). {FIX_SPACE}"
            )


def tensor_bytes(model) -> int:
    """Bytes of a model's weights and buffers as torch.save writes them."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def state_bytes(model) -> int:
    """Bytes of a run's resume state (train.save_state): the model's weights and buffers, SGD's
    momentum of every trainable parameter, and MARGIN for the rest (RNG states, rows, names)."""
    momentum = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return int(MARGIN * (tensor_bytes(model) + momentum)) + 100_000


@contextmanager
def writing(path: Path | str, what: str):
    """A write of `what` to `path`: an OSError (or torch.save's RuntimeError) inside names the
    path, the free space of its folder and the fix."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        if isinstance(err, Unwritable):
            raise
        folder = Path(path).parent
        try:
            room = f"; {shutil.disk_usage(folder).free / MB:.1f} MB free there"
        except OSError:
            room = ""
        raise Unwritable(f"writing the {what} {path} failed: {err}{room}. {FIX}") from err
