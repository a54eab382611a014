"""Downloads: sha256 pinned (config or lock file), torchvision's name prefix checked, atomic
landing, retries of transient failures, and one clear error when a download fails."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import pytest
import yaml

from robust_transfer import files
from robust_transfer.files import ChecksumMismatch, DownloadFailed


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(files.time, "sleep", lambda s: None)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_matches_hashlib(tmp_path):
    f = tmp_path / "blob.bin"
    f.write_bytes(bytes(range(256)) * 5000)  # > 1 MiB: several chunks
    assert files.sha256(f) == _sha(f)


def test_fetch_wrong_sha_leaves_nothing(tmp_path):
    """A sha256 mismatch raises ChecksumMismatch and leaves neither dest nor a partial file."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    dest = tmp_path / "dl" / "model.pt"
    with pytest.raises(ChecksumMismatch):
        files.fetch(str(src), dest, "0" * 64)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_fetch_right_sha_copies(tmp_path):
    """With the right sha256 (any case), the file is copied byte for byte."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 1000)
    dest = tmp_path / "dl" / "model.pt"
    files.fetch(str(src), dest, _sha(src).upper())
    assert dest.read_bytes() == src.read_bytes()
    assert list(dest.parent.iterdir()) == [dest]


def test_fetch_without_sha_and_file_url(tmp_path):
    """No sha256 configured: plain copy; file:// URLs work offline too."""
    src = tmp_path / "src.bin"
    src.write_bytes(b"abc" * 10)
    d1, d2 = tmp_path / "a.pt", tmp_path / "b.pt"
    files.fetch(str(src), d1)
    files.fetch(src.resolve().as_uri(), d2, _sha(src))
    assert d1.read_bytes() == d2.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("url", ["missing.bin", "http://127.0.0.1:9/weights.pt"])  # no file; a refused local port
def test_fetch_failure_names_the_url_and_the_fix(tmp_path, url):
    """A failed download (no network, wrong path) raises one error naming the URL, the missing
    mirror and the fix, and leaves no partial file."""
    dest = tmp_path / "dl" / "model.pt"
    with pytest.raises(DownloadFailed) as err:
        files.fetch(url, dest, mirror=str(tmp_path / "nowhere.bin"), fix="Set published.mirror to a local copy.")
    msg = str(err.value)
    assert url in msg and "nowhere.bin does not exist" in msg and msg.endswith("Set published.mirror to a local copy.")
    assert list(dest.parent.iterdir()) == []


def test_first_download_is_pinned_in_the_lock_file_and_later_ones_must_match(tmp_path):
    """No sha256 in the config: the first download records it in the lock file; the same file
    again passes; a changed file behind the same URL fails naming the URL, both hashes and the
    fix, and lands nowhere."""
    src, lock = tmp_path / "weights.bin", tmp_path / "downloads.lock"
    src.write_bytes(b"first" * 100)
    url = src.resolve().as_uri()
    first = files.fetch(url, tmp_path / "a.pt", lock=lock)
    assert first == _sha(src) and yaml.safe_load(lock.read_text()) == {url: first}
    files.fetch(url, tmp_path / "b.pt", lock=lock)  # same bytes: fine
    src.write_bytes(b"second" * 100)
    with pytest.raises(ChecksumMismatch) as err:
        files.fetch(url, tmp_path / "c.pt", lock=lock)
    msg = str(err.value)
    assert url in msg and first in msg and _sha(src) in msg and "delete its line" in msg
    assert not (tmp_path / "c.pt").exists() and not (tmp_path / "c.pt.part").exists()
    assert yaml.safe_load(lock.read_text()) == {url: first}  # the pin is kept


def test_the_config_sha256_wins_over_the_lock(tmp_path):
    src, lock = tmp_path / "w.bin", tmp_path / "downloads.lock"
    src.write_bytes(b"x" * 10)
    files.fetch(str(src), tmp_path / "a.pt", _sha(src), lock=lock)
    assert not lock.exists()  # pinned by the config: nothing to record


def test_torchvision_name_prefix_is_checked(tmp_path):
    """resnet50-<first hex digits of its sha256>.pth: a file whose hash does not start with the
    prefix in its name is refused."""
    blob = b"weights" * 50
    good = tmp_path / f"resnet50-{hashlib.sha256(blob).hexdigest()[:8]}.pth"
    bad = tmp_path / "resnet50-0676ba61.pth"
    good.write_bytes(blob)
    bad.write_bytes(blob)
    files.fetch(str(good), tmp_path / "ok.download")
    with pytest.raises(ChecksumMismatch, match="file name says it starts with 0676ba61"):
        files.fetch(str(bad), tmp_path / "no.download")
    assert not (tmp_path / "no.download").exists()
    assert files.name_prefix("https://download.pytorch.org/models/resnet50-0676ba61.pth") == "0676ba61"
    assert files.name_prefix("https://www.dropbox.com/s/x/imagenet_l2_3_0.pt?dl=1") is None


class _Flaky(http.server.BaseHTTPRequestHandler):
    failures = 0  # 503s still to send
    body = b"weights" * 1000

    def do_GET(self):  # noqa: N802
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/weights.pt"
    httpd.shutdown()


def test_transient_failures_are_retried(tmp_path, server):
    _Flaky.failures = files.RETRIES - 1
    files.fetch(server, tmp_path / "w.pt")
    assert (tmp_path / "w.pt").read_bytes() == _Flaky.body


def test_persistent_failures_fail_once_with_the_url(tmp_path, server):
    _Flaky.failures = files.RETRIES
    with pytest.raises(DownloadFailed, match="503"):
        files.fetch(server, tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "w.pt.part").exists()
