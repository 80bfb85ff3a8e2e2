"""``facefeat robustness``: perturbed copies -> the normal engine -> reliability per feature.

Layout of the output folder ``DIR``:

- ``copies/<image_id[:16]>/<condition>.<png|jpg>``: the perturbed copies (deterministic);
- ``manifest.csv``: every photo the engine reads: the originals (``perturbation`` = ``none``)
  and each copy with its source (``source_image_id``, ``source_path``), family and strength;
- ``run/``: the engine run over that manifest (cached and resumable like any run);
- ``seeds/seed-<s>/``: for extractors with a ``seed`` setting (stochastic ones, e.g. the
  StyleGAN2 projection), runs over the originals with other seeds;
- ``robustness.parquet`` / ``.csv``: one row per feature and perturbation (see README.md there);
- ``summary.parquet`` / ``.csv``: per extractor, column and perturbation: shares of features
  with ICC >= 0.75 and >= 0.9, median ICC;
- ``conditions.csv``: per extractor and condition, how many photos gave a usable row;
- ``robustness.json``: settings, counts, timings and the provenance of the inputs;
- ``README.md``: the data dictionary of these tables.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from facefeat.errors import ConfigError, DataError
from facefeat.io.jsonsafe import dumps_json
from facefeat.robustness.icc import DEFAULT_FORM, ICC_FORMS, MIN_SUBJECTS, reliability
from facefeat.robustness.perturb import Condition, perturb, resolve_perturbations

log = logging.getLogger(__name__)

ROBUSTNESS_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "perturbations": {"type": ["object", "null"], "default": None,
                          "description": "family: [strengths]; null: the defaults (facefeat.robustness.perturb)"},
        "seeds": {"type": "array", "items": {"type": "integer"}, "default": [1, 2],
                  "description": "extra seeds of stochastic extractors (those with a 'seed' setting); [] for none"},
        "form": {"enum": list(ICC_FORMS), "default": DEFAULT_FORM, "description": "ICC form of the icc column"},
        "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.95,
                  "description": "confidence level of the intervals"},
        "min_subjects": {"type": "integer", "minimum": 2, "default": MIN_SUBJECTS,
                         "description": "fewest photos (subjects of the ICC) with usable rows for an interval"},
        "copy_seed": {"type": "integer", "default": 0, "description": "seed of the crop-jitter offsets"},
        "repeat_date_column": {"type": "string", "default": "date",
                               "description": "manifest column ordering repeat photos of a subject"},
        "repeat_photos": {"type": "integer", "minimum": 2, "default": 2,
                          "description": "photos per subject in the test-retest statistics (the first by date)"},
    },
}

SCOPES = ("condition", "family", "all", "seeds", "repeat")
KEY_COLUMNS = ("image_id", "subject_id", "path", "status", "error")


@dataclass
class RobustnessResult:
    """What ``run_robustness`` wrote."""

    out: Path
    table: Path
    summary: Path
    n_photos: int
    n_copies: int
    conditions: list[str]
    seconds: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        return (f"{self.n_photos} photos x {len(self.conditions)} perturbations ({self.n_copies} copies); "
                f"table {self.table}; {sum(self.seconds.values()):.1f} s")


def resolve_robustness_config(section: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[Condition]]:
    """Validate the ``robustness`` config section and expand its perturbations."""
    from facefeat.engine.registry import validate_config

    resolved = validate_config(ROBUSTNESS_CONFIG_SCHEMA, dict(section or {}), where="robustness config",
                               prefix="robustness")
    conditions = resolve_perturbations(resolved["perturbations"])
    if len(set(resolved["seeds"])) != len(resolved["seeds"]):
        raise ConfigError(f"robustness.seeds lists a seed twice: {resolved['seeds']}")
    return resolved, conditions


def run_robustness(config: Mapping[str, Any], *, progress: bool = True, registry=None) -> RobustnessResult:
    """Write perturbed copies, run the engine over originals and copies, compute the statistics.

    Parameters
    ----------
    config : mapping
        A run config (``input``, ``out``, ``extractors``, engine and extractor sections, as for
        ``facefeat extract``) plus a ``robustness`` section
        (:data:`ROBUSTNESS_CONFIG_SCHEMA`). ``out`` is the robustness folder.
    progress : bool
        Progress bars of the engine runs.

    Raises
    ------
    ConfigError, InputError, DataError
        Bad perturbation names or strengths, too few photos for an interval.
    """
    from facefeat.engine.run import plan_run, run_extraction

    config = dict(config)
    settings, conditions = resolve_robustness_config(config.pop("robustness", None))
    out = Path(config["out"])
    plan = plan_run({**config, "out": str(out / "run")}, registry=registry)
    records = plan.inputs.records
    if len(records) < settings["min_subjects"]:
        raise DataError(f"{plan.inputs.source}: {len(records)} photo(s); an ICC interval needs at least "
                        f"{settings['min_subjects']} photos (subjects of the ICC), 30 or more for a usable one "
                        "(Koo & Li 2016)")
    # stochastic extractors: those with a 'seed' setting; their extra seeds must differ from their own
    stochastic = [e.name for e in plan.extractors if "seed" in (e.config_schema or {}).get("properties", {})]
    clash = sorted({s for s in settings["seeds"] for n in stochastic if plan.config[n].get("seed") == s})
    if clash:
        raise ConfigError(f"robustness.seeds contains {clash}, the seed the extractor(s) {', '.join(stochastic)} already "
                          "use; list other seeds")
    repeat = _repeat_groups(plan.inputs.source, records, settings)
    if not conditions and not (stochastic and settings["seeds"]) and repeat is None:
        raise ConfigError("nothing to compare: no perturbation selected, no stochastic extractor with extra seeds, and "
                          f"no subject with {settings['repeat_photos']} or more photos; select perturbations "
                          "(--perturbations) or give a manifest with repeat photos")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    rows, n_unreadable = write_copies(records, conditions, out, seed=settings["copy_seed"])
    seconds["copies"] = time.perf_counter() - t
    manifest = write_manifest(rows, out / "manifest.csv")
    t = time.perf_counter()
    run_extraction({**config, "input": str(manifest), "out": str(out / "run")}, registry=registry, progress=progress)
    seconds["extract"] = time.perf_counter() - t

    seed_runs: dict[int, Path] = {}
    if stochastic and settings["seeds"]:
        originals = write_manifest([r for r in rows if r["perturbation"] == "none"], out / "seeds" / "manifest.csv")
        t = time.perf_counter()
        for s in settings["seeds"]:
            seed_cfg = {k: v for k, v in config.items() if k not in plan.config["extractors"] or k in stochastic}
            seed_cfg.update({"input": str(originals), "out": str(out / "seeds" / f"seed-{s}"), "extractors": stochastic,
                             **{n: {**plan.config[n], "seed": s} for n in stochastic}})
            run_extraction(seed_cfg, registry=registry, progress=progress)
            seed_runs[s] = out / "seeds" / f"seed-{s}"
        seconds["seeds"] = time.perf_counter() - t

    t = time.perf_counter()
    table, cond_counts = analyse(out / "run", rows, conditions, seed_runs=seed_runs, repeat=repeat,
                                 form=settings["form"], level=settings["level"], min_subjects=settings["min_subjects"],
                                 copy_seed=settings["copy_seed"])
    summary = summarize(table)
    seconds["statistics"] = time.perf_counter() - t
    paths = write_outputs(out, table, summary, cond_counts)
    info = {
        "facefeat_version": _version(), "input": plan.inputs.source, "input_manifest_sha256": plan.inputs.manifest_sha256,
        "n_photos": len(records), "n_unreadable_sources": n_unreadable, "duplicates": plan.inputs.duplicates,
        "extractors": plan.config["extractors"], "stochastic_extractors": stochastic,
        "settings": {**settings, "perturbations": {c.name: {"family": c.family, "strength": c.strength} for c in conditions}},
        "seeds": {"base": {n: plan.config[n].get("seed") for n in stochastic}, "extra": list(seed_runs)},
        "repeat": repeat["info"] if repeat else None,
        "seconds": seconds, "tables": {k: str(v) for k, v in paths.items()},
    }
    (out / "robustness.json").write_text(dumps_json(info, indent=2))
    n_copies = sum(r["perturbation"] != "none" for r in rows)
    return RobustnessResult(out=out, table=paths["table"], summary=paths["summary"], n_photos=len(records),
                            n_copies=n_copies, conditions=[c.name for c in conditions], seconds=seconds)


def _version() -> str:
    from facefeat._version import __version__

    return __version__


# -- copies ----------------------------------------------------------------------------------
def write_copies(records, conditions: Sequence[Condition], out: Path, *, seed: int = 0) -> tuple[list[dict], int]:
    """Write every photo's perturbed copies under ``out/copies`` and return the manifest rows.

    A copy whose file already holds the same bytes is not rewritten (a re-run changes nothing,
    so the engine's cache of it stays valid). A source that cannot be decoded gets no copies:
    its own row stays in the manifest, where the engine gives it its status (counted).

    Returns
    -------
    rows : list of dict
        ``subject_id``, ``path``, ``image_id``, ``source_image_id``, ``source_path``,
        ``perturbation``, ``family``, ``strength``.
    n_unreadable : int
        Sources without copies.
    """
    from facefeat.io.atomic import write_bytes_atomic
    from facefeat.io.hashing import sha256_bytes
    from facefeat.io.images import ImageDecodeError, read_and_decode

    rows: list[dict] = []
    n_unreadable = 0
    for rec in records:
        base = {"subject_id": rec.subject_id, "source_image_id": rec.image_id, "source_path": str(rec.path)}
        rows.append({**base, "path": str(rec.path), "image_id": rec.image_id, "perturbation": "none",
                     "family": "none", "strength": ""})
        if rec.status != "ok" or not conditions:
            n_unreadable += rec.status != "ok"
            continue
        try:
            rgb = read_and_decode(rec.path).rgb
        except ImageDecodeError as exc:
            log.warning("%s: no perturbed copies (%s)", rec.path, exc)
            n_unreadable += 1
            continue
        for cond in conditions:
            data = perturb(rgb, cond, image_id=rec.image_id, seed=seed)
            rel = Path("copies") / rec.image_id[:16] / f"{cond.name}{cond.suffix}"
            target = out / rel
            if not (target.is_file() and target.read_bytes() == data):
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(target, data)
            rows.append({**base, "path": str(rel), "image_id": sha256_bytes(data), "perturbation": cond.name,
                         "family": cond.family, "strength": str(cond.strength)})
    return rows, n_unreadable


def write_manifest(rows: list[dict], path: Path) -> Path:
    """Write manifest rows (from :func:`write_copies`) as the CSV the engine reads, atomically."""
    import pandas as pd

    from facefeat.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)  # relative paths (the copies) resolve against the manifest's folder
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


# -- reading features ------------------------------------------------------------------------
@dataclass
class FeatureMatrix:
    """One extractor's usable rows as a float matrix, with the features' names."""

    extractor: str
    row_of: dict[str, int]  # image_id -> row of ``values`` (status ok only)
    status_of: dict[str, str]  # image_id -> status (every row)
    values: np.ndarray  # (rows, features) float64, NaN for a null feature
    meta: list[tuple[str, int | None, str]]  # (column, index or None, flattened name)
    box_of: dict[str, tuple] = field(default_factory=dict)  # image_id -> face box (l, t, r, b), ok rows
    size_of: dict[str, tuple] = field(default_factory=dict)  # image_id -> (width, height) of the upright photo


def read_matrix(path: Path) -> FeatureMatrix:
    """Numeric features of one feature table (embeddings flattened and named as
    :func:`facefeat.io.features.flat_column` names them)."""
    import pyarrow as pa

    from facefeat.io.features import flat_columns
    from facefeat.io.tables import flatten_table, read_table

    table = read_table(path)
    status = table.column("status").to_pylist()
    ids = table.column("image_id").to_pylist()
    meta: list[tuple[str, int | None, str]] = []
    keep = []
    for f in table.schema:
        if f.name in KEY_COLUMNS or f.name.startswith("diag__"):
            continue
        t = f.type
        if pa.types.is_fixed_size_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
            keep.append(f.name)
            meta.extend((f.name, i, name) for i, name in enumerate(flat_columns(f.name, t.list_size)))
        elif pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
            keep.append(f.name)
            meta.append((f.name, None, f.name))
    ok = [i for i, s in enumerate(status) if s == "ok"]
    sub = flatten_table(table.select(keep).take(pa.array(ok, pa.int64())))
    values = np.empty((len(ok), len(meta)), dtype=np.float64)
    for j, name in enumerate(m[2] for m in meta):
        values[:, j] = sub.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    geometry = {}
    if {"diag__face_box", "diag__image_width", "diag__image_height"} <= set(table.column_names):
        boxes = table.column("diag__face_box").to_pylist()
        widths, heights = table.column("diag__image_width").to_pylist(), table.column("diag__image_height").to_pylist()
        geometry = {"box_of": {ids[i]: tuple(boxes[i]) for i in ok if boxes[i] is not None},
                    "size_of": {ids[i]: (widths[i], heights[i]) for i in ok if widths[i] is not None}}
    return FeatureMatrix(extractor=path.stem, row_of={ids[i]: r for r, i in enumerate(ok)},
                         status_of=dict(zip(ids, status)), values=values, meta=meta, **geometry)


def other_faces(fm: FeatureMatrix, manifest_rows: list[dict], conditions: Sequence[Condition], *,
                seed: int = 0) -> set[str]:
    """Copies whose face is not the source photo's face.

    In a photo with several faces the engine keeps one (``face.multiple_faces``); once a
    perturbation loses that face, another one may be kept. A copy counts as showing the same
    face when the centre of its face box, mapped back to the source photo
    (:func:`facefeat.robustness.perturb.to_source`), lies inside the source's face box.
    """
    from facefeat.robustness.perturb import to_source

    by_name = {c.name: c for c in conditions}
    source_of = {r["source_image_id"]: r["image_id"] for r in manifest_rows if r["perturbation"] == "none"}
    out = set()
    for r in manifest_rows:
        cond = by_name.get(r["perturbation"])
        src = source_of.get(r["source_image_id"])
        box, ref = fm.box_of.get(r["image_id"]), fm.box_of.get(src)
        if cond is None or box is None or ref is None or src not in fm.size_of:
            continue
        x, y = to_source(cond, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, size=fm.size_of[src],
                         image_id=r["source_image_id"], seed=seed)
        if not (ref[0] <= x <= ref[2] and ref[1] <= y <= ref[3]):
            out.add(r["image_id"])
    return out


# -- statistics ------------------------------------------------------------------------------
def ratings_statistics(fm: FeatureMatrix, raters: np.ndarray, *, form: str, level: float, min_subjects: int):
    """Reliability of every feature of ``fm`` for a ``subjects x raters`` array of image ids.

    ``raters[i, j]`` is the image id of subject ``i`` under condition ``j`` (``""``: none);
    column 0 is the reference. Subjects without a usable row in every condition are left
    out and counted (``n_excluded``); a feature that is null on some usable rows is computed
    on its own complete subjects.
    """
    import pandas as pd

    rows = np.vectorize(lambda x: fm.row_of.get(x, -1), otypes=[np.int64])(raters) if raters.size else raters.astype(int)
    complete = (rows >= 0).all(axis=1) if rows.size else np.zeros(0, bool)
    n_total = len(raters)
    Y = fm.values[rows[complete]]  # (n, k, F)
    Y = np.moveaxis(Y, 2, 0)  # (F, n, k)
    valid = ~np.isnan(Y).any(axis=2)  # (F, n)
    frames = []
    patterns, group = np.unique(np.packbits(valid, axis=1), axis=0, return_inverse=True) if len(Y) else ([], [])
    for g in range(len(patterns)):
        feats = np.flatnonzero(np.asarray(group).ravel() == g)
        subj = valid[feats[0]]
        part = reliability(Y[feats][:, subj, :], reference=0, level=level, form=form, min_subjects=min_subjects)
        part.index = feats
        part["n_excluded"] = n_total - int(subj.sum())
        frames.append(part)
    out = pd.concat(frames).sort_index() if frames else pd.DataFrame(index=range(0))
    out.insert(0, "feature", [m[2] for m in fm.meta])
    out.insert(0, "index", pd.array([m[1] for m in fm.meta], dtype="Int64"))
    out.insert(0, "column", [m[0] for m in fm.meta])
    out.insert(0, "extractor", fm.extractor)
    return out.reset_index(drop=True)


def analyse(run: Path, manifest_rows: list[dict], conditions: Sequence[Condition], *, seed_runs: Mapping[int, Path] | None = None,
            repeat: dict | None = None, form: str = DEFAULT_FORM, level: float = 0.95,
            min_subjects: int = MIN_SUBJECTS, copy_seed: int = 0):
    """The robustness table of a finished run: every scope of every extractor.

    A copy whose face is another face than its source's (:func:`other_faces`) is not used and
    is counted in ``n_other_face`` of the condition counts.

    Returns
    -------
    table : pandas.DataFrame
        One row per feature and perturbation (``scope`` says which kind).
    condition_counts : pandas.DataFrame
        Per extractor and condition: photos, usable rows, and the other statuses.
    """
    import pandas as pd

    from facefeat.io.tables import feature_tables

    sources = [r for r in manifest_rows if r["perturbation"] == "none"]
    copy_of = {(r["source_image_id"], r["perturbation"]): r["image_id"] for r in manifest_rows if r["perturbation"] != "none"}
    ref = np.array([r["image_id"] for r in sources], dtype=object)

    def raters(names: Sequence[str], skip: set[str]) -> np.ndarray:
        # a copy showing another face counts as no usable row ("")
        cols = [ref] + [np.array([copy_of.get((s, n), "") for s in ref], dtype=object) for n in names]
        return np.array([[i if i not in skip else "" for i in row] for row in np.stack(cols, axis=1)], dtype=object)

    families: dict[str, list[str]] = {}
    for c in conditions:
        families.setdefault(c.family, []).append(c.name)
    scopes: list[tuple[str, str, str, str, list[str]]] = []  # perturbation, scope, family, strength, condition names
    for c in conditions:
        scopes.append((c.name, "condition", c.family, str(c.strength), [c.name]))
    for fam, names in families.items():
        if len(names) > 1:
            scopes.append((fam, "family", fam, "", names))
    if len(conditions) > 1:
        scopes.append(("all", "all", "", "", [c.name for c in conditions]))

    frames, counts = [], []
    for path in feature_tables(run):
        fm = read_matrix(path)
        skip = other_faces(fm, manifest_rows, conditions, seed=copy_seed)
        for pert, scope, fam, strength, names in scopes:
            part = ratings_statistics(fm, raters(names, skip), form=form, level=level, min_subjects=min_subjects)
            frames.append(part.assign(perturbation=pert, scope=scope, family=fam, strength=strength))
        for name in ["none"] + [c.name for c in conditions]:
            ids = ref if name == "none" else [copy_of.get((s, name), "") for s in ref]
            st = pd.Series([fm.status_of.get(i, "no copy (source unreadable)") for i in ids]).value_counts()
            counts.append({"extractor": fm.extractor, "perturbation": name, "n_photos": len(ids),
                           "ok": int(st.get("ok", 0)), "n_other_face": sum(i in skip for i in ids),
                           **{f"n_{k}": int(v) for k, v in st.items() if k != "ok"}})
        if seed_runs and (next(iter(seed_runs.values())) / path.name).is_file():
            extra = [read_matrix(p / path.name) for p in seed_runs.values()]
            merged = _stack_runs([fm] + extra)
            R = np.stack([np.array([f"{j}:{i}" for i in ref], dtype=object) for j in range(len(extra) + 1)], axis=1)
            part = ratings_statistics(merged, R, form=form, level=level, min_subjects=min_subjects)
            frames.append(part.assign(perturbation="seeds", scope="seeds", family="seed",
                                      strength=",".join(str(s) for s in seed_runs)))
        if repeat and repeat["raters"].size:
            part = ratings_statistics(fm, repeat["raters"], form=form, level=level, min_subjects=min_subjects)
            frames.append(part.assign(perturbation="repeat", scope="repeat", family="repeat photos",
                                      strength=f"first {repeat['raters'].shape[1]} by {repeat['info']['order']}"))
    if not frames:
        raise DataError(f"{run}: no feature table to analyse")
    table = pd.concat(frames, ignore_index=True)
    lead = ["extractor", "column", "index", "feature", "perturbation", "scope", "family", "strength",
            "n_subjects", "n_raters", "n_excluded", "status", "note", "icc_form", "icc", "icc_low", "icc_high"]
    table = table[lead + [c for c in table.columns if c not in lead]]
    counts = pd.DataFrame(counts)
    status_cols = [c for c in counts.columns if c.startswith("n_") or c == "ok"]
    counts[status_cols] = counts[status_cols].fillna(0).astype(int)  # a status absent in a condition: 0 photos
    return table, counts


def _stack_runs(mats: list[FeatureMatrix]) -> FeatureMatrix:
    """One matrix of several runs of the same extractor; image ids prefixed ``<run>:``."""
    row_of, values, offset = {}, [], 0
    for j, m in enumerate(mats):
        if [x[2] for x in m.meta] != [x[2] for x in mats[0].meta]:
            raise DataError(f"seed run {j} of {m.extractor} has other feature columns than the main run")
        row_of.update({f"{j}:{k}": v + offset for k, v in m.row_of.items()})
        values.append(m.values)
        offset += len(m.values)
    return FeatureMatrix(mats[0].extractor, row_of, {}, np.concatenate(values), mats[0].meta)


def _repeat_groups(source: str, records, settings: Mapping[str, Any]) -> dict | None:
    """Subjects with several photos: the first ``repeat_photos`` of each, ordered by date.

    Returns None when no subject has that many photos.
    """
    import pandas as pd

    k = settings["repeat_photos"]
    by_subject: dict[str, list] = {}
    for r in records:
        if r.status == "ok":
            by_subject.setdefault(r.subject_id, []).append(r)
    groups = {s: rs for s, rs in by_subject.items() if len(rs) >= k}
    if not groups:
        return None
    dates: dict[str, Any] = {}
    order = "input order (no date column)"
    src = Path(source)
    col = settings["repeat_date_column"]
    if src.suffix.lower() in (".csv", ".tsv", ".parquet"):
        df = (pd.read_parquet(src) if src.suffix.lower() == ".parquet"
              else pd.read_csv(src, sep="\t" if src.suffix.lower() == ".tsv" else None, engine="python", dtype=str,
                               keep_default_na=False))
        if col in df.columns:
            parsed = pd.to_datetime(df[col], errors="coerce")
            paths = [str((Path(p) if Path(p).is_absolute() else src.parent / p).resolve()) for p in df["path"].astype(str)]
            bad = [i + 2 for i, (raw, d) in enumerate(zip(df[col], parsed)) if str(raw).strip() and pd.isna(d)]
            if bad:
                raise DataError(f"{src}: column {col!r} has values that are not dates on row(s) {bad[:10]} "
                                "(row 1 is the header); use ISO dates such as 2024-05-31")
            dates = dict(zip(paths, parsed))
            order = f"date ({col})"
    pos = {id(r): i for i, r in enumerate(records)}

    def key(r):
        d = dates.get(str(Path(r.path).resolve()))
        return (pd.isna(d) if d is not None else True, d if d is not None and not pd.isna(d) else pd.Timestamp(0),
                pos[id(r)])

    raters = np.array([[r.image_id for r in sorted(rs, key=key)[:k]] for rs in groups.values()], dtype=object)
    info = {"subjects": len(groups), "photos_per_subject": k, "order": order,
            "subjects_with_fewer_photos": len(by_subject) - len(groups)}
    return {"raters": raters, "info": info}


def summarize(table):
    """Per extractor, column (embeddings as one row) and perturbation: how many features are reliable.

    Shares are of the features with a defined ICC (``n_defined``); ``n_undefined`` counts the
    constant ones and those with too few subjects.
    """
    import pandas as pd

    def row(ext, col, pert, g) -> dict:
        v = g["icc"].where(g["status"] == "ok").dropna().to_numpy()
        share = (lambda t: float((v >= t).mean())) if len(v) else (lambda t: np.nan)
        return {"extractor": ext, "column": col, "perturbation": pert, "scope": g["scope"].iloc[0],
                "n_features": len(g), "n_defined": len(v), "n_undefined": len(g) - len(v),
                "icc_form": g["icc_form"].iloc[0], "median_icc": float(np.median(v)) if len(v) else np.nan,
                "min_icc": float(v.min()) if len(v) else np.nan, "share_ge_075": share(0.75),
                "share_ge_090": share(0.9), "n_subjects": int(g["n_subjects"].max())}

    per_ext = [row(e, "*", p, g) for (e, p), g in table.groupby(["extractor", "perturbation"], sort=False)]
    per_col = [row(e, c, p, g) for (e, c, p), g in table.groupby(["extractor", "column", "perturbation"], sort=False)]
    return pd.DataFrame(per_ext + per_col)


def write_outputs(out: Path, table, summary, counts) -> dict[str, Path]:
    """Write the tables (Parquet and CSV, atomically) and the data dictionary README.md."""
    from facefeat.io.atomic import atomic_output
    from facefeat.robustness.dictionary import data_dictionary

    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in (("robustness", table), ("summary", summary)):
        for suffix, write in ((".parquet", lambda d, p: d.to_parquet(p, index=False)),
                              (".csv", lambda d, p: d.to_csv(p, index=False))):
            with atomic_output(out / f"{name}{suffix}") as tmp:
                write(df, tmp)
        paths["table" if name == "robustness" else name] = out / f"{name}.parquet"
    with atomic_output(out / "conditions.csv") as tmp:
        counts.to_csv(tmp, index=False)
    paths["conditions"] = out / "conditions.csv"
    (out / "README.md").write_text(data_dictionary())
    return paths
