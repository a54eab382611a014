"""A throwaway one-node SLURM cluster for tests (helper module, no tests in here).

Debian's ``slurm-wlm`` + ``munge`` (SLURM 22.05) as root, everything in one temp dir:
its own munge key and socket, its own ports, state, spool, logs and ``slurm.conf`` (clients
find it through ``SLURM_CONF``, see :attr:`SlurmCluster.env`), so it never touches
``/etc/slurm`` or another cluster on the same machine. Two fake GPUs are declared as GRES so
``sbatch --gpus=1`` is accepted on a machine without GPUs.

    from slurm_cluster import SlurmCluster, SlurmUnavailable

    @pytest.fixture(scope="session")
    def slurm():
        cluster = SlurmCluster()
        try:
            cluster.start()              # installs slurm-wlm/munge with apt if missing
        except SlurmUnavailable as e:
            pytest.skip(str(e))
        try:
            yield cluster
        finally:
            cluster.stop()               # by PID, exactly the daemons it started

    def test_x(slurm):
        subprocess.run([...snakemake..., *SlurmCluster.SNAKEMAKE_ARGS], env=slurm.env)
        assert slurm.submissions() == 3

or ``with SlurmCluster() as c: ...`` (``__enter__`` raises :class:`SlurmUnavailable`).

The cluster has no accounting (no slurmdbd): ``sacct`` answers nothing, so the executor plugin
must use ``--slurm-status-command squeue``; finished jobs stay visible to ``squeue``/``scontrol``
for ``MinJobAge`` (1 h here). Every finished job is also written to a ``jobcomp/filetxt`` file
(:meth:`SlurmCluster.completed_jobs`), and every ``sbatch`` shows as one
``_slurm_rpc_submit_batch_job`` line in slurmctld's log (:meth:`SlurmCluster.submissions`;
one array submission counts once).
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmUnavailable", "ensure_slurm_installed"]

DAEMONS = ("slurmctld", "slurmd", "munged")
APT_PACKAGES = ("slurm-wlm", "munge")
CLIENT_TOOLS = (
    "srun",
    "sbatch",
    "salloc",
    "squeue",
    "sinfo",
    "scontrol",
    "scancel",
    "sacct",
    "sacctmgr",
    "sshare",
    "sstat",
)


class SlurmUnavailable(RuntimeError):
    """The cluster cannot run here; ``str(e)`` is a skip reason."""


def _missing_binaries():
    return [
        b
        for b in (*DAEMONS, "sbatch", "squeue", "sinfo", "scontrol", "scancel")
        if shutil.which(b) is None and not Path("/usr/sbin", b).exists()
    ]


def _which(name):
    return shutil.which(name) or str(Path("/usr/sbin", name))


def ensure_slurm_installed(timeout=600):
    """Install Debian's slurm-wlm and munge when ``slurmctld`` is absent (quietly).

    Returns None when everything is there, else a skip reason (str).
    """
    if not _missing_binaries():
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(_missing_binaries())} missing) and not root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    try:
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]
        r = subprocess.run(install, **quiet)
        if r.returncode != 0:  # stale or missing package lists: update once, retry
            subprocess.run(["apt-get", "update", "-qq"], **quiet)
            r = subprocess.run(install, **quiet)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not install {' '.join(APT_PACKAGES)} with apt-get: {e}"
    if r.returncode != 0 or _missing_binaries():
        tail = "\n".join(r.stdout.strip().splitlines()[-5:])
        return (
            f"could not install {' '.join(APT_PACKAGES)} with apt-get "
            f"(exit {r.returncode}; still missing: {', '.join(_missing_binaries())}):\n{tail}"
        )
    return None


def _child_setup(user=None, die_with_parent=True):
    """preexec_fn for the daemons: switch to `user` (a pwd entry) if given, then ask for
    SIGTERM when the thread that started us dies, so that even a test process killed with
    SIGKILL (no __exit__, no atexit) leaves no daemon behind. In this order because Linux
    clears the parent-death signal on any change of credentials."""

    prctl = None
    if die_with_parent:
        try:  # resolved here, in the parent: the child may no longer read Python's files
            import ctypes

            prctl = ctypes.CDLL(None).prctl
        except (ImportError, OSError, AttributeError):
            prctl = None

    def setup():
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        if prctl is not None:
            PR_SET_PDEATHSIG = 1
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return setup


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware():
    """CPUs and RealMemory as slurmd sees them (``slurmd -C``), so the node is never INVAL."""
    cpus, mem = os.cpu_count() or 1, None
    try:
        out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"\bCPUs=(\d+)", out)
        cpus = int(m.group(1)) if m else cpus
        m = re.search(r"\bRealMemory=(\d+)", out)
        mem = int(m.group(1)) if m else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    if mem is None:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return cpus, mem


class SlurmCluster:
    """One controller + one node on this host, as root, in a private temp dir."""

    #: What the executor plugin (snakemake-executor-plugin-slurm 2.8.0) needs on this
    #: cluster, besides ``--profile profiles/slurm``: there is no accounting, so poll with
    #: squeue (with the default, sacct, a finished job is never noticed and the run hangs);
    #: first poll after 2 s instead of 40 s (the default makes every job last >= 40 s; the
    #: plugin then polls 10 s later, 20 s later ... while nothing finishes).
    #: No account flag is needed: ``--slurm-no-account`` is accepted but unused in 2.8.0;
    #: with ``slurm_account: ""`` the plugin's guess (sacct) fails and it submits without
    #: -A, and a named account passes too (sacctmgr/sshare know no accounts here, so the
    #: plugin skips its check and SLURM, without AccountingStorageEnforce, takes any -A).
    SNAKEMAKE_ARGS = (
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
    )

    def __init__(
        self,
        gpus=2,
        partition="debug",
        install=True,
        start_timeout=60,
        root_dir=None,
        keep_dir_on_failure=False,
        die_with_parent=True,
        cpus=None,
        real_memory=None,
    ):
        self.gpus = gpus
        self.partition = partition
        self.install = install
        self.start_timeout = start_timeout
        self.root_dir = root_dir
        self.keep_dir_on_failure = keep_dir_on_failure
        # daemons get SIGTERM when the *thread* that called start() exits: call start() from
        # the main thread (a pytest fixture does), or pass die_with_parent=False
        self.die_with_parent = die_with_parent
        self.dir: Path | None = None
        self.host = socket.gethostname().split(".")[0]
        # None: what `slurmd -C` finds. Larger values are declared as they are
        # (SlurmdParameters=config_overrides): sbatch refuses a --mem above RealMemory
        # ("Memory specification can not be satisfied"), so a run with profiles/slurm
        # (mem_mb up to 12000 x attempt) on a small CI machine wants real_memory=65536.
        self.cpus, self.real_memory = cpus, real_memory
        self.procs: dict[str, subprocess.Popen] = {}
        self.start_seconds: float | None = None  # wall time of start(), install excluded
        self.install_seconds: float = 0.0
        self._atexit_registered = False

    # ---------------------------------------------------------------- paths and env
    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "slurm.conf"

    @property
    def env(self) -> dict:
        """os.environ plus SLURM_CONF, and PATH led by wrappers of the SLURM client commands
        that set SLURM_CONF themselves: pass to every subprocess that talks to the cluster
        (snakemake, sbatch, squeue ...). Jobs inherit it (the plugin submits --export=ALL).

        The wrappers matter inside jobs: snakemake-executor-plugin-slurm-jobstep (0.6.x)
        drops every SLURM_* variable but a few before its nested `srun`, SLURM_CONF
        included, so a cluster whose slurm.conf is not at the compiled-in default path
        (/etc/slurm/slurm.conf) fails there with "fetch_config: DNS SRV lookup failed"."""
        path = f"{self.dir / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    @property
    def ctld_log(self) -> Path:
        return self.dir / "log" / "slurmctld.log"

    @property
    def slurmd_log(self) -> Path:
        return self.dir / "log" / "slurmd.log"

    @property
    def jobcomp_log(self) -> Path:
        return self.dir / "log" / "jobcomp.txt"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        """Install if needed, write the config, start munged, slurmctld, slurmd; wait idle.

        Raises SlurmUnavailable (a skip reason) when this machine cannot run the cluster;
        on any failure, whatever was started is stopped again.
        """
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test SLURM cluster needs root (slurmd runs jobs as any user)")
        if self.install:
            t = time.monotonic()
            reason = ensure_slurm_installed()
            self.install_seconds = time.monotonic() - t
            if reason:
                raise SlurmUnavailable(reason)
        elif _missing_binaries():
            raise SlurmUnavailable(f"SLURM is not installed: {', '.join(_missing_binaries())}")
        try:
            pwd.getpwnam("munge")
        except KeyError:
            raise SlurmUnavailable("no 'munge' user (is the munge package installed?)") from None

        t0 = time.monotonic()
        if not self._atexit_registered:  # last resort if the test process exits early
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._write_files()
            self._start_munged()
            self._start_daemon("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)])
            self._wait_for(self._controller_up, "slurmctld to answer", self.ctld_log)
            self._start_daemon("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host])
            self._wait_for(self._node_idle, f"node {self.host} to be idle", self.slurmd_log)
        except BaseException as e:
            logs = self._log_tails()
            self.stop(remove_dir=not self.keep_dir_on_failure)
            if isinstance(e, SlurmUnavailable):
                raise SlurmUnavailable(f"{e}\n{logs}") from e
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, remove_dir=True):
        """Cancel this cluster's jobs, stop exactly the daemons started here (by PID), remove
        the temp dir. Idempotent."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            self._cancel_all_jobs()
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
        self._kill_own_stepds()
        if remove_dir and self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    @property
    def pids(self) -> dict:
        return {name: p.pid for name, p in self.procs.items() if p.poll() is None}

    # ---------------------------------------------------------------- queries
    def run(self, *cmd, check=True, timeout=30):
        """Run a SLURM client command against this cluster; returns stdout."""
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=timeout).stdout

    def node_state(self) -> str:
        out = self.run("sinfo", "--noheader", "-N", "-n", self.host, "-o", "%T", check=False)
        return out.strip()

    def submissions(self) -> int:
        """Number of accepted sbatch calls so far (one per array submission)."""
        return len(self.submitted_job_ids())

    def submitted_job_ids(self) -> list:
        """Job ids of accepted sbatch calls, from slurmctld's log, in order."""
        if self.dir is None or not self.ctld_log.exists():
            return []
        text = self.ctld_log.read_text(errors="replace")
        return [int(m) for m in re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", text)]

    def jobs(self) -> list:
        """Every job slurmctld still knows (pending, running and finished within MinJobAge),
        as dicts of `scontrol show job --oneliner` fields (JobId, JobName, JobState, TRES,
        SubmitTime, StartTime, EndTime, Comment, ArrayJobId ...). Array tasks are separate."""
        out = self.run("scontrol", "show", "job", "--oneliner", check=False)
        if "No jobs in the system" in out:
            return []
        jobs = []
        for line in out.splitlines():
            if not line.strip():
                continue
            fields = {}
            # values may contain spaces only in a few fields (Comment, Command); split on
            # ' Key=' boundaries
            for m in re.finditer(
                r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*(?:\s(?![A-Za-z][A-Za-z0-9_:/]*=)\S*)*)", line
            ):
                fields[m.group(1)] = m.group(2).strip()
            jobs.append(fields)
        return jobs

    def completed_jobs(self) -> list:
        """Finished jobs from jobcomp/filetxt (one dict per job: JobId, Name, JobState,
        SubmitTime, StartTime, EndTime, Tres, ...)."""
        if self.dir is None or not self.jobcomp_log.exists():
            return []
        rows = []
        for line in self.jobcomp_log.read_text(errors="replace").splitlines():
            rows.append(dict(re.findall(r"(\w+)=(\S*)", line)))
        return rows

    def wait_until_empty(self, timeout=60):
        """Wait until no job is pending or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run(
                "squeue", "--noheader", "-t", "PENDING,RUNNING,CONFIGURING,COMPLETING", "-o", "%i", check=False
            )
            if not out.strip():
                return True
            time.sleep(0.5)
        return False

    # ---------------------------------------------------------------- internals
    def _write_files(self):
        self.dir = Path(tempfile.mkdtemp(prefix="slurm-test-", dir=self.root_dir))
        os.chmod(self.dir, 0o755)  # munged runs as 'munge' and must reach its subdir
        for sub in ("etc", "state", "spool", "log", "run", "dev", "bin"):
            (self.dir / sub).mkdir(mode=0o755)
        for tool in CLIENT_TOOLS:
            real = shutil.which(tool)
            if real:
                wrapper = self.dir / "bin" / tool
                wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{real}" "$@"\n')
                wrapper.chmod(0o755)
        munge_dir = self.dir / "munge"
        munge_dir.mkdir(mode=0o711)
        mu = pwd.getpwnam("munge")
        os.chown(munge_dir, mu.pw_uid, mu.pw_gid)
        key = munge_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        os.chown(key, mu.pw_uid, mu.pw_gid)
        self.munge_socket = munge_dir / "munge.socket"

        hw_cpus, hw_mem = _node_hardware()
        self.cpus = self.cpus or hw_cpus
        self.real_memory = self.real_memory or hw_mem
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        gpu_files = [self.dir / "dev" / f"fakegpu{i}" for i in range(self.gpus)]
        for i, f in enumerate(gpu_files):
            # slurmd wants character devices ("... is not a valid character or block device,
            # fix your gres.conf" for plain files: --gpus still works then, but no
            # CUDA_VISIBLE_DEVICES is set). Clones of harmless memory devices (1,3 /dev/null,
            # 1,5 /dev/zero, ...) stand in for GPUs; nothing ever opens them.
            minors = (3, 5, 7, 8, 9)
            try:
                os.mknod(f, 0o666 | stat.S_IFCHR, os.makedev(1, minors[i % len(minors)]))
            except OSError:
                f.touch()
        d = self.dir
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(
            f"""\
# written by tests/slurm_cluster.py: a one-node test cluster, no accounting
ClusterName=snaketest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=3600
KillWait=5
InactiveLimit=0
DefMemPerCPU={max(1, self.real_memory // max(1, self.cpus))}
GresTypes=gpu
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory}{gres} State=UNKNOWN
PartitionName={self.partition} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        files = f"{d}/dev/fakegpu[0-{self.gpus - 1}]" if self.gpus > 1 else str(gpu_files[0]) if self.gpus else ""
        (self.dir / "etc" / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File={files}\n" if self.gpus else ""
        )

    def _start_munged(self):
        d = self.dir / "munge"
        cmd = [
            _which("munged"),
            "--foreground",
            f"--socket={self.munge_socket}",
            f"--key-file={d / 'munge.key'}",
            f"--pid-file={d / 'munged.pid'}",
            f"--log-file={d / 'munged.log'}",
            f"--seed-file={d / 'munged.seed'}",
            "--num-threads=2",
        ]
        mu = pwd.getpwnam("munge")
        self._spawn("munged", cmd, user=mu)
        self._wait_for(lambda: self.munge_socket.exists(), "munged's socket", d / "munged.log", timeout=15)

    def _start_daemon(self, name, cmd):
        self._spawn(name, cmd)

    def _spawn(self, name, cmd, user=None):
        out = open(self.dir / "log" / f"{name}.stdout", "wb")
        try:
            self.procs[name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SLURM_CONF": str(self.conf)},
                start_new_session=True,  # a Ctrl-C in the test run reaches stop(), not them
                preexec_fn=_child_setup(user, self.die_with_parent),
            )
        finally:
            out.close()

    def _wait_for(self, predicate, what, log=None, timeout=None):
        deadline = time.monotonic() + (timeout or self.start_timeout)
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SlurmUnavailable(f"{name} exited with {p.returncode} while waiting for {what}")
            try:
                if predicate():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.25)
        raise SlurmUnavailable(f"timed out after {timeout or self.start_timeout} s waiting for {what}")

    def _controller_up(self):
        r = subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True, text=True, timeout=10)
        return r.returncode == 0 and "UP" in r.stdout

    def _node_idle(self):
        return self.node_state().rstrip("*~#") == "idle"

    def _cancel_all_jobs(self):
        try:
            self.run("scancel", "--full", "--user", pwd.getpwuid(os.geteuid()).pw_name, check=False)
            self.wait_until_empty(timeout=15)
        except (OSError, subprocess.SubprocessError):
            pass

    def _kill_own_stepds(self):
        """slurmstepd outlives slurmd by design (a job keeps running when slurmd restarts).
        If jobs could not be cancelled (slurmctld gone), kill the slurmstepd processes of
        this cluster, and the job processes under them, by PID: a slurmstepd is this
        cluster's when its environment (inherited from our slurmd) has our SLURM_CONF."""
        if self.dir is None:
            return
        marker = f"SLURM_CONF={self.conf}".encode()
        parents, stepds = {}, []
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                pid = int(pid_dir.name)
                status = (pid_dir / "status").read_text()
                parents[pid] = int(re.search(r"^PPid:\s*(\d+)", status, re.M).group(1))
                if (pid_dir / "cmdline").read_bytes().startswith(b"slurmstepd"):
                    if marker in (pid_dir / "environ").read_bytes().split(b"\0"):
                        stepds.append(pid)
            except (OSError, ValueError, AttributeError):
                continue
        doomed = set(stepds)
        changed = True
        while changed:  # every descendant of one of our slurmstepds
            changed = False
            for pid, ppid in parents.items():
                if ppid in doomed and pid not in doomed:
                    doomed.add(pid)
                    changed = True
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _log_tails(self, lines=15):
        if self.dir is None:
            return ""
        out = []
        for f in sorted((self.dir / "log").glob("*")) + [self.dir / "munge" / "munged.log"]:
            if f.exists() and f.stat().st_size:
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {f.name}\n" + "\n".join(tail))
        return "\n".join(out)
