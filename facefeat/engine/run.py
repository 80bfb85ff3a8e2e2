"""Runs: extractors over a cohort's photos, written in parts, resumable, merged atomically.

How a run survives faults: work is done in batches; each batch's rows are written per
extractor as a part file (``<out>/.parts/<extractor>/part-<hash>.parquet``, atomically).
A re-run of the same command reads the finished table and the parts, skips every
(image_id, subject_id) already done with the same settings (a fingerprint of the extractor's
version and config and the preprocessing settings), processes the rest, and merges everything
into ``<out>/<extractor>.parquet`` in input order. The result equals an uninterrupted run.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from facefeat._version import __version__
from facefeat.engine.config import resolve_run_config
from facefeat.engine.extractor import Extractor, FaceBatch
from facefeat.engine.preprocess import Preprocessed, Preprocessor
from facefeat.engine.registry import Registry, load_registry
from facefeat.errors import ConfigError, PluginError
from facefeat.io.hashing import sha256_bytes, sha256_file
from facefeat.io.images import STATUSES, ImageRecord
from facefeat.io.manifest import Inputs, load_inputs
from facefeat.io.tables import ENGINE_DIAG_FIELDS, KEY_FIELDS, table_schema, write_parquet_atomic

log = logging.getLogger(__name__)

PARTS_DIR = ".parts"
FINGERPRINT_KEY = b"facefeat.fingerprint"


@dataclass
class RunSummary:
    """What a run did."""

    out: Path
    tables: dict[str, Path]
    status_counts: dict[str, int]
    n_images: int
    n_processed: int
    n_reused: int
    duplicates: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in self.status_counts.items() if n)
        dup = f"; {len(self.duplicates)} exact duplicate file(s) skipped (listed in provenance)" if self.duplicates else ""
        return (f"{self.n_images} images: {counts or 'none'}; processed {self.n_processed} now, "
                f"reused {self.n_reused} from earlier parts{dup}; {self.seconds:.1f} s")


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


def run_extraction(config: dict[str, Any], *, registry: Registry | None = None, progress: bool = True) -> RunSummary:
    """Run the configured extractors over the inputs and write one Parquet table per extractor.

    Parameters
    ----------
    config : dict
        Run config (see :data:`facefeat.engine.config.RUN_CONFIG_SCHEMA`).
    registry : Registry, optional
        Extractor registry; built from the installed plugins by default. With ``jobs > 1``
        workers rebuild it from the installed plugins.
    progress : bool
        Show a progress bar (images/s) on stderr.

    Returns
    -------
    RunSummary
    """
    t0 = time.perf_counter()
    plan = plan_run(config, registry=registry)
    out, parts_root = plan.out, plan.out / PARTS_DIR
    settings = plan.preprocessor().settings()
    fingerprints = {ext.name: _fingerprint(ext, settings) for ext in plan.extractors}
    done = {ext.name: _done_keys(out, ext.name, fingerprints[ext.name]) for ext in plan.extractors}
    records = plan.inputs.records
    todo = [r for r in records if any(r.key not in done[name] for name in done)]
    n_reused = len(records) - len(todo)
    batch = plan.config["batch_size"]
    chunks = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    log.info("%d images, %d already done, %d batches to process", len(records), n_reused, len(chunks))

    bar = _progress(len(todo), progress)
    try:
        if plan.config["jobs"] > 1 and len(chunks) > 1:
            with ProcessPoolExecutor(max_workers=plan.config["jobs"], mp_context=get_context("spawn"),
                                     initializer=_worker_init, initargs=(plan.config, plan.preprocess)) as pool:
                futures = [pool.submit(_worker_chunk, chunk, {n: list(done[n]) for n in done}, fingerprints)
                           for chunk in chunks]
                for fut in as_completed(futures):
                    bar.update(fut.result())
        else:
            worker = _ChunkWorker(plan.extractors, plan.preprocessor(), plan.config["device"], parts_root, fingerprints)
            for chunk in chunks:
                bar.update(worker.run(chunk, done))
    finally:
        bar.close()

    tables, counts = {}, Counter()
    for ext in plan.extractors:
        tables[ext.name], ext_counts = _merge(plan, ext, settings, fingerprints[ext.name])
        if not counts:
            counts = ext_counts
    summary = RunSummary(out=out, tables=tables, status_counts={s: counts.get(s, 0) for s in STATUSES},
                         n_images=len(records), n_processed=len(todo), n_reused=n_reused,
                         duplicates=plan.inputs.duplicates, seconds=time.perf_counter() - t0)
    (out / "run.json").write_text(json.dumps({
        "facefeat_version": __version__, "input": plan.inputs.source, "extractors": list(tables),
        "status_counts": summary.status_counts, "n_images": summary.n_images,
        "duplicates": summary.duplicates, "tables": {k: str(v) for k, v in tables.items()},
    }, indent=2))
    log.info("%s", summary.line())
    return summary


# -- workers ---------------------------------------------------------------------------------
class _ChunkWorker:
    """Preprocess a batch of records once and run every extractor that still needs them."""

    def __init__(self, extractors: Sequence[Extractor], preprocessor: Preprocessor, device: str,
                 parts_root: Path, fingerprints: dict[str, str]) -> None:
        self.extractors = list(extractors)
        self.preprocessor = preprocessor
        self.device = device
        self.parts_root = parts_root
        self.fingerprints = fingerprints
        self._loaded: set[str] = set()

    def run(self, chunk: list[ImageRecord], done: dict[str, set]) -> int:
        pre = [self.preprocessor.process(r) for r in chunk]
        for ext in self.extractors:
            need = [p for p in pre if p.record.key not in done[ext.name]]
            if not need:
                continue
            if ext.name not in self._loaded and any(p.status == "ok" for p in need):
                ext.load(self.device)
                self._loaded.add(ext.name)
            table = extract_rows(ext, need).replace_schema_metadata({FINGERPRINT_KEY: self.fingerprints[ext.name].encode()})
            name = "part-" + sha256_bytes(json.dumps([p.record.key for p in need]).encode())[:20] + ".parquet"
            write_parquet_atomic(table, self.parts_root / ext.name / name)
        return len(chunk)


_WORKER: _ChunkWorker | None = None


def _worker_init(config: dict[str, Any], preprocess: dict[str, Any]) -> None:
    global _WORKER
    import torch

    # Share the cores between workers instead of oversubscribing them.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, config["jobs"])))
    registry = load_registry()
    extractors = [registry.create(n, config[n]) for n in config["extractors"]]
    settings = Preprocessor(**preprocess).settings()
    fingerprints = {e.name: _fingerprint(e, settings) for e in extractors}
    _WORKER = _ChunkWorker(extractors, Preprocessor(**preprocess, align_workers=1), config["device"],
                           Path(config["out"]) / PARTS_DIR, fingerprints)


def _worker_chunk(chunk: list[ImageRecord], done: dict[str, list], fingerprints: dict[str, str]) -> int:
    assert _WORKER is not None
    if fingerprints != _WORKER.fingerprints:
        raise PluginError("worker computed different settings than the main process (are plugins installed the same?)")
    return _WORKER.run(chunk, {k: {tuple(x) for x in v} for k, v in done.items()})


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
            log.warning("extractor %s failed on a batch of %d (%s); retrying one by one", ext.name, len(ok), exc)
            for i in ok:
                try:
                    results[i] = _checked_extract(ext, [items[i]], schema)
                except PluginError:
                    raise
                except Exception as one_exc:
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
    return sha256_bytes(json.dumps(payload, sort_keys=True, default=str).encode())


def _sources(out: Path, name: str) -> list[Path]:
    parts_dir = out / PARTS_DIR / name
    for tmp in parts_dir.glob(".*.tmp"):  # left by a kill during a write: never complete
        tmp.unlink(missing_ok=True)
    final = out / f"{name}.parquet"
    return ([final] if final.is_file() else []) + sorted(parts_dir.glob("part-*.parquet"))


def _read_matching(path: Path, fingerprint: str, columns=None) -> pa.Table | None:
    try:
        meta = pq.read_schema(path).metadata or {}
        if meta.get(FINGERPRINT_KEY, b"").decode() != fingerprint:
            log.warning("%s was made with other settings; its rows are recomputed", path)
            return None
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # an unreadable part is recomputed, never trusted
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def _done_keys(out: Path, name: str, fingerprint: str) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for path in _sources(out, name):
        table = _read_matching(path, fingerprint, columns=["image_id", "subject_id"])
        if table is not None:
            keys.update(zip(table.column("image_id").to_pylist(), table.column("subject_id").to_pylist()))
    return keys


def _merge(plan: Plan, ext: Extractor, settings: dict[str, Any], fingerprint: str) -> tuple[Path, Counter]:
    """Combine the finished table and the parts into the final table, in input order."""
    sources = _sources(plan.out, ext.name)
    pieces = [t for t in (_read_matching(p, fingerprint) for p in sources) if t is not None]
    schema = table_schema(ext.output_schema())
    combined = pa.concat_tables([t.replace_schema_metadata(None).cast(schema) for t in pieces]) if pieces else schema.empty_table()
    order = {r.key: i for i, r in enumerate(plan.inputs.records)}
    ids, subjects = combined.column("image_id").to_pylist(), combined.column("subject_id").to_pylist()
    first: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(ids, subjects)):
        if key in order and key not in first:
            first[key] = row
    missing = [str(r.path) for r in plan.inputs.records if r.key not in first]
    if missing:
        raise PluginError(f"extractor {ext.name!r}: {len(missing)} image(s) have no row after the run "
                          f"(first: {missing[0]}); re-run the same command to finish them")
    rows = sorted(first.values(), key=lambda r: order[(ids[r], subjects[r])])
    table = combined.take(pa.array(rows, pa.int64()))
    counts = Counter(table.column("status").to_pylist())
    provenance = _provenance(plan, ext, settings, counts)
    table = table.replace_schema_metadata({
        **(table_schema(ext.output_schema(), provenance).metadata or {}),
        FINGERPRINT_KEY: fingerprint.encode(),
    })
    final = write_parquet_atomic(table, plan.out / f"{ext.name}.parquet")
    for part in sources:
        if part != final:
            part.unlink(missing_ok=True)
    return final, counts


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
