"""The Slurm batch scripts under a real Slurm: munged, slurmctld and slurmd of Debian's slurm-wlm
started on this machine (a cluster of two nodes emulated here, whose configuration and munge key
live in a temporary folder), both scripts submitted with sbatch as the README shows for CPU nodes,
on one node and on two, and their outputs
checked: extraction's sessions and shards against a local run of the same dumps; training through
a stop signal, Slurm's requeue and a cancel with a resubmission, each continuing from its
checkpoint with the losses of an uninterrupted run, bitwise, and a requeue onto fewer nodes, which
resumes with fewer trainers.

Slurm's packages are installed by .ci/run; without them (and without root to install them) the
tests are skipped with the reason."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.net import free_port

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo")
SALT = "slurm-test-salt"
NODES = ("node1", "node2")



def _tools() -> dict[str, str] | None:
    paths = {name: shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
             for name in DAEMONS}
    return None if None in paths.values() else paths


def slurm_tools() -> dict[str, str]:
    """The Slurm and munge programs, installed from the distribution's packages when missing
    (root and apt-get needed); skips the tests with the reason when they cannot be had."""
    tools = _tools()
    if tools is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"], env=env, capture_output=True, timeout=900)
        tools = _tools()
    if tools is None:
        pytest.skip("Slurm is not installed (Debian: apt-get install slurm-wlm munge) and could not be installed here")
    return tools


class Slurm:
    """A one-node Slurm cluster for the tests; ``run`` calls its commands with its SLURM_CONF."""

    def __init__(self, root: Path, tools: dict[str, str]):
        self.root, self.tools = root, tools
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
        self.procs: list[subprocess.Popen] = []

    def run(self, name: str, *args: str, env: dict | None = None, cwd=REPO) -> str:
        out = subprocess.run([self.tools[name], *args], env={**self.env, **(env or {})}, cwd=cwd,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{name} {' '.join(args)}: {out.stderr}"
        return out.stdout

    def start(self) -> None:
        root = self.root
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir(mode=0o700)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = root / "munge" / "socket"
        self._daemon("munged", "--foreground", "--force", f"--key-file={key}", f"--socket={socket_path}",
                     f"--pid-file={root / 'munge' / 'pid'}", f"--log-file={root / 'log' / 'munged.log'}",
                     f"--seed-file={root / 'munge' / 'seed'}")
        self._wait(lambda: socket_path.exists(), "munged", root / "log" / "munged.log")
        host = socket.gethostname().split(".")[0]
        with open("/proc/meminfo") as f:
            memory_mb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1)) // 1024 * 9 // 10
        (root / "slurm.conf").write_text("\n".join([
            "ClusterName=rptest", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={socket_path},cred_expire=10",  # a requeued job waits cred_expire (120 s by default)
            f"SlurmctldPort={free_port()}",
            f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}/%n",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.%n.pid'}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={root / 'log' / 'slurmd.%n.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory", "SchedulerType=sched/backfill",
            "ReturnToService=2", "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none", "MinJobAge=3600", "KillWait=10", "InactiveLimit=0",
            # Two nodes emulated on this machine (one slurmd each, `slurmd -N`), reached at loopback:
            # names that do not resolve, as on clusters whose NodeAddr is not the node's name.
            *[f"NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 Port={free_port()} CPUs={os.cpu_count()} "
              f"RealMemory={memory_mb} State=UNKNOWN" for node in NODES],
            "PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
        self._daemon("slurmctld", "-D", "-c", "-i")
        for node in NODES:
            self._daemon("slurmd", "-D", "-N", node)
        self._wait(lambda: subprocess.run([self.tools["sinfo"], "-h", "-N", "-o", "%T"], env=self.env,
                                          capture_output=True, text=True).stdout.split() == ["idle"] * len(NODES),
                   "the Slurm nodes", root / "log" / "slurmctld.log")

    def _daemon(self, name: str, *args: str) -> None:
        log = open(self.root / "log" / f"{name}{''.join(a for a in args if a in NODES)}.out", "w")
        self.procs.append(subprocess.Popen([self.tools[name], *args], env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def _wait(self, ready, what: str, log: Path, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while not ready():
            died = [p.args[0] for p in self.procs if p.poll() is not None]
            if died or time.time() > deadline:
                logs = "".join(p.read_text()[-2000:] for p in sorted((self.root / "log").iterdir()))
                pytest.fail(f"{what} did not come up ({died or 'timeout'}); logs:\n{logs}")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run([self.tools["scancel"], "--full", "--user", "root"], env=self.env, capture_output=True)
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()

    # jobs

    def submit(self, *args: str, env: dict | None = None) -> str:
        return self.run("sbatch", "--parsable", *args, env=env).strip().split(";")[0]

    def job(self, job: str) -> dict[str, str]:
        line = self.run("scontrol", "show", "job", "-o", job)
        return dict(re.findall(r"(\w+)=(\S*)", line))

    def wait_for(self, job: str, condition, what: str, timeout: float = 900) -> dict[str, str]:
        """Polls the job until ``condition(its fields)``; fails when it ends first."""
        deadline = time.time() + timeout
        while True:
            info = self.job(job)
            if condition(info):
                return info
            if info["JobState"] in ENDED or time.time() > deadline:
                pytest.fail(f"job {job} {info['JobState']} (waiting for {what}); its log:\n{read(info.get('StdOut'))[-6000:]}")
            time.sleep(0.5)

    def wait_done(self, job: str, state: str = "COMPLETED", timeout: float = 900) -> dict[str, str]:
        """Waits for the job to end; it must end in ``state``."""
        info = self.wait_for(job, lambda i: i["JobState"] in ENDED, "its end", timeout)
        assert info["JobState"] == state, f"job {job} {info['JobState']}, not {state}:\n{read(info.get('StdOut'))[-6000:]}"
        return info


ENDED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "DEADLINE")


def read(path: str | None) -> str:
    try:
        return Path(path).read_text()
    except (OSError, TypeError):
        return ""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    tools = slurm_tools()
    cluster = Slurm(tmp_path_factory.mktemp("slurm"), tools)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def job_env(**extra) -> dict:
    return {"PYTHON": PYTHON, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1", "REDDIT_PRETRAIN_SALT": SALT, **extra}


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> Path:
    """A generated month, and the local run of it (ingest, extract) that every Slurm run must equal."""
    from extraction.sessions.job import ExtractConfig, run_extract
    from extraction.ingest.job import IngestConfig, run_ingest
    from reddit_pretrain_app.synth import SynthConfig, write_month

    root = tmp_path_factory.mktemp("slurm-month")
    write_month(str(root / "dumps"), SynthConfig(comments=6_000, seed=71))
    os.environ["REDDIT_PRETRAIN_SALT"] = SALT
    try:
        run_ingest(IngestConfig(inputs=[f"{root}/dumps/RC_*.zst", f"{root}/dumps/RS_*.zst"], output=str(root / "ingest")))
        run_extract(ExtractConfig(input=str(root / "ingest"), output=str(root / "extract")))
    finally:
        del os.environ["REDDIT_PRETRAIN_SALT"]
    return root


def check_extraction(out: Path, month: Path, tmp_path: Path) -> None:
    """The Slurm run's sessions, rejects and shards are the local run's bytes (the shards made here
    with the tokenizer the job trained)."""
    import pyarrow.parquet as pq

    from extraction.tokenize.job import TokenizeConfig, run_tokenize

    run_tokenize(TokenizeConfig(input=str(month / "extract"), output=str(tmp_path / "l-shards"), tokenizer=str(out / "tokenizer")))
    assert pq.read_table(out / "extract" / "sessions").num_rows > 500
    for table in ("sessions", "rejects"):
        ours = sorted(p.relative_to(out / "extract") for p in (out / "extract" / table).rglob("*.parquet"))
        assert ours and ours == sorted(p.relative_to(month / "extract") for p in (month / "extract" / table).rglob("*.parquet"))
        for name in ours:
            assert (out / "extract" / name).read_bytes() == (month / "extract" / name).read_bytes(), name
    manifest = json.loads((out / "shards" / "manifest.json").read_text())
    assert manifest["splits"] == json.loads((tmp_path / "l-shards" / "manifest.json").read_text())["splits"]
    shard_files = sorted(p.relative_to(out / "shards") for p in (out / "shards" / "shards").rglob("*") if p.is_file())
    assert shard_files
    for name in shard_files:
        assert (out / "shards" / name).read_bytes() == (tmp_path / "l-shards" / name).read_bytes(), name


def submit_extract(slurm: Slurm, month: Path, tmp_path: Path, nodes: int, cpus: int, **env) -> tuple[Path, str]:
    """The README's extraction command for CPU nodes, with the job's log and Spark's logs kept here."""
    out = tmp_path / "run"
    job = slurm.submit("--nodes", str(nodes), "--cpus-per-task", str(cpus), f"--output={tmp_path}/slurm-%x-%j.out",
                       "jobs/extract_slurm.sbatch", str(month / "dumps"), str(out),
                       env=job_env(LOG_DIR=str(tmp_path / "logs"), VOCAB_SIZE="1000",
                                   SPARK_MASTER_WEBUI_PORT=str(free_port()), **env))
    log = read(slurm.wait_done(job)["StdOut"])
    assert f"[slurm] {nodes} worker(s) registered" in log and "[slurm] done" in log, log[-4000:]
    assert (tmp_path / "logs" / "spark-master.log").exists()
    return out, log


@pytest.mark.slow
def test_extract_script_on_two_nodes_gives_the_local_output(slurm, month, tmp_path):
    """A master and two workers, one a node: the steps share the allocation (the master's step and
    the head node's worker), and the output is the local run's bytes. The master's configured port
    is taken (by this test), so Spark binds the next one and the workers find it in its log."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out, log = submit_extract(slurm, month, tmp_path, nodes=2, cpus=1, SPARK_MASTER_PORT=str(port))
    assert "Spark master spark://" in log and f":{port} up" not in log
    assert "1 cores and" in log, log[-3000:]
    check_extraction(out, month, tmp_path)


def train_losses(out: Path) -> dict[int, float]:
    with open(out / "metrics.jsonl") as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "train"}


def last_step(out: Path) -> int:
    try:
        return max(train_losses(out), default=0)
    except (OSError, ValueError):  # not written yet, or a line being written
        return 0


STEPS = 100


def submit_train(slurm: Slurm, shards, tmp_path: Path, out: Path, *extra: str, nodes: int = 1) -> str:
    """The README's training command for CPU nodes: two processes on one node, or one on each of two."""
    overrides = [f"data.shards={shards}", "model=tiny", "trainer=ci", "data.seq_len=64", f"trainer.max_steps={STEPS}",
                 "trainer.checkpoint_interval=40", "trainer.eval_interval=50", "trainer.keep_last=10",
                 "trainer.tensorboard=false"]
    return slurm.submit("--gpus-per-node=0", f"--cpus-per-task={2 // nodes}", "--nodes", str(nodes),
                        f"--output={tmp_path}/slurm-%x-%j.out", "jobs/train_slurm.sbatch", *overrides,
                        f"trainer.out_dir={out}", *extra, env=job_env(GPUS_PER_NODE=str(2 // nodes)))


@pytest.fixture(scope="module")
def uninterrupted(slurm, shards_dir, tmp_path_factory) -> dict[int, float]:
    """Every step's loss of a run that nothing stopped (two processes on one node)."""
    tmp = tmp_path_factory.mktemp("slurm-straight")
    slurm.wait_done(submit_train(slurm, shards_dir, tmp, tmp / "straight"))
    losses = train_losses(tmp / "straight")
    assert sorted(losses) == list(range(1, STEPS + 1))
    return losses


@pytest.mark.slow
def test_train_script_under_slurm_stops_on_its_signal_requeues_and_resumes(slurm, shards_dir, uninterrupted, tmp_path):
    def submit(out: Path, *extra: str) -> str:
        return submit_train(slurm, shards_dir, tmp_path, out, *extra)

    # 1. The signal Slurm sends before the time limit (--signal=USR1@300), sent now.
    out = tmp_path / "stopped"
    job = submit(out)
    slurm.wait_for(job, lambda i: last_step(out) >= 15, "step 15")
    slurm.run("scancel", "--signal=USR1", job)
    requeued = slurm.wait_for(job, lambda i: int(i["Restarts"]) >= 1 and i["JobState"] == "PENDING", "the requeue")
    log = read(requeued["StdOut"])
    stopped_at = int(re.search(r"stopped by SIGUSR1 at step (\d+)", log).group(1))
    assert 15 <= stopped_at < STEPS and "requeueing job" in log
    assert (out / "checkpoints" / f"step_{stopped_at:07d}" / "COMPLETE.json").exists()
    # 2. The requeued run resumes by itself; cancelled (scancel: SIGTERM) after its next checkpoint.
    first_after = (stopped_at // 40 + 1) * 40
    slurm.wait_for(job, lambda i: (out / "checkpoints" / f"step_{first_after:07d}" / "COMPLETE.json").exists(),
                   f"checkpoint {first_after}")
    slurm.run("scancel", job)
    info = slurm.wait_done(job, "CANCELLED")
    log = read(info["StdOut"])
    assert f"resuming from {out / 'checkpoints' / f'step_{stopped_at:07d}'}" in log, log[-4000:]
    assert "restart 1 of job" in log
    # 3. Submitted again with model.init=resume: from the newest complete checkpoint to the end.
    info = slurm.wait_done(submit(out, "model.init=resume"))
    log = read(info["StdOut"])
    resumed_from = int(re.search(r"resuming from \S+/step_(\d+)", log).group(1))
    assert resumed_from >= first_after and "[train] done" in log
    assert train_losses(out) == uninterrupted  # every step's loss, bitwise, across the stop, the requeue and the cancel


@pytest.mark.slow
def test_train_script_on_two_nodes(slurm, shards_dir, uninterrupted, tmp_path):
    """One trainer on each of two nodes, the rendezvous at the first node's address (NodeAddr): the
    losses of two processes on one node, bitwise."""
    info = slurm.wait_done(submit_train(slurm, shards_dir, tmp_path, tmp_path / "two", nodes=2))
    log = read(info["StdOut"])
    assert "2 node(s) x 1 process(es)" in log and "rendezvous 127.0.0.1:" in log and "world 2" in log, log[-3000:]
    assert train_losses(tmp_path / "two") == uninterrupted


@pytest.mark.slow
def test_train_script_requeued_onto_fewer_nodes_resumes_with_fewer_trainers(slurm, shards_dir, uninterrupted, tmp_path):
    """On two nodes, one trainer a node. The second node is drained (taken away) and the job stopped
    by its signal; the requeued job cannot have two nodes, and is given the one left (its node count
    changed while it waits, as an operator or a requeue onto another partition would). One trainer
    then resumes the two's checkpoint (converted to DeepSpeed's universal layout, the gradient
    accumulation doubled to keep the global batch) and finishes: the losses of the uninterrupted
    run (two processes), within float tolerance, every step."""
    out = tmp_path / "shrunk"
    overrides = [f"data.shards={shards_dir}", "model=tiny", "trainer=ci", "data.seq_len=64", f"trainer.max_steps={STEPS}",
                 "trainer.checkpoint_interval=40", "trainer.eval_interval=50", "trainer.keep_last=10",
                 "trainer.tensorboard=false", f"trainer.out_dir={out}"]
    job = slurm.submit("--gpus-per-node=0", "--cpus-per-task=1", "--nodes=2", f"--output={tmp_path}/slurm-%x-%j.out",
                       "jobs/train_slurm.sbatch", *overrides, env=job_env(GPUS_PER_NODE="1"))
    try:
        slurm.wait_for(job, lambda i: last_step(out) >= 15, "step 15")
        slurm.run("scontrol", "update", "NodeName=node2", "State=DRAIN", "Reason=taken away by the test")
        slurm.run("scancel", "--signal=USR1", job)
        slurm.wait_for(job, lambda i: int(i["Restarts"]) >= 1 and i["JobState"] == "PENDING", "the requeue")
        slurm.run("scontrol", "update", f"JobId={job}", "NumNodes=1", "NumTasks=1")  # one task a node
        log = read(slurm.wait_done(job)["StdOut"])
    finally:
        slurm.run("scontrol", "update", "NodeName=node2", "State=RESUME")
    stopped_at = int(re.search(r"stopped by SIGUSR1 at step (\d+)", log).group(1))
    assert "2 node(s) x 1 process(es)" in log and "world 2" in log and "requeueing job" in log, log[-4000:]
    assert "restart 1 of job" in log and "1 node(s) x 1 process(es)" in log, log[-4000:]
    assert f"the world size changed: 2 processes wrote {out / 'checkpoints' / f'step_{stopped_at:07d}'}, 1 resume it; " \
        "the global batch stays 16 (gradient accumulation 4)" in log, log[-4000:]
    assert (out / "checkpoints" / "universal" / f"step_{stopped_at:07d}" / "COMPLETE.json").exists()
    losses = train_losses(out)
    assert sorted(losses) == sorted(uninterrupted) and "[train] done" in log
    for step, loss in uninterrupted.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5, abs=1e-6), step


@pytest.mark.slow
def test_extract_script_fails_with_the_log_when_spark_does_not_come_up(slurm, tmp_path):
    """A PYTHON whose folder has no spark-class (pyspark not installed there): the master's step ends
    at once and the job fails with one line naming the master's log, instead of waiting."""
    job = slurm.submit("--nodes", "1", "--cpus-per-task", "2", f"--output={tmp_path}/slurm-%x-%j.out",
                       "jobs/extract_slurm.sbatch", str(tmp_path / "dumps"), str(tmp_path / "run"),
                       env={**job_env(LOG_DIR=str(tmp_path / "logs")), "PYTHON": shutil.which("true") or "/bin/true"})
    info = slurm.wait_done(job, "FAILED", timeout=300)
    log = read(info["StdOut"])
    assert f"error: the Spark master exited before coming up; its log: {tmp_path / 'logs' / 'spark-master.log'}" in log, log
