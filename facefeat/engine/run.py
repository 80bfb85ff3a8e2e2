"""Runs: extractors over a cohort's photos, written in parts, resumable, merged atomically.

How a run survives faults: work is done in batches; each batch's rows are written per
extractor as a part file (``<out>/.parts/<extractor>/part-<hash>.parquet``, atomically).
A re-run of the same command reads the finished table and the parts, skips every
(image_id, subject_id) already done with the same settings (a fingerprint of the extractor's
version and config and the preprocessing settings), processes the rest, and merges everything
into ``<out>/<extractor>.parquet`` in input order. The result equals an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from facefeat._version import __version__
from facefeat.engine.config import resolve_run_config
from facefeat.engine.extractor import Extractor, FaceBatch
from facefeat.engine.preprocess import Preprocessed, Preprocessor
from facefeat.devices import raise_if_device_failure
from facefeat.engine.registry import Registry, load_registry
from facefeat.engine.executors import ExecutorError
from facefeat.errors import ConfigError, DeviceError, FacefeatError, PluginError
from facefeat.io.atomic import atomic_output, write_bytes_atomic
from facefeat.io.hashing import sha256_bytes, sha256_file
from facefeat.io.jsonsafe import dumps_json
from facefeat.io.images import STATUSES, ImageRecord
from facefeat.io.manifest import Inputs, load_inputs
from facefeat.io.features import combine_status
from facefeat.io.tables import (ENGINE_DIAG_FIELDS, conform_table, read_provenance, read_row_group, read_schema,
                                read_table, redact_names, redact_paths, row_groups, table_schema, table_writer,
                                write_parquet_atomic)

log = logging.getLogger(__name__)

PARTS_DIR = ".parts"
RUN_JSON = "run.json"
FINGERPRINT_KEY = b"facefeat.fingerprint"
DEVICE_FAILURE_KEPT = ("the batches finished before it are kept in OUT/.parts; re-run the same command to resume "
                       "once the device works again (or with another --device)")

#: Test hooks (read from the environment): the driver stops making progress after N chunks,
#: so a test can kill it mid-run without racing it; the first worker to finish a part kills
#: itself (SIGKILL) once, the file named by the variable recording that it did.
ENV_TEST_HANG_AFTER_CHUNKS = "FACEFEAT_TEST_HANG_AFTER_CHUNKS"
ENV_TEST_KILL_WORKER = "FACEFEAT_TEST_KILL_WORKER"


@dataclass
class RunSummary:
    """What a run did.

    Attributes
    ----------
    status_counts : dict
        Images by status across the extractors (ok where every extractor is ok, else the first
        failing extractor's status).
    extractor_status_counts : dict
        Extractor name -> its table's rows by status.
    skipped : list of str
        Files in the input folder that are not images (by suffix), not processed.
    """

    out: Path
    tables: dict[str, Path]
    status_counts: dict[str, int]
    n_images: int
    n_processed: int
    n_reused: int
    duplicates: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    extractor_status_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    executor: str = "local"

    def line(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in self.status_counts.items() if n)
        per = {name: ", ".join(f"{s} {n}" for s, n in c.items() if n) for name, c in self.extractor_status_counts.items()}
        detail = f" ({'; '.join(f'{k}: {v}' for k, v in per.items())})" if len(set(per.values())) > 1 else ""
        dup = f"; {len(self.duplicates)} exact duplicate file(s) skipped (listed in run.json)" if self.duplicates else ""
        skip = f"; {len(self.skipped)} non-image file(s) skipped (listed in run.json)" if self.skipped else ""
        return (f"{self.n_images} images: {counts or 'none'}{detail}; processed {self.n_processed} now, "
                f"reused {self.n_reused} from earlier parts{dup}{skip}; {self.seconds:.1f} s")


@dataclass
class Plan:
    """Everything validated before work starts."""

    config: dict[str, Any]
    extractors: list[Extractor]
    inputs: Inputs
    out: Path
    preprocess: dict[str, Any]

    def preprocessor(self) -> Preprocessor:
        return Preprocessor(**self.preprocess)


def plan_run(config: dict[str, Any], *, registry: Registry | None = None) -> Plan:
    """Validate the config, the extractors and the inputs; compute nothing.

    This is what ``facefeat extract --validate`` runs.

    Raises
    ------
    ConfigError, InputError, PluginError, ModelError
    """
    config = resolve_run_config(config)
    registry = registry or load_registry()
    names = config["extractors"]
    run_keys = set(config) - set(names)
    from facefeat.engine.config import RUN_CONFIG_SCHEMA

    stray = sorted(k for k in run_keys if k not in RUN_CONFIG_SCHEMA["properties"])
    if stray:
        raise ConfigError(
            f"config section(s) {', '.join(map(repr, stray))} name no selected extractor; selected: {', '.join(names)}; "
            f"registered: {', '.join(registry.names())}"
        )
    extractors = [registry.create(name, config.get(name, {})) for name in names]
    for ext in extractors:
        config[ext.name] = ext.config
        for label, path in ext.model_files().items():
            if not Path(path).is_file():
                from facefeat.errors import ModelError

                raise ModelError(f"extractor {ext.name!r}: model file {label} = {path} does not exist")
    requires = [ext.requires() for ext in extractors]
    if config["face"]["detector"] == "none":
        need = [ext.name for ext, r in zip(extractors, requires) if r.landmarks]
        if need:
            raise ConfigError(f"extractor(s) {', '.join(need)} need facial landmarks, which face.detector 'none' "
                              f"(already aligned photos) does not give; choose face.detector hog or cnn, or drop them")
    sizes = sorted({s for r in requires for s in r.aligned_sizes} | set(config["align"]["sizes"]))
    out = Path(config["out"])
    cache_dir = (config["cache_dir"] or str(out / ".cache" / "aligned")) if config["align"]["cache"] else None
    inputs = load_inputs(config["input"], subject_from=config["subject_from"], recursive=config["recursive"])
    preprocess = dict(face=config["face"], align=config["align"], aligned_sizes=sizes,
                      keep_original=any(r.original for r in requires), cache_dir=cache_dir)
    return Plan(config=config, extractors=extractors, inputs=inputs, out=out, preprocess=preprocess)


def run_extraction(config: dict[str, Any], *, registry: Registry | None = None, progress: bool = True,
                   executor: str | None = None, overwrite: bool = False) -> RunSummary:
    """Run the configured extractors over the inputs and write one Parquet table per extractor.

    Work is split into chunks of ``batch_size`` images; each chunk's rows are written by the
    worker that computed them as one part file per extractor in ``<out>/.parts/`` (the run
    folder must be on storage every worker can write). The driver then merges the parts into
    ``<out>/<extractor>.parquet`` in input order. The tables do not depend on the executor.

    Parameters
    ----------
    config : dict
        Run config (see :data:`facefeat.engine.config.RUN_CONFIG_SCHEMA`).
    registry : Registry, optional
        Extractor registry; built from the installed plugins by default. Workers other than
        this process rebuild it from *their* installed plugins (checked before work starts).
    progress : bool
        Show a progress bar (images/s) on stderr.
    executor : str, optional
        Where chunks run (:func:`facefeat.engine.executors.make_executor`): ``None``/``"local"``
        (``jobs`` local processes), ``"local:N"``, ``"tcp://HOST:PORT"``, ``"slurm"``, ...; the
        config's ``executor`` key when not given.
    overwrite : bool
        Replace a run of other inputs or settings found in ``out`` (its tables, parts and
        ``run.json`` are deleted) instead of refusing.

    Returns
    -------
    RunSummary

    Raises
    ------
    ConfigError, InputError, PluginError, ModelError
        Before any work.
    RunFolderError
        ``out`` holds a run of other inputs or settings (and ``overwrite`` is False).
    ExecutorError
        The workers cannot run the extractors or write the run folder (before any work), or
        chunks failed after their retries (finished parts are kept; the message names the
        chunks' images).
    """
    t0 = time.perf_counter()
    plan = plan_run(config, registry=registry)
    spec = executor if executor is not None else plan.config.get("executor")
    out, parts_root = plan.out, plan.out / PARTS_DIR
    settings = plan.preprocessor().settings()
    fingerprints = {ext.name: _fingerprint(ext, settings) for ext in plan.extractors}
    check_run_folder(plan, settings, overwrite=overwrite)
    done = {ext.name: _done_keys(out, ext.name, fingerprints[ext.name]) for ext in plan.extractors}
    records = plan.inputs.records
    chunks = _chunks(records, done, plan.config["batch_size"])
    del done  # the chunks say what each worker must compute
    n_todo = sum(len(c) for c in chunks)
    n_reused = len(records) - n_todo
    _write_run_json(plan, state="running", executor=spec or "local")
    log.info("%d images, %d already done, %d chunks to process", len(records), n_reused, len(chunks))

    executor_name = "local"
    if chunks:
        job = WorkerJob(config=plan.config, preprocess=plan.preprocess, fingerprints=fingerprints,
                        parts_root=str(parts_root.absolute()), facefeat_version=__version__)
        from facefeat.engine.executors import make_executor

        with make_executor(spec, jobs=plan.config["jobs"], cluster=plan.config.get("cluster")) as ex:
            executor_name = ex.name
            _check_workers(ex, job, inline=isinstance(spec, (type(None), str)) and (spec or "local") == "local"
                           and plan.config["jobs"] == 1, extractors=plan.extractors)
            _run_chunks(ex, job, chunks, progress=progress)

    tables, per_ext, statuses = {}, {}, []
    for ext in plan.extractors:
        tables[ext.name], per_ext[ext.name], ext_status = _merge(plan, ext, settings, fingerprints[ext.name])
        statuses.append(ext_status)
    combined = Counter(combine_status([e.name for e in plan.extractors], statuses))
    summary = RunSummary(out=out, tables=tables, status_counts={s: combined.get(s, 0) for s in STATUSES},
                         n_images=len(records), n_processed=n_todo, n_reused=n_reused,
                         duplicates=plan.inputs.duplicates, seconds=time.perf_counter() - t0,
                         extractor_status_counts={n: {s: c.get(s, 0) for s in STATUSES} for n, c in per_ext.items()},
                         skipped=plan.inputs.skipped, executor=executor_name)
    _write_run_json(plan, state="complete", executor=executor_name, summary=summary)
    # The CLI prints the summary; the log line is for library callers who turn on debug logging.
    log.debug("%s", summary.line())
    return summary


def _chunks(records: Sequence[ImageRecord], done: dict[str, set], batch: int) -> list[list[tuple[ImageRecord, tuple]]]:
    """Chunks of ``batch`` records still to do, each record with the extractors it needs."""
    todo = []
    for r in records:
        key = _key(*r.key)
        need = tuple(name for name, keys in done.items() if key not in keys)
        if need:
            todo.append((r, need))
    return [todo[i:i + batch] for i in range(0, len(todo), batch)]


def _run_chunks(ex, job: "WorkerJob", chunks: list, *, progress: bool) -> None:
    hang_after = int(os.environ.get(ENV_TEST_HANG_AFTER_CHUNKS, "0") or 0)
    bar = _progress(sum(len(c) for c in chunks), progress)
    failed: list[tuple[list, Any]] = []
    n_done = 0
    try:
        for index, n, failure in ex.imap(run_chunk, [(job, c) for c in chunks]):
            if failure is not None:
                if isinstance(failure.error, DeviceError):
                    # a lost GPU fails every later chunk too: stop now; the finished parts are kept
                    raise failure.error
                log.error("chunk %d failed: %s", index, failure.describe())
                failed.append((chunks[index], failure))
                continue
            bar.update(n)
            n_done += 1
            if hang_after and n_done >= hang_after:
                _hang_for_test(n_done)
    finally:
        bar.close()
    if failed:
        lines = []
        for chunk, failure in failed[:5]:
            paths = [str(r.path) for r, _ in chunk]
            lines.append(f"{len(paths)} image(s) {', '.join(paths[:4])}{' ...' if len(paths) > 4 else ''}: "
                         f"{failure.describe()}")
        raise ExecutorError(
            f"{len(failed)} of {len(chunks)} chunk(s) failed on {ex.name}:\n  " + "\n  ".join(lines)
            + ("\n  ..." if len(failed) > 5 else "")
            + f"\nthe other chunks' parts are kept in {job.parts_root}; fix the cause and re-run the same command "
              "to compute only what is missing")


def _hang_for_test(n_done: int) -> None:
    """Test hook: stop making progress after N chunks so a test can kill the driver mid-run."""
    log.warning("%s: blocking after %d chunk(s) (test hook)", ENV_TEST_HANG_AFTER_CHUNKS, n_done)
    while True:
        time.sleep(3600)


# -- the run folder --------------------------------------------------------------------------------
class RunFolderError(ConfigError):
    """The output folder holds a run of other inputs or settings."""


def _same_preprocessing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Preprocessing keys whose values differ (sizes aligned for other extractors do not count)."""
    keys = ("face", "align", "models_sha256")
    return [k for k in keys if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


def check_run_folder(plan: Plan, settings: dict[str, Any], *, overwrite: bool = False) -> None:
    """Refuse an ``out`` folder holding a run of other inputs or preprocessing (or clear it).

    A run folder holds tables of one input set and one preprocessing. Tables of extractors that
    this run recomputes anyway may have had another config; tables this run keeps must agree.

    Raises
    ------
    RunFolderError
    """
    out = plan.out
    if not out.exists():
        return
    if not out.is_dir():
        raise RunFolderError(f"--out {out} is a file; give a folder")
    previous = _previous_run(out)
    if not previous:
        return
    selected = {e.name for e in plan.extractors}
    problems = []
    for source, info in previous:
        manifest = info.get("manifest_sha256")
        if manifest and manifest != plan.inputs.manifest_sha256:
            problems.append(f"{source} was made from other inputs: {info.get('n_images')} images from "
                            f"{info.get('source')} (manifest sha256 {manifest[:12]}...), this run has "
                            f"{len(plan.inputs.records)} images from {plan.inputs.source} "
                            f"({plan.inputs.manifest_sha256[:12]}...)")
        elif info.get("extractor") and info["extractor"] not in selected and info.get("preprocessing"):
            differ = _same_preprocessing(info["preprocessing"], settings)
            if differ:
                problems.append(f"{source} (extractor {info['extractor']}, not selected now) was made with other "
                                f"preprocessing ({', '.join(differ)} differ); add {info['extractor']} to --extractors "
                                f"to recompute it")
    if not problems:
        return
    if not overwrite:
        raise RunFolderError(
            f"{out} holds a run of other inputs or settings; a run folder holds one input set and one config:\n  "
            + "\n  ".join(problems[:6]) + ("\n  ..." if len(problems) > 6 else "")
            + "\nuse another --out, or --overwrite to replace that run (its tables, parts and run.json are deleted)")
    _clear_run(out)


def _previous_run(out: Path) -> list[tuple[str, dict[str, Any]]]:
    """What ``out`` holds: (file, {manifest_sha256, n_images, source, extractor, preprocessing})."""
    found = []
    meta = out / RUN_JSON
    if meta.is_file():
        try:
            data = json.loads(meta.read_text())
            inp = data.get("input")
            if isinstance(inp, str):  # run.json of facefeat 0.1 named only the source; its tables say the rest
                inp = {"source": inp}
            found.append((str(meta), {"manifest_sha256": (inp or {}).get("manifest_sha256"),
                                      "n_images": data.get("n_images"), "source": (inp or {}).get("source")}))
        except (OSError, ValueError, AttributeError) as exc:
            raise RunFolderError(f"{meta}: unreadable ({exc}); delete it, or use --overwrite") from None
    for path in sorted(out.glob("*.parquet")):
        try:
            prov = read_provenance(path)
        except Exception:  # not a table of ours: left alone, never deleted
            continue
        if prov.get("input"):
            found.append((str(path), {"manifest_sha256": prov["input"].get("manifest_sha256"),
                                      "n_images": prov["input"].get("n_images"),
                                      "source": prov["input"].get("source"),
                                      "extractor": prov.get("extractor", {}).get("name"),
                                      "preprocessing": prov.get("preprocessing")}))
    return found


def _clear_run(out: Path) -> None:
    """Delete a run's own files (tables with facefeat provenance, parts, run.json); nothing else."""
    import shutil

    removed = []
    for path in sorted(out.glob("*.parquet")):
        try:
            if read_provenance(path).get("input"):
                path.unlink()
                removed.append(path.name)
        except Exception:
            continue
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    (out / RUN_JSON).unlink(missing_ok=True)
    log.warning("--overwrite: removed the previous run in %s (%s, .parts, %s)", out, ", ".join(removed) or "no tables",
                RUN_JSON)


def _write_run_json(plan: Plan, *, state: str, executor: str, summary: RunSummary | None = None) -> Path:
    """``<out>/run.json``: what the folder holds (written atomically, see docs/tables.md)."""
    data: dict[str, Any] = {
        "facefeat_version": __version__, "state": state, "executor": executor,
        "input": {"source": plan.inputs.source, "manifest_sha256": plan.inputs.manifest_sha256},
        "extractors": [e.name for e in plan.extractors], "n_images": len(plan.inputs.records),
        "duplicates": plan.inputs.duplicates, "skipped": plan.inputs.skipped,
    }
    if summary is not None:
        data.update(status_counts=summary.status_counts, extractor_status_counts=summary.extractor_status_counts,
                    tables={k: str(v) for k, v in summary.tables.items()}, n_processed=summary.n_processed,
                    n_reused=summary.n_reused, seconds=round(summary.seconds, 3))
    if not plan.config.get("paths", True):  # --no-paths: no input file named here either
        data = redact_names(data, _input_names(plan))
    with atomic_output(plan.out / RUN_JSON, fsync=True) as tmp:
        tmp.write_text(dumps_json(data, indent=2))
    return plan.out / RUN_JSON


def _input_names(plan: Plan) -> list[str]:
    """Every input file's path and name (what ``--no-paths`` keeps out of a run's files)."""
    names = [n for r in plan.inputs.records for n in (str(r.path), r.path.name)]
    names += [n for d in plan.inputs.duplicates for k in ("path", "duplicate_of") if d.get(k)
              for n in (str(d[k]), Path(d[k]).name)]
    return names + [n for s in plan.inputs.skipped for n in (str(s), Path(s).name)]


# -- workers ---------------------------------------------------------------------------------
@dataclass
class WorkerJob:
    """What a worker needs to compute chunks of a run (pickled with every task: keep it small)."""

    config: dict[str, Any]
    preprocess: dict[str, Any]
    fingerprints: dict[str, str]
    parts_root: str
    facefeat_version: str

    @property
    def key(self) -> str:
        return sha256_bytes(dumps_json([self.config, self.preprocess, self.parts_root], sort_keys=True).encode())


class _ChunkWorker:
    """Preprocess a chunk of records once and run every extractor that still needs them."""

    def __init__(self, extractors: Sequence[Extractor], preprocessor: Preprocessor, device: str,
                 parts_root: Path, fingerprints: dict[str, str]) -> None:
        self.extractors = list(extractors)
        self.preprocessor = preprocessor
        self.device = device
        self.parts_root = parts_root
        self.fingerprints = fingerprints
        self._loaded: set[str] = set()

    def run(self, chunk: list[tuple[ImageRecord, tuple]]) -> int:
        pre = [(self.preprocessor.process(r), need) for r, need in chunk]
        for k, ext in enumerate(self.extractors):
            need = [p for p, names in pre if ext.name in names]
            if not need:
                continue
            if ext.name not in self._loaded and any(p.status == "ok" for p in need):
                ext.load(self.device)
                self._loaded.add(ext.name)
            table = extract_rows(ext, need).replace_schema_metadata({FINGERPRINT_KEY: self.fingerprints[ext.name].encode()})
            # Named by its keys: a chunk run again (its worker died) replaces its own part.
            name = "part-" + sha256_bytes(json.dumps([p.record.key for p in need]).encode())[:20] + ".parquet"
            write_parquet_atomic(table, self.parts_root / ext.name / name)
            if k == 0:
                _kill_for_test()
        return len(chunk)


def _kill_for_test() -> None:
    """Test hook: the first worker to get here (across processes) kills itself, mid-chunk."""
    marker = os.environ.get(ENV_TEST_KILL_WORKER)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


_WORKERS: dict[str, _ChunkWorker] = {}


def _worker_for(job: WorkerJob) -> _ChunkWorker:
    """This process's worker for ``job`` (built once per process; one job kept at a time)."""
    worker = _WORKERS.get(job.key)
    if worker is not None:
        return worker
    from facefeat.engine.executors import worker_label

    if job.facefeat_version != __version__:
        raise PluginError(f"worker {worker_label()} runs facefeat {__version__}, the driver {job.facefeat_version}; "
                          "install the same version on every worker")
    registry = load_registry()
    try:
        extractors = [registry.create(n, job.config[n]) for n in job.config["extractors"]]
    except FacefeatError as exc:
        raise PluginError(f"worker {worker_label()} cannot set up the extractors: {str(exc).rstrip('.')}; install the same "
                          "plugins on every worker (see 'facefeat plugins' there)") from None
    settings = Preprocessor(**job.preprocess).settings()
    fingerprints = {e.name: _fingerprint(e, settings) for e in extractors}
    differ = sorted(n for n in fingerprints if fingerprints[n] != job.fingerprints.get(n))
    if differ:
        versions = ", ".join(f"{e.name} {e.version}" for e in extractors if e.name in differ)
        raise PluginError(f"worker {worker_label()} computes other settings for {', '.join(differ)} than the driver "
                          f"(worker has {versions}); install the same plugin versions on every worker")
    device = _worker_device(job.config["device"])
    _WORKERS.clear()
    _WORKERS[job.key] = worker = _ChunkWorker(extractors, Preprocessor(**job.preprocess, align_workers=1), device,
                                              Path(job.parts_root), fingerprints)
    return worker


def _worker_device(device: str) -> str:
    """``cuda`` on a worker with several GPUs: one GPU per worker, by the worker's index."""
    if device != "cuda":
        return device
    from facefeat.engine.executors import worker_index

    index = worker_index()
    if index is None:
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else device


def run_chunk(task: tuple[WorkerJob, list]) -> int:
    """Task: compute one chunk and write its parts (runs on a worker); returns its image count."""
    job, chunk = task
    return _worker_for(job).run(chunk)


def check_worker(job: WorkerJob) -> dict[str, Any]:
    """Check, on a worker, that it can compute ``job`` and write its parts (before work starts)."""
    from facefeat.engine.executors import worker_label

    _worker_for(job)
    parts = Path(job.parts_root)
    probe = parts / f".probe-{worker_label().replace('/', '_').replace(':', '_')}-{os.getpid()}"
    try:
        parts.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(probe, b"facefeat write check")
        probe.unlink()
    except OSError as exc:
        raise ExecutorError(f"worker {worker_label()} cannot write the run folder {parts} ({exc}); the run "
                                    "folder must be on storage every worker can write (shared file system)") from None
    return {"worker": worker_label(), "pid": os.getpid()}


def _check_workers(ex, job: WorkerJob, *, inline: bool, extractors: Sequence[Extractor]) -> None:
    """Before any work: every worker builds the extractors and writes the run folder."""
    from functools import partial

    if inline:  # chunks run in this process, with the extractors (and registry) given
        _WORKERS.clear()
        preprocess = Preprocessor(**job.preprocess)
        _WORKERS[job.key] = _ChunkWorker(extractors, preprocess, job.config["device"], Path(job.parts_root),
                                         job.fingerprints)
    answers = ex.run_on_workers(partial(check_worker, job))
    bad = {w: a for w, a in answers.items() if isinstance(a, BaseException)}
    if bad:
        lines = [f"{w}: {a}" for w, a in list(bad.items())[:5]]
        raise ExecutorError(f"{len(bad)} of {len(answers)} worker(s) of {ex.name} cannot run this extraction "
                            f"(nothing was computed):\n  " + "\n  ".join(lines))


# -- rows --------------------------------------------------------------------------------
def extract_rows(ext: Extractor, items: Sequence[Preprocessed]) -> pa.Table:
    """Run one extractor over preprocessed records and build its table rows (all records).

    Faces that preprocessed fine go to ``ext.extract`` in one batch; if the batch fails, each
    face is retried alone so one bad face cannot fail its neighbours. Rows that end in a
    failure keep their keys, get status ``error`` and the message, and null features.
    """
    schema = ext.output_schema()
    ok = [i for i, p in enumerate(items) if p.status == "ok"]
    status = [p.status for p in items]
    errors = [p.error for p in items]
    results: dict[int, pa.RecordBatch] = {}  # item index -> one-row batch, or full batch below
    full: pa.RecordBatch | None = None
    if ok:
        try:
            full = _checked_extract(ext, [items[i] for i in ok], schema)
        except PluginError:
            raise
        except Exception as exc:
            # a lost GPU fails every later batch too: stop the run, keeping the finished parts
            raise_if_device_failure(exc, context=f"extractor {ext.name!r}", kept=DEVICE_FAILURE_KEPT)
            log.warning("extractor %s failed on a batch of %d (%s); retrying one by one", ext.name, len(ok), exc)
            for i in ok:
                try:
                    results[i] = _checked_extract(ext, [items[i]], schema)
                except PluginError:
                    raise
                except Exception as one_exc:
                    raise_if_device_failure(one_exc, context=f"extractor {ext.name!r}", kept=DEVICE_FAILURE_KEPT)
                    status[i], errors[i] = "error", f"extractor {ext.name} failed: {type(one_exc).__name__}: {one_exc}"
    # Row i of the output takes row take_idx[i] of the combined extractor output (null if none).
    if full is not None:
        combined = pa.Table.from_batches([full])
        pos = {i: k for k, i in enumerate(ok)}
    else:
        batches = [results[i] for i in ok if i in results]
        combined = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
        pos = {i: k for k, i in enumerate(i for i in ok if i in results)}
    take_idx = pa.array([pos.get(i) for i in range(len(items))], type=pa.int64())
    feature_cols = [combined.column(f.name).take(take_idx) for f in schema]
    key_cols = [
        pa.array([p.record.image_id for p in items], pa.string()),
        pa.array([p.record.subject_id for p in items], pa.string()),
        pa.array([str(p.record.path) for p in items], pa.string()),
        pa.array(status, pa.string()),
        pa.array([e or None for e in errors], pa.string()),
    ]
    diag_cols = [pa.array([p.diag.get(f.name) for p in items], f.type) for f in ENGINE_DIAG_FIELDS]
    return pa.Table.from_arrays(key_cols + diag_cols + feature_cols, schema=table_schema(schema))


def _checked_extract(ext: Extractor, items: Sequence[Preprocessed], schema: pa.Schema) -> pa.RecordBatch:
    batch = ext.extract(FaceBatch([p.face for p in items]))
    if isinstance(batch, pa.Table):
        batch = batch.combine_chunks().to_batches()[0] if batch.num_rows else pa.RecordBatch.from_pylist([], schema=schema)
    if batch.num_rows != len(items):
        raise PluginError(f"extractor {ext.name!r} returned {batch.num_rows} rows for a batch of {len(items)}; "
                          "extract() must return one row per face, in order")
    if batch.schema.names != schema.names or batch.schema.types != schema.types:
        raise PluginError(f"extractor {ext.name!r} returned columns {batch.schema} that differ from its "
                          f"output_schema() {schema}")
    return batch


# -- resume and merge --------------------------------------------------------------------------
def _fingerprint(ext: Extractor, settings: dict[str, Any]) -> str:
    """What an extractor's rows depend on; parts with another fingerprint are recomputed."""
    payload = {"name": ext.name, "version": ext.version, "config": ext.config, "preprocessing": settings}
    return sha256_bytes(dumps_json(payload, sort_keys=True).encode())


def _key(image_id: str, subject_id: str) -> bytes:
    """A compact row key (16 bytes): the done-sets of a 20,000-image run stay a few MB."""
    return hashlib.blake2b(f"{image_id}\0{subject_id}".encode(), digest_size=16).digest()


def _sources(out: Path, name: str) -> list[Path]:
    parts_dir = out / PARTS_DIR / name
    for tmp in parts_dir.glob(".*.tmp"):  # left by a kill during a write: never complete
        tmp.unlink(missing_ok=True)
    final = out / f"{name}.parquet"
    return ([final] if final.is_file() else []) + sorted(parts_dir.glob("part-*.parquet"))


def _matches(path: Path, fingerprint: str) -> bool:
    try:
        meta = read_schema(path).metadata or {}
    except Exception as exc:  # an unreadable part is recomputed, never trusted
        log.warning("ignoring unreadable %s: %s", path, exc)
        return False
    if meta.get(FINGERPRINT_KEY, b"").decode() != fingerprint:
        log.warning("%s was made with other settings; its rows are recomputed", path)
        return False
    return True


def _read_keys(path: Path, columns=("image_id", "subject_id")) -> pa.Table | None:
    try:
        return read_table(path, columns=list(columns))
    except Exception as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _done_keys(out: Path, name: str, fingerprint: str) -> set[bytes]:
    keys: set[bytes] = set()
    for path in _sources(out, name):
        table = _read_keys(path) if _matches(path, fingerprint) else None
        if table is not None:
            keys.update(map(_key, table.column("image_id").to_pylist(), table.column("subject_id").to_pylist()))
    return keys


#: Rows per row group of a merged table (and per block the merge holds in memory).
MERGE_ROWS = 1024


def _merge(plan: Plan, ext: Extractor, settings: dict[str, Any], fingerprint: str) -> tuple[Path, Counter, list[str]]:
    """Combine the finished table and the parts into the final table, in input order.

    Streams: an index (source, row group, row) per key, then blocks of :data:`MERGE_ROWS`
    output rows gathered from the sources and written as row groups, so memory does not grow
    with the number of images. Returns the table, its status counts and the statuses in input
    order.
    """
    sources = [p for p in _sources(plan.out, ext.name) if _matches(p, fingerprint)]
    units: list[tuple[Path, int]] = []  # (file, row group)
    where: dict[bytes, tuple[int, int, str]] = {}  # key -> (unit, row in unit, status)
    for path in sources:
        try:
            for rg in range(row_groups(path)):
                t = read_row_group(path, rg, columns=["image_id", "subject_id", "status"])
                u = len(units)
                units.append((path, rg))
                for row, (i, s, st) in enumerate(zip(t.column("image_id").to_pylist(), t.column("subject_id").to_pylist(),
                                                     t.column("status").to_pylist())):
                    where.setdefault(_key(i, s), (u, row, st))
        except Exception as exc:  # never trusted: its rows are recomputed by the next run
            log.warning("ignoring unreadable %s: %s", path, exc)
    order = [where.get(_key(*r.key)) for r in plan.inputs.records]
    missing = [str(r.path) for r, w in zip(plan.inputs.records, order) if w is None]
    if missing:
        raise PluginError(f"extractor {ext.name!r}: {len(missing)} image(s) have no row after the run "
                          f"(first: {missing[0]}); re-run the same command to finish them")
    statuses = [w[2] for w in order]
    counts = Counter(statuses)
    final = plan.out / f"{ext.name}.parquet"
    if sources == [final] and len(where) == len(order) and _rows_in_order(order):
        return final, counts, statuses  # already the merged table: nothing to rewrite
    provenance = _provenance(plan, ext, settings, counts)
    schema = table_schema(ext.output_schema(), provenance)
    schema = schema.with_metadata({**(schema.metadata or {}), FINGERPRINT_KEY: fingerprint.encode()})
    plain = schema.remove_metadata()
    out_schema, redact = schema, None
    if not plan.config.get("paths", True):
        # --no-paths: each block is written without path columns or file names (io.tables.redact_paths)
        names = _input_names(plan)
        owners = {str(r.path): r.subject_id for r in plan.inputs.records}
        redact = lambda t: redact_paths(t, names=names, owners=owners)  # noqa: E731
        out_schema = redact(schema.empty_table()).schema
    cache: dict[int, pa.Table] = {}
    with table_writer(final, out_schema) as write:
        for start in range(0, len(order), MERGE_ROWS):
            block = order[start:start + MERGE_ROWS]
            pieces, run_u, run_start, run_len = [], None, 0, 0
            for u, row, _ in block:  # runs of consecutive rows of one unit become one slice
                if u == run_u and row == run_start + run_len:
                    run_len += 1
                    continue
                if run_u is not None:
                    pieces.append(_unit(units, run_u, cache, plain).slice(run_start, run_len))
                run_u, run_start, run_len = u, row, 1
            pieces.append(_unit(units, run_u, cache, plain).slice(run_start, run_len))
            table = pa.concat_tables(pieces).combine_chunks()
            if redact is not None:
                table = redact(table).cast(out_schema.remove_metadata())
            write(table, MERGE_ROWS)
    for part in sources:
        if part != final:
            part.unlink(missing_ok=True)
    return final, counts, statuses


def _rows_in_order(order: list[tuple[int, int, str]]) -> bool:
    prev = (-1, -1)
    for u, row, _ in order:
        if (u, row) <= prev:
            return False
        prev = (u, row)
    return True


def _unit(units: list[tuple[Path, int]], u: int, cache: dict[int, pa.Table], schema: pa.Schema) -> pa.Table:
    """Row group ``u`` as a table of ``schema`` (a few kept: blocks read neighbouring units)."""
    if u not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        path, rg = units[u]
        # conform_table: a table written without paths (--no-paths, resumed) gets an empty path column back
        cache[u] = conform_table(read_row_group(path, rg), schema)
    return cache[u]


def _provenance(plan: Plan, ext: Extractor, settings: dict[str, Any], counts: Counter) -> dict[str, Any]:
    info = getattr(ext, "_facefeat_info", None)
    versions = {}
    # Installed distribution versions, read from package metadata: importing torch only to ask
    # its version cost about 1.5 s per run for extractors that never use it.
    for mod, dist in (("numpy", "numpy"), ("pyarrow", "pyarrow"), ("PIL", "pillow"), ("dlib", "dlib-bin"),
                      ("torch", "torch")):
        loaded = sys.modules.get(mod)
        try:
            versions[mod] = loaded.__version__ if loaded is not None else importlib.metadata.version(dist)
        except Exception:  # not installed (or installed from a source without metadata)
            pass
    return {
        "facefeat_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extractor": {"name": ext.name, "version": ext.version, "config": ext.config,
                      **({"plugin": info.plugin, "distribution": info.distribution,
                          "distribution_version": info.distribution_version} if info else {})},
        "models_sha256": {label: sha256_file(path) for label, path in ext.model_files().items()},
        "preprocessing": settings,
        "input": {"source": plan.inputs.source, "manifest_sha256": plan.inputs.manifest_sha256,
                  "n_images": len(plan.inputs.records), "duplicates": plan.inputs.duplicates},
        "run": {k: plan.config[k] for k in ("batch_size", "jobs", "device", "extractors")},
        "status_counts": {s: counts.get(s, 0) for s in STATUSES},
        "environment": {"python": platform.python_version(), "platform": platform.platform(), **versions},
    }


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="extract", disable=not enabled or total == 0, dynamic_ncols=True)
