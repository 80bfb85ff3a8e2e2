"""Process-wide compute settings: thread count, OpenMP wait policy, subnormal flushing.

Why these three matter (measured on a shared 2-core machine, see ``benchmarks/bench_cluster.py``):

- **Threads.** torch uses every core it sees by default; several worker processes on one
  machine then fight over the cores. The thread count here is the cores available to *this
  process* (CPU affinity and the cgroup CPU quota, not the machine's total) shared between
  the local workers.
- **OpenMP wait policy.** With the default (active) policy, an idle OpenMP thread spins for a
  while before it sleeps; on a busy machine the spinning threads take the cores from the
  threads doing work (projection was 5x slower). ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep.
  OpenMP reads it once, when torch loads it: it must be in the environment *before* torch
  is imported.
- **Subnormal floats.** Arithmetic on subnormal floats (|x| < 1.2e-38 in float32) is up to
  100x slower on x86 CPUs. Flushing them to zero (FTZ/DAZ) is per thread: torch's
  ``set_flush_denormal`` sets it on the calling thread only. OpenMP worker threads inherit the
  floating-point state of the thread that creates them, and torch creates its pool on the first
  parallel operation, so the flag is set right after torch loads, before any computation.

The command line calls :func:`configure_runtime` at start-up; notebooks and scripts call it
once, first thing::

    from facefeat.runtime import configure_runtime
    configure_runtime()            # before any torch computation

Worker processes started by :mod:`facefeat.engine.executors` call it themselves.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys
from typing import Any, Callable

log = logging.getLogger(__name__)

#: Environment variables read by OpenMP / BLAS libraries when they load.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"

_STATE: dict[str, Any] = {}


def cores_available() -> int:
    """CPU cores this process may use: its CPU affinity, capped by a cgroup (v2) CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):  # no cgroup v2 quota
        pass
    return max(1, cores)


def default_threads(*, workers: int = 1) -> int:
    """Intra-op threads per worker: the available cores shared between ``workers`` processes."""
    return max(1, cores_available() // max(1, int(workers)))


def worker_environment(threads: int) -> dict[str, str]:
    """Environment for a worker process that uses ``threads`` intra-op threads.

    The wait policy is ``PASSIVE`` unless the user set one explicitly.
    """
    env = {name: str(int(threads)) for name in THREAD_ENV}
    env[WAIT_POLICY_ENV] = os.environ.get(WAIT_POLICY_ENV, "PASSIVE")
    return env


def configure_runtime(*, threads: int | None = None, workers: int = 1, quiet: bool = False) -> dict[str, Any]:
    """Set the thread count, the OpenMP wait policy and subnormal flushing for this process.

    Call it before any torch computation (first cell of a notebook). Calling it again is cheap
    and sets the flush flag on the calling thread too.

    Parameters
    ----------
    threads : int, optional
        Intra-op threads. Default: ``OMP_NUM_THREADS`` if the user set it, else
        :func:`default_threads` for ``workers``.
    workers : int, default 1
        Worker processes sharing this machine's cores (for the default thread count).
    quiet : bool, default False
        Do not warn when a setting could not take effect (workers call it per task).

    Returns
    -------
    dict
        ``cores``, ``threads``, ``omp_wait_policy`` (the value in force, or ``None`` when torch
        was loaded before it could be set), ``flush_denormal`` (``True``, ``"at torch import"`` when
        torch is not loaded yet, or ``False`` when the CPU cannot flush), ``flush_checked``
        (whether a probe saw every intra-op thread flush).
    """
    user_threads = os.environ.get("OMP_NUM_THREADS") if "OMP_NUM_THREADS" not in _STATE.get("set_env", {}) else None
    if threads is None:
        threads = int(user_threads) if user_threads and user_threads.isdigit() and int(user_threads) > 0 \
            else default_threads(workers=workers)
    threads = max(1, int(threads))
    info: dict[str, Any] = {"cores": cores_available(), "threads": threads}
    if "torch" not in sys.modules:
        env = worker_environment(threads)
        os.environ.update(env)
        _STATE["set_env"] = env
        info["omp_wait_policy"] = env[WAIT_POLICY_ENV]
        _STATE["threads"] = threads
        if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _AfterImport("torch", _apply_torch_settings))
        info.update(flush_denormal="at torch import", flush_checked=False)
        return info
    # torch is loaded: OpenMP has read its wait policy already.
    policy = os.environ.get(WAIT_POLICY_ENV)
    info["omp_wait_policy"] = policy if _STATE.get("set_env") or policy else None
    if info["omp_wait_policy"] is None and not quiet:
        log.warning("torch was imported before facefeat.runtime.configure_runtime(): the OpenMP wait policy "
                    "stays at its default; call configure_runtime() first, or set OMP_WAIT_POLICY=PASSIVE")
    _STATE["threads"] = threads
    info.update(_apply_torch_settings(sys.modules["torch"], quiet=quiet))
    return info


def _apply_torch_settings(torch, *, quiet: bool = False) -> dict[str, Any]:
    # Flush first: the intra-op pool threads, created at the first parallel operation,
    # inherit this thread's floating-point state.
    flush = bool(torch.set_flush_denormal(True))
    threads = _STATE.get("threads", 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    checked = flush and _flush_reaches_pool(torch)
    if flush and not checked and not quiet:
        log.warning("subnormal floats are flushed on the main thread but not in all of torch's %d intra-op "
                    "threads (they existed before configure_runtime() was called); call it before any torch "
                    "computation", threads)
    _STATE["flush_checked"] = checked
    return {"flush_denormal": flush, "flush_checked": checked}


def _flush_reaches_pool(torch) -> bool:
    """True if an elementwise product split over the intra-op threads flushes everywhere."""
    if torch.get_num_threads() == 1:
        return True
    # Large enough to be split between threads (torch's grain size is 32768 elements).
    x = torch.full((1 << 17,), 1e-30, dtype=torch.float32)
    return not bool((x * 1e-10).count_nonzero())


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` once ``name`` has been imported, without importing it.

    Commands that never use torch stay fast; those that do get the settings before their
    first computation.
    """

    def __init__(self, name: str, callback: Callable) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one-shot; also keeps find_spec below from finding us
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, loader, callback: Callable) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name):  # resource readers and the like: the real loader's
        return getattr(self._loader, name)
