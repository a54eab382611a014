"""Mutation testing of the science: does the test suite fail when the code is broken on purpose?

    python tools/mutate.py                      # every module, every mutant (hours on 2 cores)
    python tools/mutate.py stats published      # some modules
    python tools/mutate.py train --list         # the mutants, without running anything
    python tools/mutate.py train --only 12 40   # some mutants (numbers from --list)
    python tools/mutate.py --sample 30          # 30 mutants per module, drawn with --seed

Each mutant is one small change to one line of a module of robust_transfer (a comparison or an
arithmetic operator swapped, a constant moved, a boolean flipped, a condition negated, a call
statement dropped, an `and` turned into `or`), applied to a scratch copy of the repository; the
module's tests (TESTS below, fast tests only, stopping at the first failure) then run against
it. A mutant is killed when they fail (or time out). Survivors are reported; those judged
equivalent (no behaviour changes) or accepted are listed, with the reason, in
tools/mutants_accepted.yaml, and the kill rate counts the others. Results: docs/testing.md.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ACCEPTED = REPO / "tools" / "mutants_accepted.yaml"
# The tests that pin each module (its mirror first: most mutants die there, early).
TESTS = {
    "datasets": ["tests/test_data.py", "tests/test_salman_data.py", "tests/test_grid.py"],
    "download": ["tests/test_data.py", "tests/test_salman_data.py"],
    "images": ["tests/test_data.py", "tests/test_salman_data.py"],
    "store": ["tests/test_data.py", "tests/test_train.py"],
    "subsets": ["tests/test_subsets.py", "tests/test_data.py"],
    "models": ["tests/test_models.py", "tests/test_train.py", "tests/test_checkpoints.py"],
    "augment": ["tests/test_augment.py", "tests/test_train.py"],
    "train": ["tests/test_train.py", "tests/test_models.py"],
    "stats": ["tests/test_stats.py", "tests/test_published.py", "tests/test_plots.py"],
    "published": ["tests/test_published.py", "tests/test_style.py", "tests/test_salman_study.py"],
    "archs": ["tests/test_salman_engine.py", "tests/test_models.py"],
    "checkpoints": ["tests/test_checkpoints.py", "tests/test_salman_engine.py"],
    "recipes": ["tests/test_grid.py", "tests/test_salman_study.py"],
    "studies": ["tests/test_salman_study.py"],
    "sweeps": ["tests/test_salman_study.py"],
    "claims": ["tests/test_claims.py"],
}
# Functions whose mutants only change an error message or a progress line.
SKIP = {"_missing", "_found", "__init__", "_marks", "notes", "title"}
SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Pow: ast.Mult, ast.Mod: ast.FloorDiv, ast.And: ast.Or, ast.Or: ast.And,
}  # fmt: skip


@dataclass
class Mutant:
    module: str
    number: int
    line: int
    kind: str
    before: str
    after: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.line}:{self.kind}:{self.before} -> {self.after}"


def _functions(tree):
    """(node, function name) for every node inside a function that is not a docstring."""
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) or fn.name in SKIP:
            continue
        body = (
            fn.body[1:]
            if fn.body and isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
            else fn.body
        )
        for stmt in body:
            for node in ast.walk(stmt):
                yield node, fn.name


def mutants(module: str) -> list[Mutant]:
    """Every mutant of a module, in a stable order (by line, then kind)."""
    source = (REPO / "robust_transfer" / f"{module}.py").read_text()
    tree = ast.parse(source)
    found = []
    seen = set()
    for node, _ in _functions(tree):
        if id(node) in seen:
            continue
        seen.add(id(node))
        for kind, before, after in _changes(node):
            found.append((node.lineno, kind, before, after))
    found = sorted(set(found))
    return [Mutant(module, i, line, kind, before, after) for i, (line, kind, before, after) in enumerate(found)]


def _changes(node):
    """(kind, before, after) for each way to mutate this node (as source text of the node)."""
    text = ast.unparse(node)
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAPS:
                new = _copy(node)
                new.ops[i] = SWAPS[type(op)]()
                yield "compare", text, ast.unparse(new)
    elif isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in SWAPS:
        new = _copy(node)
        new.op = SWAPS[type(node.op)]()
        yield "arithmetic", text, ast.unparse(new)
    elif isinstance(node, ast.BoolOp):
        new = _copy(node)
        new.op = SWAPS[type(node.op)]()
        yield "boolean", text, ast.unparse(new)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        yield "unary", text, ast.unparse(node.operand)
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
        yield "constant", text, repr(node.value + 1)
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "constant", text, repr(not node.value)
    elif isinstance(node, ast.If):
        yield "condition", f"if {ast.unparse(node.test)}:", f"if not ({ast.unparse(node.test)}):"
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and not isinstance(node.value, ast.Constant):
        yield "statement", text, "pass"


def _copy(node):
    return (
        ast.parse(ast.unparse(node), mode="eval").body
        if not isinstance(node, ast.stmt)
        else ast.parse(ast.unparse(node)).body[0]
    )


def apply(source: str, m: Mutant) -> str:
    """The module's source with the mutant's change made on its line (first match)."""
    lines = source.splitlines(keepends=True)
    tree = ast.parse(source)
    for node, _ in _functions(tree):
        if getattr(node, "lineno", None) != m.line:
            continue
        for kind, before, after in _changes(node):
            if (kind, before, after) == (m.kind, m.before, m.after):
                return _rewrite(source, lines, node, before, after)
    raise ValueError(f"mutant {m.key} not found (the module changed since --list?)")


def _rewrite(source, lines, node, before, after) -> str:
    """Replace exactly the node's source span (by its line and column offsets, which count
    UTF-8 bytes) with the mutated text; an `if` keeps its body, a dropped call becomes `pass`."""
    data = source.encode()
    starts = [0]
    for line in source.encode().splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    target = node.test if isinstance(node, ast.If) else node
    lo = starts[target.lineno - 1] + target.col_offset
    hi = starts[target.end_lineno - 1] + target.end_col_offset
    if isinstance(node, ast.If):
        new = f"not ({data[lo:hi].decode()})"
    elif isinstance(node, ast.stmt):
        new = "pass" if after == "pass" else ast.unparse(ast.parse(after).body[0])
    else:
        new = f"({after})"
    return (data[:lo] + new.encode() + data[hi:]).decode()


def run(m: Mutant, scratch: Path, timeout: int) -> tuple[str, float]:
    path = scratch / "robust_transfer" / f"{m.module}.py"
    original = path.read_text()
    path.write_text(apply(original, m))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *TESTS[m.module]]
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, timeout=timeout, env=_env(scratch))
        status = "killed" if proc.returncode != 0 else "survived"
    except subprocess.TimeoutExpired:
        status = "killed"  # a hang is a failure the suite notices
    finally:
        path.write_text(original)
    return status, time.time() - start


def _env(scratch: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(scratch), "CI": ""}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("modules", nargs="*", default=list(TESTS))
    p.add_argument("--list", action="store_true", help="print the mutants and stop")
    p.add_argument("--only", nargs="*", type=int, help="mutant numbers to run")
    p.add_argument("--sample", type=int, help="run this many mutants per module, a seeded random draw")
    p.add_argument("--seed", type=int, default=0, help="the draw of --sample")
    p.add_argument("--timeout", type=int, default=900, help="seconds per mutant before it counts as killed")
    p.add_argument("--out", type=Path, default=Path("mutants.json"), help="results (JSON), appended as they come")
    a = p.parse_args()
    accepted = yaml.safe_load(ACCEPTED.read_text()) if ACCEPTED.exists() else {}
    accepted = accepted or {}
    todo = [
        m for mod in a.modules for m in _draw(mutants(mod), a.sample, a.seed) if a.only is None or m.number in a.only
    ]
    if a.list:
        for m in todo:
            print(f"{m.module} #{m.number} line {m.line} {m.kind}: {m.before}  ->  {m.after}")
        print(f"{len(todo)} mutants")
        return
    results = json.loads(a.out.read_text()) if a.out.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "repo"
        shutil.copytree(
            REPO,
            scratch,
            ignore=shutil.ignore_patterns(".git", ".venv", ".snakemake", "results", "resources", "figures", "logs"),
        )
        if (REPO.parent / "shared").is_dir():  # the paper's reference files, beside the checkout
            (Path(tmp) / "shared").symlink_to(REPO.parent / "shared")
        for m in todo:
            if m.key in results:
                continue
            status, seconds = run(m, scratch, a.timeout)
            results[m.key] = {**asdict(m), "status": status, "seconds": round(seconds, 1)}
            a.out.write_text(json.dumps(results, indent=1))
            print(
                f"{status:8} {seconds:6.1f} s  {m.module} #{m.number} line {m.line}: {m.before} -> {m.after}",
                flush=True,
            )
    report(results, accepted)


def _draw(found: list, sample: int | None, seed: int) -> list:
    """All of a module's mutants, or a seeded sample of them in their original order."""
    import random

    if sample is None or sample >= len(found):
        return found
    keep = set(random.Random(seed).sample(range(len(found)), sample))
    return [m for i, m in enumerate(found) if i in keep]


def report(results: dict, accepted: dict) -> None:
    """Kill rate per module: killed / (mutants - accepted survivors)."""
    print("\n| module | mutants | killed | accepted (equivalent) | survived | kill rate |\n|---|---|---|---|---|---|")
    for module in TESTS:
        rows = [r for r in results.values() if r["module"] == module]
        if not rows:
            continue
        killed = sum(r["status"] == "killed" for r in rows)
        survivors = [k for k, r in results.items() if r["module"] == module and r["status"] == "survived"]
        ok = [k for k in survivors if k in accepted]
        rate = killed / max(1, len(rows) - len(ok))
        print(f"| {module} | {len(rows)} | {killed} | {len(ok)} | {len(survivors) - len(ok)} | {100 * rate:.1f} % |")
    for k, r in results.items():
        if r["status"] == "survived" and k not in accepted:
            print(f"SURVIVED {k}")


if __name__ == "__main__":
    main()
