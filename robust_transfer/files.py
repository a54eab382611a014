"""Downloads: one place that fetches a URL (or copies a local file) and verifies its sha256."""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path


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


def fetch(url: str, dest: Path, expected_sha256: str | None = None, mirror: str | None = None, fix: str = "") -> None:
    """Download `url` (http(s), file:// or a local path) to `dest`, verifying sha256 if given;
    a local `mirror` copy, when it exists, is used instead. The file only appears at `dest`
    once complete and verified. `fix` (e.g. which config key takes a local copy) ends the error
    raised when the download fails."""
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    use_mirror = bool(mirror) and Path(mirror).exists()
    if use_mirror:
        url = str(mirror)
    try:
        if "://" not in url:
            shutil.copyfile(url, part)
        else:
            with urllib.request.urlopen(url) as r, open(part, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, mininterval=5) as bar:
                    for chunk in iter(lambda: r.read(1 << 20), b""):
                        f.write(chunk)
                        bar.update(len(chunk))
    except OSError as e:  # URLError, HTTPError, FileNotFoundError are all OSErrors
        part.unlink(missing_ok=True)
        missing = f" (mirror {mirror} does not exist)" if mirror and not use_mirror else ""
        raise DownloadFailed(f"could not fetch {url}{missing}: {e}. {fix}".strip()) from None
    if expected_sha256:
        got = sha256(part)
        if got != expected_sha256.lower():
            part.unlink()
            raise ChecksumMismatch(
                f"{url}: sha256 is {got}, config says {expected_sha256}; fix the URL or the sha256 in config"
            )
    part.rename(dest)
