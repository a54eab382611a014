"""Many jobs, one process: a *runner* keeps Python, torch and the package imported (and on a GPU
its context set up) between Snakemake jobs, and runs the jobs its clients hand it one after
another, each exactly as the job's own process would run it.

Every job stays one Snakemake job (its own outputs, log, metadata, resume state; a deleted
result reruns that job only). Its script starts with `runner.delegate(snakemake, pool)`: in the
job's process that takes a free *slot* of the pool (a lock file), hands the script and the
job's `snakemake` object to the slot's runner over a Unix socket and waits for the answer (the
first client of a slot starts its runner); in the runner the same call returns at once and the
script goes on. A runner serves one job at a time, so as many jobs run at once as Snakemake
starts (its cores and `gpu` resource decide, as before). Pools keep training jobs (which hold a
GPU) apart from the light ones (tables, figures).

A runner is shared only by processes that would compute the same thing: its key is a digest of
the pool, the Python, the package's source files (an edited module starts a new runner), the
working directory and the environment that decides devices and threads. It exits after
`pack.runs` jobs, after `pack.idle` seconds without a client, after a job that fails (a fresh
process for the next one) and when it is killed. A client that is killed (Snakemake stopping a
job) closes its socket: the runner stops a training run at the end of its epoch with its resume
state saved, as on SIGTERM, and goes on serving.

The client side imports neither torch nor anything heavy: a job costs a Python start, the
Snakemake object and a socket.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pickle
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# what decides which device and how many threads a job gets: runners differ when these do
ENVIRONMENT = (
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "SLURM_JOB_ID",
)
START_SECONDS = 300  # a new runner must listen within this (imports on a slow shared disk)
INSIDE = "ROBUST_TRANSFER_RUNNER"  # set in a runner's environment: its scripts run there, no runner in a runner
MAX_SLOTS = 256  # more clients at once than this is a bug, not a workload


class RunnerFailed(RuntimeError):
    """The job failed inside its runner (the runner's message follows), or the runner died."""


def key(pool: str) -> str:
    """Who may share a runner: same pool, Python, package code, folder and environment."""
    code = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in PACKAGE.glob("*.py"))
    parts = [pool, sys.executable, sys.version, str(PACKAGE), os.getcwd(), code]
    parts += [os.environ.get(name) for name in ENVIRONMENT]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def folder() -> Path:
    """Slot locks and sockets: short paths (a socket path has at most 107 bytes), per user."""
    path = Path(tempfile.gettempdir()) / f"robust_transfer-runners-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def slot_paths(name: str, slot: int) -> tuple[Path, Path]:
    base = folder() / f"{name}-{slot}"
    return base.with_suffix(".lock"), base.with_suffix(".sock")


def runner_log(name: str, slot: int) -> Path:
    return Path("logs") / "runners" / f"{name}-{slot}.log"


# ---------------------------------------------------------------------------------------------
# Client: one Snakemake job


def delegate(smk, pool: str) -> None:
    """First line of a script: run the rest of it in a runner of `pool` and end this process
    (its exit status the job's), unless this already is a runner or the config's pack.runs is 1
    (then the script goes on here, as Snakemake runs any script)."""
    if os.environ.get(INSIDE):  # this is a runner (or a process it started): run here
        return
    pack = smk.config["pack"]
    if pack["runs"] <= 1:
        return
    script = sys.modules["__main__"].__file__  # Snakemake points it at the script itself
    request = {"script": script, "cwd": os.getcwd(), "snakemake": base64.b64encode(pickle.dumps(smk)).decode()}
    try:
        submit(request, pool, pack)
    except RunnerFailed as err:
        where = f" (traceback in {smk.log[0]})" if smk.log else ""
        print(f"{err}{where}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    raise SystemExit(0)


def submit(request: dict, pool: str, pack: dict) -> None:
    """Run one job (a script and its Snakemake object) in a runner of `pool`; returns when it
    is done, raises RunnerFailed with the runner's message otherwise."""
    name = key(pool)
    with _free_slot(name) as slot:
        for _ in range(3):  # a runner that was leaving when we connected closes without a word: retry
            with _connect(name, slot) or _start(name, slot, pack) as conn, conn.makefile("rb") as lines:
                conn.sendall(json.dumps(request).encode() + b"\n")
                if not lines.readline():  # no "started"
                    continue
                answer = lines.readline()  # the job's outcome
            if not answer:
                raise RunnerFailed(f"the runner of slot {slot} died during the job (its log: {runner_log(name, slot)})")
            reply = json.loads(answer)
            if not reply["ok"]:
                raise RunnerFailed(reply["error"])
            return
    raise RunnerFailed(f"no runner of slot {slot} took the job (their log: {runner_log(name, slot)})")


@contextlib.contextmanager
def _free_slot(name: str):
    """The first slot no other client of this key holds; held until the job is done."""
    for slot in range(MAX_SLOTS):
        lock, _ = slot_paths(name, slot)
        f = open(lock, "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        try:
            yield slot
        finally:
            f.close()
        return
    raise RunnerFailed(f"all {MAX_SLOTS} runner slots of {folder()} are taken: runners left by another workflow?")


def _connect(name: str, slot: int) -> socket.socket | None:
    _, path = slot_paths(name, slot)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
        return conn
    except OSError:  # no runner (none yet, or it exited): the caller starts one
        conn.close()
        return None


def _start(name: str, slot: int, pack: dict) -> socket.socket:
    """Start the slot's runner and connect once it listens."""
    out = runner_log(name, slot)
    out.parent.mkdir(parents=True, exist_ok=True)
    _, path = slot_paths(name, slot)
    path.unlink(missing_ok=True)  # a socket file left by a killed runner
    cmd = [sys.executable, "-m", "robust_transfer.runner", "--key", name, "--slot", str(slot)]
    cmd += ["--jobs", str(pack["runs"]), "--idle", str(pack["idle"])]
    with open(out, "a") as f:  # its own session: a Ctrl-C or kill of Snakemake reaches the clients only
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f, start_new_session=True)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        conn = _connect(name, slot)
        if conn is not None:
            return conn
        if proc.poll() is not None:
            raise RunnerFailed(f"the runner exited with {proc.returncode} before it listened: {out}")
        time.sleep(0.02)
    proc.kill()
    raise RunnerFailed(f"the runner did not listen within {START_SECONDS} s: {out}")


# ---------------------------------------------------------------------------------------------
# Runner: one process, many jobs


def serve(name: str, slot: int, jobs: int, idle: float) -> None:
    os.environ[INSIDE] = "1"
    lock, path = slot_paths(name, slot)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(idle)
    served = 0
    print(f"runner {name}-{slot} (pid {os.getpid()}) listening", flush=True)
    try:
        while served < jobs:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                held = _nobody_waits(lock)
                if held is not None:  # held until the socket is gone: no client connects to a runner that is leaving
                    with held:
                        server.close()
                        path.unlink(missing_ok=True)
                        print(f"idle for {idle} s: exiting after {served} jobs", flush=True)
                    return
                continue
            with conn:
                conn.settimeout(None)
                with conn.makefile("rb") as lines:
                    request = lines.readline()
                if not request:
                    continue
                served += 1
                if served >= jobs:
                    path.unlink(missing_ok=True)  # the next client starts a fresh runner
                with contextlib.suppress(OSError):  # the client may be gone
                    conn.sendall(b"started\n")
                ok, error, gone = _serve_one(json.loads(request), conn)
                if not ok and not gone:
                    path.unlink(missing_ok=True)  # before the answer: the next client starts a fresh runner
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"ok": ok, "error": error}).encode() + b"\n")
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the job's watcher thread
                if gone:  # its client was stopped (a training run saved its state): go on
                    print(f"client gone: job stopped ({error})", flush=True)
                elif not ok:
                    print(f"job failed: {error}; exiting (a fresh runner for the next job)", flush=True)
                    return
        print(f"{served} jobs served: exiting", flush=True)
    finally:
        server.close()


def _nobody_waits(lock: Path):
    """Idle: the slot's lock (an open file) if no client holds it, else None (one is about to
    connect)."""
    f = open(lock, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _serve_one(request: dict, conn: socket.socket) -> tuple[bool, str | None, bool]:
    """One job: its script run here with its Snakemake object, as its own process would run it
    (the script sends its output to the job's log). A client that goes away mid-job is a
    SIGTERM to the job: a training run stops at the end of its epoch with its state saved.
    Returns (ok, error, whether the client went away)."""
    done, gone = threading.Event(), threading.Event()

    def watch():
        with contextlib.suppress(OSError):
            conn.recv(1)  # returns when the client closes the socket (or dies)
        if not done.is_set():
            gone.set()
            os.kill(os.getpid(), signal.SIGTERM)

    saved = sys.stdout, sys.stderr, sys.excepthook, os.getcwd()
    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    try:
        os.chdir(request["cwd"])
        smk = pickle.loads(base64.b64decode(request["snakemake"]))
        watcher.start()
        try:
            runpy.run_path(request["script"], init_globals={"snakemake": smk}, run_name="__main__")
        except SystemExit as e:
            if e.code not in (None, 0):
                raise
        print(f"[runner {os.getpid()}] done in {time.perf_counter() - started:.2f} s", flush=True)
        return True, None, False
    except BaseException as e:  # noqa: BLE001 - Preempted and KeyboardInterrupt too: reported, the runner goes on
        traceback.print_exc()  # into the job's log when its script got that far
        return False, f"{type(e).__name__}: {e}", gone.is_set()
    finally:
        done.set()
        if sys.stdout is not saved[0]:
            with contextlib.suppress(Exception):
                sys.stdout.close()
        sys.stdout, sys.stderr, sys.excepthook = saved[:3]
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, force=True)
        os.chdir(saved[3])
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():  # an idle runner holds no cached GPU memory
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--key", required=True)
    ap.add_argument("--slot", type=int, required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--idle", type=float, required=True)
    args = ap.parse_args(argv)
    serve(args.key, args.slot, args.jobs, args.idle)


if __name__ == "__main__":
    main()
