"""Named breakages of the science, each of which one test must catch.

    python tools/breaks.py            # every entry of tools/breakages.yaml

Each entry is a textual change to one module (old -> new, which must occur exactly once) and the
test that pins the behaviour it breaks. In a scratch copy of the repository: the test passes on
the code as it is, then fails with the change applied. Prints one line per entry and exits 1 if
any change goes unnoticed (or no longer applies: the module moved on, update the entry).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run_test(scratch: Path, test: str) -> bool:
    env = {"PYTHONPATH": str(scratch), "PATH": "/usr/bin:/bin", "CI": ""}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", test]
    return subprocess.run(cmd, cwd=scratch, capture_output=True, env=env).returncode == 0


def main() -> int:
    entries = yaml.safe_load((REPO / "tools" / "breakages.yaml").read_text())
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "repo"
        shutil.copytree(REPO, scratch, ignore=shutil.ignore_patterns(".git", ".venv", "results", "resources", "logs"))
        if (REPO.parent / "shared").is_dir():  # the paper's reference files, beside the checkout
            (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        for e in entries:
            path = scratch / e["file"]
            original = path.read_text()
            if original.count(e["old"]) != 1:
                print(f"STALE    {e['name']}: the change no longer applies to {e['file']}")
                bad += 1
                continue
            passes = run_test(scratch, e["test"])
            path.write_text(original.replace(e["old"], e["new"]))
            try:
                caught = not run_test(scratch, e["test"])
            finally:
                path.write_text(original)
            status = "caught" if passes and caught else "MISSED" if passes else "BROKEN"
            bad += status != "caught"
            print(f"{status:8} {e['name']}  ({e['test']})", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
