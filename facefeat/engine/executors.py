"""Executors: where the embarrassingly parallel parts of facefeat run.

One small interface, :class:`Executor`, over three kinds of workers:

``None`` / ``"local"``
    Local processes (``jobs`` of them; ``jobs=1`` runs in this process).
``"local:N"``
    A Dask ``LocalCluster`` of N worker processes with one thread each.
``"tcp://HOST:PORT"`` (or ``tls://``)
    A running Dask scheduler (workers started by you, e.g. ``dask worker tcp://HOST:PORT``).
``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``
    Dask workers started as batch jobs through dask-jobqueue, configured by a ``cluster``
    section (:data:`CLUSTER_CONFIG_SCHEMA`; see ``docs/cluster.md``).

Functions given to an executor must be importable module-level functions and their items
picklable: workers may be other processes or other machines. Results come back in input
order; a task whose worker dies is run again (up to ``retries`` times), a task that raises is
reported, not retried (the error would repeat). The caller decides what a failure means.

Examples
--------
>>> from facefeat.engine.executors import make_executor
>>> with make_executor("local", jobs=2) as ex:          # doctest: +SKIP
...     squares = ex.map(pow, [(2, 2), (3, 2)])          # any picklable fn(item)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from facefeat.errors import ConfigError, FacefeatError

log = logging.getLogger(__name__)

#: Dask-jobqueue cluster kinds and the command each submits jobs with.
JOBQUEUE_KINDS = {"slurm": "sbatch", "pbs": "qsub", "sge": "qsub", "lsf": "bsub"}

CLUSTER_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "cluster: Dask workers started as batch jobs (slurm, pbs, sge, lsf) through dask-jobqueue",
    "properties": {
        "jobs": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1,
                 "description": "batch jobs to start; each runs one Dask worker process"},
        "cores": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 1,
                  "description": "CPU cores per job (the worker's torch threads)"},
        "memory": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*([KMGT]i?B)$", "default": "8GB",
                   "description": "memory per job, e.g. 16GB"},
        "gpus": {"type": "integer", "minimum": 0, "maximum": 16, "default": 0,
                 "description": "GPUs per job (use device: cuda; each worker sees its own GPU as cuda:0)"},
        "walltime": {"type": "string", "pattern": "^([0-9]+-)?[0-9]{1,3}:[0-9]{2}(:[0-9]{2})?$", "default": "04:00:00",
                     "description": "job time limit, HH:MM:SS (Slurm also D-HH:MM:SS)"},
        "queue": {"type": ["string", "null"], "default": None, "description": "partition (Slurm) or queue"},
        "account": {"type": ["string", "null"], "default": None, "description": "account / project to charge"},
        "prologue": {"type": "array", "items": {"type": "string"}, "default": [],
                     "description": "shell lines run in the job before the worker starts (module load, source venv)"},
        "directives": {"type": "array", "items": {"type": "string"}, "default": [],
                       "description": "extra scheduler directives, e.g. '--constraint=a100' (Slurm)"},
        "python": {"type": ["string", "null"], "default": None,
                   "description": "python executable on the compute nodes (default: this one)"},
        "local_directory": {"type": ["string", "null"], "default": None,
                            "description": "worker scratch folder on the nodes, e.g. $TMPDIR"},
        "log_directory": {"type": ["string", "null"], "default": None, "description": "folder for job logs"},
        "interface": {"type": ["string", "null"], "default": None,
                      "description": "network interface the scheduler and workers talk over, e.g. ib0"},
        "wait_timeout": {"type": "number", "minimum": 1, "default": 900,
                         "description": "seconds to wait for the first worker (queue time included)"},
    },
    "additionalProperties": False,
}

#: Seconds to wait when connecting to a running scheduler.
CONNECT_TIMEOUT = 10.0


class ExecutorError(FacefeatError):
    """The workers cannot be reached or started, or a task could not be run."""


@dataclass
class TaskFailure:
    """A task that did not produce a result: its index in the items, the error, attempts made."""

    index: int
    error: BaseException
    attempts: int = 1
    worker_lost: bool = False

    def describe(self) -> str:
        if self.worker_lost:
            return f"its worker died {self.attempts} time(s) while running it"
        return f"{type(self.error).__name__}: {self.error}"


class Executor:
    """Runs a picklable ``fn(item)`` over items on some workers (see :func:`make_executor`).

    Attributes
    ----------
    name : str
        The spec it was made from, for logs and provenance.
    workers : int
        How many tasks run at the same time.
    threads : int
        Intra-op threads each worker uses (torch, OpenMP).
    """

    name = "local"
    workers = 1
    threads = 1

    def imap(self, fn: Callable[[Any], Any], items: Sequence[Any], *,
             retries: int = 2) -> Iterator[tuple[int, Any, TaskFailure | None]]:
        """Yield ``(index, result, failure)`` as tasks finish (``failure`` is None on success).

        At most a few tasks per worker are in flight at once, so the driver's memory does not
        grow with the number of items.
        """
        raise NotImplementedError

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *, retries: int = 2,
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """``[fn(item) for item in items]`` on the workers, in input order.

        Parameters
        ----------
        fn : callable
            A module-level function (pickled to the workers).
        items : iterable
            Picklable arguments, one task each.
        retries : int, default 2
            Times a task is run again when its worker dies.
        on_result : callable, optional
            Called as ``on_result(index, result)`` in the driver when each task finishes.

        Raises
        ------
        ExecutorError
            Some tasks failed; the others ran to the end first. The message names each failed
            item's index and error.
        """
        items = list(items)
        results: list[Any] = [None] * len(items)
        failures: list[TaskFailure] = []
        for index, result, failure in self.imap(fn, items, retries=retries):
            if failure is not None:
                failures.append(failure)
                continue
            results[index] = result
            if on_result is not None:
                on_result(index, result)
        if failures:
            shown = "; ".join(f"item {f.index}: {f.describe()}" for f in failures[:5])
            raise ExecutorError(f"{len(failures)} of {len(items)} task(s) failed on {self.name} ({shown}"
                                f"{' ...' if len(failures) > 5 else ''})")
        return results

    def run_on_workers(self, fn: Callable[[], Any]) -> dict[str, Any]:
        """Run ``fn()`` once on every worker (checks before work starts).

        Returns
        -------
        dict
            Worker name -> ``fn()``'s result, or the exception it raised.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Stop the workers this executor started (a cluster it only connected to keeps running)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_executor(spec: str | None = None, *, jobs: int = 1, cluster: Mapping[str, Any] | None = None,
                  threads: int | None = None, env: Mapping[str, str] | None = None,
                  timeout: float = CONNECT_TIMEOUT) -> Executor:
    """Build the executor named by ``spec``.

    Parameters
    ----------
    spec : str, optional
        ``None`` or ``"local"`` (local processes, ``jobs`` of them), ``"local:N"`` (Dask
        LocalCluster, N processes x 1 thread), ``"tcp://HOST:PORT"`` (running Dask scheduler),
        or ``"slurm"`` / ``"pbs"`` / ``"sge"`` / ``"lsf"`` (dask-jobqueue, from ``cluster``).
    jobs : int, default 1
        Local processes for the ``"local"`` spec.
    cluster : mapping, optional
        The ``cluster`` config section for jobqueue kinds (:data:`CLUSTER_CONFIG_SCHEMA`).
    threads : int, optional
        Intra-op threads per worker; by default the cores available here shared between the
        local workers (:func:`facefeat.runtime.default_threads`), for jobqueue the job's cores.
    env : mapping, optional
        Extra environment variables for worker processes this executor starts.
    timeout : float, default 10
        Seconds to wait for a running scheduler (``tcp://``) to answer.

    Raises
    ------
    ConfigError
        Unknown spec, bad ``cluster`` section, or a jobqueue kind whose submit command is not
        installed here.
    ExecutorError
        The scheduler cannot be reached or the cluster cannot be started.
    """
    from facefeat.runtime import default_threads

    spec = (spec or "local").strip()
    if spec == "local":
        if jobs < 1:
            raise ConfigError(f"jobs = {jobs}; give a number of local processes >= 1")
        return LocalExecutor(jobs=jobs, threads=threads or default_threads(workers=jobs), env=env)
    if spec.startswith("local:"):
        n = spec.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"executor {spec!r}: write local:N with N >= 1 worker processes, e.g. --cluster local:2")
        return DaskExecutor.local_cluster(int(n), threads=threads or default_threads(workers=int(n)), env=env)
    if "://" in spec:
        return DaskExecutor.connect(spec, threads=threads, timeout=timeout)
    if spec in JOBQUEUE_KINDS:
        return DaskExecutor.jobqueue(spec, cluster or {}, threads=threads, env=env)
    raise ConfigError(f"unknown executor {spec!r}; use local (--jobs N), local:N, tcp://HOST:PORT, "
                      f"or one of {', '.join(JOBQUEUE_KINDS)} with a 'cluster' config section")


def resolve_cluster_config(section: Mapping[str, Any] | None, *, where: str = "cluster") -> dict[str, Any]:
    """Validate a ``cluster`` section and fill its defaults (unknown keys are named)."""
    from facefeat.engine.registry import validate_config

    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"{where}: must be a mapping of keys ({', '.join(CLUSTER_CONFIG_SCHEMA['properties'])})")
    return validate_config(CLUSTER_CONFIG_SCHEMA, dict(section or {}), where=where, prefix="cluster")


# -- local processes -------------------------------------------------------------------------------
class LocalExecutor(Executor):
    """``jobs`` local processes (spawned, so each starts clean); ``jobs=1`` runs in this process."""

    def __init__(self, *, jobs: int = 1, threads: int = 1, env: Mapping[str, str] | None = None) -> None:
        self.jobs = self.workers = int(jobs)
        self.threads = int(threads)
        self.env = dict(env or {})
        self.name = "local" if jobs == 1 else f"local processes x {jobs}"
        self._pool = None

    def _new_pool(self):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        ctx = get_context("spawn")
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx, initializer=_init_local_worker,
                                   initargs=(self.threads, self.env, ctx.Value("i", 0)))

    def imap(self, fn, items, *, retries=2):
        if self.jobs == 1:
            for index, item in enumerate(items):
                try:
                    yield index, fn(item), None
                except Exception as exc:  # reported to the caller, which decides
                    yield index, None, TaskFailure(index, exc)
            return
        yield from self._imap_pool(fn, list(items), retries)

    def _imap_pool(self, fn, items, retries):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pending = list(range(len(items)))[::-1]  # stack: pop() takes the next index in order
        attempts = [0] * len(items)
        window = 2 * self.jobs
        in_flight: dict[Any, int] = {}
        while pending or in_flight:
            if self._pool is None:
                self._pool = self._new_pool()
            while pending and len(in_flight) < window:
                i = pending.pop()
                attempts[i] += 1
                in_flight[self._pool.submit(fn, items[i])] = i
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in finished:
                i = in_flight.pop(fut)
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken = True
                    # A worker died: every task in flight is lost with it; run them again.
                    if attempts[i] > retries:
                        yield i, None, TaskFailure(i, exc, attempts[i], worker_lost=True)
                    else:
                        pending.append(i)
                elif exc is not None:
                    yield i, None, TaskFailure(i, exc, attempts[i])
                else:
                    yield i, fut.result(), None
            if broken:
                for fut, i in in_flight.items():
                    fut.cancel()
                    if attempts[i] > retries:
                        yield i, None, TaskFailure(i, BrokenProcessPool("worker died"), attempts[i], worker_lost=True)
                    else:
                        pending.append(i)
                in_flight.clear()
                log.warning("a worker process died; restarting the pool and running its tasks again")
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
                pending.sort(reverse=True)

    def run_on_workers(self, fn):
        if self.jobs == 1:
            return {"local": _call_returning_error(fn)}
        if self._pool is None:
            self._pool = self._new_pool()
        # Processes are alike (same machine, environment and files): one answers for all.
        return {"local process": self._pool.submit(_call_returning_error, fn).result()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _init_local_worker(threads: int, env: Mapping[str, str], counter) -> None:
    os.environ.update(env)
    with counter.get_lock():
        os.environ[ENV_WORKER_INDEX] = str(counter.value)
        counter.value += 1
    from facefeat.runtime import configure_runtime

    configure_runtime(threads=threads)


def _call_returning_error(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc


# -- Dask ----------------------------------------------------------------------------------------------
class DaskExecutor(Executor):
    """Tasks on a Dask cluster (``distributed.Client``); see the constructors below."""

    def __init__(self, client, *, cluster=None, name: str, threads: int | None = None) -> None:
        _quiet_dask_logs()
        self.client = client
        self.cluster = cluster
        self.name = name
        self._threads = threads

    @property
    def workers(self) -> int:  # type: ignore[override]
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return max(1, sum(w.get("nthreads", 1) for w in info.values()))

    @property
    def threads(self) -> int:  # type: ignore[override]
        return self._threads or 1

    # constructors
    @classmethod
    def local_cluster(cls, n: int, *, threads: int = 1, env: Mapping[str, str] | None = None) -> "DaskExecutor":
        """Start a ``LocalCluster`` of ``n`` worker processes, one Dask thread each."""
        import dask
        from distributed import Client, LocalCluster

        from facefeat.runtime import worker_environment

        _quiet_dask_logs()
        environ = {**worker_environment(threads), **(env or {})}
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                              "distributed.scheduler.allowed-failures": 2}):
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                       silence_logs=logging.ERROR)
            except Exception as exc:
                raise ExecutorError(f"cannot start a local Dask cluster of {n} workers: {exc}") from exc
            client = Client(cluster)
        return cls(client, cluster=cluster, name=f"local:{n}", threads=threads)

    @classmethod
    def connect(cls, address: str, *, threads: int | None = None, timeout: float = CONNECT_TIMEOUT) -> "DaskExecutor":
        """Connect to a running scheduler at ``address`` (``tcp://HOST:PORT``)."""
        from distributed import Client

        scheme, _, rest = address.partition("://")
        host, _, port = rest.rpartition(":")
        if scheme not in ("tcp", "tls", "ucx", "ws", "wss") or not host or not port.isdigit():
            raise ConfigError(f"scheduler address {address!r}: write tcp://HOST:PORT, e.g. tcp://10.0.0.5:8786")
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ExecutorError(
                f"cannot reach the Dask scheduler at {address} within {timeout:.0f} s ({exc}); start one with "
                f"'dask scheduler' on that host and workers with 'dask worker {address}', or check host, port "
                f"and firewall") from None
        return cls(client, name=address, threads=threads)

    @classmethod
    def jobqueue(cls, kind: str, section: Mapping[str, Any], *, threads: int | None = None,
                 env: Mapping[str, str] | None = None) -> "DaskExecutor":
        """Start workers as batch jobs (dask-jobqueue) from a ``cluster`` config section."""
        cfg = resolve_cluster_config(section)
        submit = JOBQUEUE_KINDS[kind]
        if shutil.which(submit) is None:
            raise ConfigError(f"cluster kind {kind!r} submits jobs with {submit!r}, which is not on PATH here; "
                              f"run facefeat on the cluster's login node, or use --scheduler / --cluster local:N")
        cluster = build_jobqueue_cluster(kind, cfg, threads=threads, env=env)
        from distributed import Client

        cluster.scale(jobs=cfg["jobs"])
        client = Client(cluster)
        ex = cls(client, cluster=cluster, name=f"{kind} ({cfg['jobs']} job(s))", threads=threads or cfg["cores"])
        ex.wait_for_workers(1, timeout=cfg["wait_timeout"])
        return ex

    def wait_for_workers(self, n: int = 1, *, timeout: float = 60) -> None:
        """Block until ``n`` workers joined, or raise :class:`ExecutorError` after ``timeout`` s."""
        try:
            self.client.wait_for_workers(n, timeout=timeout)
        except (TimeoutError, OSError) as exc:
            raise ExecutorError(f"{self.name}: no worker joined within {timeout:.0f} s ({exc}); check the job queue "
                                f"and the job logs (cluster.log_directory)") from None

    # work
    def imap(self, fn, items, *, retries=2):
        from distributed import as_completed

        items = list(items)
        if not self.client.scheduler_info(n_workers=-1)["workers"]:
            self.wait_for_workers(1, timeout=60)
        window = 2 * self.workers + 2
        state = {"n": 0}
        index_of: dict[str, int] = {}
        # Threads per task: as configured, or (a cluster we only connected to) each host's cores
        # shared between the Dask worker threads on that host.
        threads = self._threads or self._threads_by_host()

        def submit_next(ac=None):
            i = state["n"]
            state["n"] += 1
            # The scheduler reruns a task whose worker died (distributed.scheduler.allowed-failures
            # times); an exception inside fn is not retried.
            fut = self.client.submit(_dask_task, fn, items[i], threads, pure=False, retries=0,
                                     key=f"facefeat-{fn.__name__}-{i}-{os.urandom(4).hex()}")
            index_of[fut.key] = i
            if ac is not None:
                ac.add(fut)
            return fut

        first = [submit_next() for _ in range(min(window, len(items)))]
        ac = as_completed(first)
        for fut in ac:
            i = index_of.pop(fut.key)
            if fut.status == "finished":
                yield i, fut.result(), None
            else:
                exc = fut.exception()
                lost = type(exc).__name__ == "KilledWorker"
                yield i, None, TaskFailure(i, exc, retries + 1 if lost else 1, worker_lost=lost)
            fut.release()
            if state["n"] < len(items):
                submit_next(ac)

    def _threads_by_host(self) -> dict[str, int]:
        """Host -> Dask worker threads on it (a task then takes its share of the host's cores)."""
        by_host: dict[str, int] = {}
        for w in self.client.scheduler_info(n_workers=-1)["workers"].values():
            host = w.get("host", "")
            by_host[host] = by_host.get(host, 0) + w.get("nthreads", 1)
        return by_host

    def run_on_workers(self, fn):
        if not self.client.scheduler_info(n_workers=-1)["workers"]:
            self.wait_for_workers(1, timeout=60)
        return dict(self.client.run(_call_returning_error, fn, on_error="return"))

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _quiet_dask_logs() -> None:
    """Dask logs every worker start and stop at INFO; facefeat's default verbosity is INFO."""
    for name in ("distributed", "dask_jobqueue"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING and not log.isEnabledFor(logging.DEBUG):
            logger.setLevel(logging.WARNING)


def _dask_task(fn: Callable[[Any], Any], item: Any, threads: int | Mapping[str, int]) -> Any:
    """Run ``fn(item)`` on a Dask worker with facefeat's runtime settings in force.

    ``threads``: intra-op threads, or host -> Dask threads on that host (then this task's share
    of the host's available cores).
    """
    from facefeat.runtime import configure_runtime, default_threads

    if not isinstance(threads, int):
        w = _dask_worker()
        threads = default_threads(workers=threads.get(w.address.split("://")[-1].rsplit(":", 1)[0], 1)
                                  if w is not None else 1)
    configure_runtime(threads=threads, quiet=True)
    return fn(item)


def build_jobqueue_cluster(kind: str, cfg: Mapping[str, Any], *, threads: int | None = None,
                           env: Mapping[str, str] | None = None):
    """The dask-jobqueue cluster object for a validated ``cluster`` section (no job submitted).

    One Dask worker process per job with one Dask thread; the job's cores are the worker's
    intra-op threads. ``gpus`` adds the scheduler's GPU request (Slurm ``--gres=gpu:N``, PBS
    ``ngpus``, LSF ``-gpu num=N``, SGE ``-l gpu=N``): sites differ, ``directives`` can replace it.
    """
    import dask_jobqueue

    from facefeat.runtime import worker_environment

    environ = {**worker_environment(threads or cfg["cores"]), **(env or {})}
    prologue = [f"export {k}={v}" for k, v in environ.items()] + list(cfg["prologue"])
    directives = list(cfg["directives"])
    cores, gpus, mem = cfg["cores"], cfg["gpus"], cfg["memory"].replace(" ", "")
    # The job asks for `cores` CPUs; its Dask worker runs one task at a time (cores=1 below is
    # Dask's thread count) and gives the CPUs to torch as intra-op threads.
    per_kind: dict[str, Any] = {
        "slurm": dict(job_cpu=cores, account=cfg["account"]),
        "pbs": dict(resource_spec=f"select=1:ncpus={cores}:mem={mem}" + (f":ngpus={gpus}" if gpus else ""),
                    account=cfg["account"]),
        "sge": dict(project=cfg["account"], resource_spec=f"h_vmem={mem}"),
        "lsf": dict(ncpus=cores, project=cfg["account"]),
    }[kind]
    if kind == "sge" and cores > 1:
        directives.append(f"-pe smp {cores}")
    if gpus:
        gpu = {"slurm": f"--gres=gpu:{gpus}", "lsf": f'-gpu "num={gpus}"', "sge": f"-l gpu={gpus}"}.get(kind)
        if gpu:  # PBS asks for GPUs in its select statement above
            directives.append(gpu)
    cls = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster, "sge": dask_jobqueue.SGECluster,
           "lsf": dask_jobqueue.LSFCluster}[kind]
    kwargs: dict[str, Any] = dict(cores=1, processes=1, memory=cfg["memory"], walltime=cfg["walltime"],
                                  queue=cfg["queue"], job_script_prologue=prologue, job_extra_directives=directives,
                                  local_directory=cfg["local_directory"], log_directory=cfg["log_directory"],
                                  interface=cfg["interface"], python=cfg["python"], job_name="facefeat", **per_kind)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise ExecutorError(f"cannot set up the {kind} cluster from the 'cluster' section: {exc}") from exc


#: Set in each local worker process: its index (0, 1, ...), for one GPU per worker.
ENV_WORKER_INDEX = "FACEFEAT_WORKER_INDEX"


def _dask_worker():
    if "distributed" not in sys.modules:  # never imported: not a Dask worker
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def worker_label() -> str:
    """Which worker this is, for messages: the Dask worker address and name, or host and pid."""
    w = _dask_worker()
    if w is not None:
        return f"{w.address} (name {w.name})"
    return f"{socket.gethostname()} pid {os.getpid()}"


def worker_index() -> int | None:
    """This worker's index among its executor's workers, if it has one (local processes, LocalCluster)."""
    index = os.environ.get(ENV_WORKER_INDEX, "")
    if index.isdigit():
        return int(index)
    w = _dask_worker()
    return int(w.name) if w is not None and str(w.name).isdigit() else None
