"""Downloads: one place that fetches a URL (or copies a local file), pins its sha256, and lands
it atomically.

Pinning: a URL's sha256 comes from the config (`sha256:`) or, when the config has none, from the
lock file (downloads.lock, one `url: sha256` line per download, which the user commits). The first
download of an unpinned URL records its hash there; every later download must match it.
torchvision's checkpoint names carry a prefix of their sha256 (resnet50-0676ba61.pth): it is
checked too.

Also: copy_workflow, a copy of the workflow's own files (what tests and benchmarks run).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# What a copy of the workflow needs to run (no results, no data): tests and benchmarks use it.
WORKFLOW = (
    "Snakefile",
    "rules",
    "scripts",
    "schemas",
    "envs",
    "robust_transfer",
    "profiles",
    "config.yaml",
    "config.demo.yaml",
    "report",
    "benchmarks/costs.yaml",  # the cost model: time limits and the plan printed before work
    "reference",  # a study's published tables (reference/salman2020): sources' metadata, published runs
)


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow's files in `dest`, which a test or benchmark may run or edit."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW:
        (dest / item).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy2)(REPO / item, dest / item)
    return dest


RETRIES = 3  # attempts per download; transient failures (timeouts, 5xx, resets) only


class ChecksumMismatch(ValueError):
    pass


class DownloadFailed(RuntimeError):
    pass


def stamps(paths) -> list[list[int]]:
    """Size and modification time of each file: what a resume state must match (a replaced
    input means starting over, never mixing)."""
    return [[Path(p).stat().st_size, Path(p).stat().st_mtime_ns] for p in paths]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def name_prefix(url: str) -> str | None:
    """The sha256 prefix torchvision puts in its file names (resnet50-0676ba61.pth)."""
    m = re.search(r"-([0-9a-f]{8,64})\.(pth|pt)$", url.split("?")[0])
    return m.group(1) if m else None


def fetch(
    url: str,
    dest: Path,
    expected_sha256: str | None = None,
    mirror: str | None = None,
    fix: str = "",
    lock: Path | None = None,
) -> str:
    """Download `url` (http(s), file:// or a local path) to `dest` and return its sha256; a
    local `mirror` copy, when it exists, is used instead. The hash must equal `expected_sha256`,
    else the one `lock` records for the URL, else it is recorded there. The file only appears at
    `dest` once complete and verified. `fix` (which config key takes a local copy) ends the error
    raised when the download fails."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    use_mirror = bool(mirror) and Path(mirror).exists()
    source = str(mirror) if use_mirror else url
    try:
        _copy(source, part, dest.name)
    except OSError as e:  # URLError, HTTPError, FileNotFoundError are all OSErrors
        part.unlink(missing_ok=True)
        missing = f" (mirror {mirror} does not exist)" if mirror and not use_mirror else ""
        raise DownloadFailed(f"could not fetch {source}{missing}: {e}. {fix}".strip()) from None
    got = sha256(part)
    try:
        _check(url, got, expected_sha256, lock)
    except ChecksumMismatch:
        part.unlink()
        raise
    part.rename(dest)
    return got


def _check(url: str, got: str, expected: str | None, lock: Path | None) -> None:
    prefix = name_prefix(url)
    if prefix and not got.startswith(prefix):
        raise ChecksumMismatch(
            f"{url}: sha256 is {got}, but the file name says it starts with {prefix}. The download is "
            "corrupt or not the file named: fetch it again, or check the URL."
        )
    if expected:
        if got != expected.lower():
            raise ChecksumMismatch(
                f"{url}: sha256 is {got}, config says {expected.lower()}. Fix the URL or the sha256 in the config."
            )
        return
    if lock is None:
        return
    with _locked(lock) as pins:
        pinned = pins.get(url)
        if pinned is None:
            pins[url] = got  # first download: pin it
        elif pinned != got:
            raise ChecksumMismatch(
                f"{url}: sha256 is {got}, {lock} pins {pinned} (its first download). The file behind the URL "
                f"changed. If the new file is the right one, delete its line from {lock} (or set its sha256 in "
                "the config) and run again; otherwise point the URL at the pinned file."
            )


class _locked:
    """The lock file as a dict, read and rewritten under an exclusive lock (downloads may run
    in parallel)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.path.with_name(self.path.name + ".flock"), "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        self.pins = yaml.safe_load(self.path.read_text()) if self.path.exists() else None
        self.pins = self.pins or {}
        self.before = dict(self.pins)
        return self.pins

    def __exit__(self, *exc):
        try:
            if self.pins != self.before:
                tmp = self.path.with_name(self.path.name + ".tmp")
                header = "# sha256 of every download without a sha256 in the config: commit this file.\n"
                tmp.write_text(header + yaml.safe_dump(self.pins, sort_keys=True, width=1000))
                os.replace(tmp, self.path)
        finally:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()


def _copy(source: str, part: Path, name: str) -> None:
    """Copy a local file or download a URL to `part`, retrying transient network failures."""
    if "://" not in source or source.startswith("file://"):
        shutil.copyfile(source.removeprefix("file://"), part)
        return
    from tqdm import tqdm

    for attempt in range(1, RETRIES + 1):
        try:
            with urllib.request.urlopen(source, timeout=60) as r, open(part, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=name, mininterval=5) as bar:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
            return
        except OSError as e:
            permanent = isinstance(e, urllib.error.HTTPError) and e.code < 500
            if permanent or attempt == RETRIES:
                raise
            time.sleep(2**attempt)
