"""How a training process joins its job, under any launcher (one plain process, torchrun, the
DeepSpeed launcher, SLURM through either): launcher arguments, dying with the launcher, and the
process group."""

from __future__ import annotations

import os
import signal
import sys
import threading

STOPPED_EXIT = 3
"""The trainer's exit status after a stop signal (``trainer.stop_signals``): a checkpoint of the
step it stopped at is complete, and the run continues with ``model.init=resume``."""


def strip_launcher_args() -> None:
    """The DeepSpeed launcher appends --local_rank=N; Hydra would reject it."""
    argv = []
    skip = False
    for i, arg in enumerate(sys.argv):
        if skip:
            skip = False
            continue
        if arg.startswith("--local_rank=") or arg.startswith("--local-rank="):
            os.environ["LOCAL_RANK"] = arg.split("=", 1)[1]
        elif arg in ("--local_rank", "--local-rank") and i + 1 < len(sys.argv):
            os.environ["LOCAL_RANK"] = sys.argv[i + 1]
            skip = True
        else:
            argv.append(arg)
    sys.argv = argv


def _die_with_launcher() -> None:
    """A worker started by a launcher (torchrun, deepspeed) gets SIGTERM when that launcher dies,
    even by SIGKILL, instead of training on and writing checkpoints nobody waits for (Linux)."""
    import ctypes

    if "LOCAL_RANK" not in os.environ or not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != launcher:  # it died before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)


def available_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a container
    given 2 CPUs of a 64-core host sees 64 and would start 64 threads per process)."""
    import math

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    for quota_file, period_file in ((f"{cgroup}/cpu.max", None),
                                    (f"{cgroup}/cpu/cpu.cfs_quota_us", f"{cgroup}/cpu/cpu.cfs_period_us")):
        try:
            with open(quota_file) as f:
                fields = f.read().split()
            if period_file:
                with open(period_file) as f:
                    fields = fields[:1] + f.read().split()[:1]
            quota, period = fields[0], fields[1] if len(fields) > 1 else "100000"
            if quota not in ("max", "-1"):
                n = min(n, max(1, math.ceil(int(quota) / int(period))))
                break
        except (OSError, ValueError, IndexError):
            continue
    return n


def set_cpu_threads() -> int:
    """Intra-op threads of a CPU process: ``OMP_NUM_THREADS`` when set (torchrun sets 1 for several
    processes), else the process's share of the CPUs it may use (``available_cpus`` / processes on
    this node), so a lone process neither idles cores nor oversubscribes a container's quota."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = max(1, available_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
    torch.set_num_threads(threads)
    return threads


def from_every_rank(value) -> list:
    """``value`` of every rank, in rank order (so a check one rank ran can stop them all)."""
    import torch.distributed as dist

    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def init_distributed(backend: str):
    import deepspeed
    import torch

    _die_with_launcher()
    if "RANK" not in os.environ:  # one plain process
        os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"})
        os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    on_gpu = torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"
    if backend == "auto":
        backend = "nccl" if on_gpu else "gloo"
    if on_gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    from pretrain.console import captured_output

    with captured_output():  # DeepSpeed's communication-op build probe prints gcc lines on every start
        deepspeed.init_distributed(dist_backend=backend)
    return on_gpu


def _signal(name: str) -> signal.Signals | None:
    """The signal a name such as SIGUSR1 or USR1 names, or None."""
    full = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    sig = getattr(signal, full, None)
    return sig if isinstance(sig, signal.Signals) else None


def signal_problem(name: str) -> str | None:
    """Why ``name`` cannot be a stop signal (None when it can): a name such as SIGUSR1 or USR1."""
    sig = _signal(name)
    if sig is None:
        return f"{name!r} is not a signal name (SIGUSR1, SIGUSR2, SIGTERM, ...)"
    if sig in (signal.SIGKILL, signal.SIGSTOP):
        return f"{name} cannot be caught"
    return None


class StopSignals:
    """Catches the configured signals while training: the first one received is remembered
    (``received``); the loop asks every rank at the end of each step (inside the all-reduce it does
    anyway), so all ranks stop at the same step, write a checkpoint and exit. The earlier handlers
    come back on ``restore``. Only the main thread can set handlers: elsewhere nothing is caught."""

    def __init__(self, names: list[str]):
        self.received: str | None = None
        self._previous: dict[signal.Signals, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in names:
            sig = _signal(name)
            self._previous[sig] = signal.signal(sig, self._catch)

    def _catch(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
