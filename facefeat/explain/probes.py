"""Linear probes on StyleGAN latents (InterFaceGAN style): fit, save, apply, edit direction.

Given the latent codes of a cohort (a Parquet feature table from the ``stylegan2`` or ``e4e``
extractors: a fixed-size ``list<float32>`` column such as ``stylegan2__latent`` whose field
metadata holds ``shape`` ``[num_ws, 512]``) and labels for some subjects (any column of a table
keyed by ``subject_id``), :func:`fit_probe` fits

- a logistic regression for a binary label (two classes), or
- a ridge regression for a continuous label,

on ``W`` (the latent averaged over its ``num_ws`` layers, 512 values) or ``W+`` (all layers
flattened, ``num_ws * 512`` values), estimates its accuracy / AUC or R2 by stratified K-fold
cross-validation (the regularisation strength is chosen inside each training fold, so the
estimate is not tuned on its own test folds), and refits on all labelled subjects.

The fitted probe is a linear function of the raw latent, ``score(x) = x . coef + intercept``
(standardisation is folded into ``coef``): the logit of the positive class, or the predicted
label value. Its unit normal ``coef / |coef|`` is the edit direction: moving a latent by
``alpha`` along it changes the score by ``alpha * |coef|`` (:attr:`LinearProbe.score_per_unit`).
For a W probe the direction is one 512-vector, applied to every layer of W+ alike
(:meth:`LinearProbe.direction` with ``num_ws``); for a W+ probe it is ``[num_ws, 512]``.

Subjects with several images are represented by the mean of their images' latents when
fitting; :meth:`LinearProbe.apply` scores every image row of a table.

Reference: Y. Shen, C. Yang, X. Tang and B. Zhou, "InterFaceGAN: Interpreting the Disentangled
Face Representation Learned by GANs", IEEE TPAMI 2020.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.errors import ConfigError, DataError, InputError, ModelError
from facefeat.io.jsonsafe import dumps_json, to_jsonable

__all__ = [
    "PROBE_FORMAT",
    "LatentRows",
    "LinearProbe",
    "fit_probe",
    "latent_columns",
    "load_probe",
    "read_labels",
    "read_latents",
]

SPACES = ("w", "w+")
KINDS = ("auto", "logistic", "ridge")
#: Format tag stored in every probe file.
PROBE_FORMAT = "facefeat-linear-probe/1"
_METADATA_KEY = "facefeat_probe"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
#: Regularisation grids searched by the inner cross-validation (inverse strength C for the
#: logistic model, alpha for ridge), on standardised latents.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-4, 2, 7))
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 6, 17))


# -- reading latents -------------------------------------------------------------------------


def _is_latent_field(f) -> bool:
    import pyarrow as pa

    if not (pa.types.is_fixed_size_list(f.type) and pa.types.is_floating(f.type.value_type)):
        return False
    meta = f.metadata or {}
    feature = f.name.split("__", 1)[1] if "__" in f.name else ""
    return (not f.name.startswith("diag__")) and (feature.startswith("latent") or b"latent_space" in meta)


def latent_columns(schema) -> list[str]:
    """Names of the latent columns of an Arrow schema.

    A latent column is a fixed-size float list column named ``<extractor>__latent...`` (or
    whose field metadata carries ``latent_space``).
    """
    return [f.name for f in schema if _is_latent_field(f)]


def _field_shape(f) -> tuple[int, ...]:
    from facefeat.io.tables import embedding_shape

    shape = tuple(embedding_shape(f))
    if len(shape) == 1:
        shape = (1, shape[0])
    if len(shape) != 2:
        raise DataError(f"column {f.name!r} has shape {list(shape)}; a latent is [num_ws, dim] or [dim]")
    return shape


def _candidate_files(source: str | Path) -> list[Path]:
    from facefeat.io.tables import feature_tables

    return feature_tables(source)


@dataclass
class LatentRows:
    """The latent column of a feature table, one entry per image row.

    Attributes
    ----------
    image_id, subject_id, status : ndarray of str, shape (n_rows,)
        Key columns, in table order (``status`` is ``"ok"`` where there is no status column).
    values : ndarray of shape (n_rows, num_ws, dim), float64
        NaN on rows without a latent (status not ok, or a null value).
    ok : ndarray of bool
        Rows with a usable latent.
    column : str
    shape : (num_ws, dim)
    source : str or None
        The Parquet file read (``None`` for an in-memory table).
    """

    image_id: np.ndarray
    subject_id: np.ndarray
    status: np.ndarray
    values: np.ndarray
    ok: np.ndarray
    column: str
    shape: tuple[int, int]
    source: str | None = None

    def status_counts(self) -> dict[str, int]:
        """Rows per status; rows marked ok whose latent is null count as ``"null_latent"``."""
        out: dict[str, int] = {}
        for s, good in zip(self.status, self.ok):
            key = str(s) if (s != "ok" or good) else "null_latent"
            out[key] = out.get(key, 0) + 1
        return out

    def by_subject(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(subject_ids, mean latent per subject (n, num_ws, dim), images per subject)`` over
        the usable rows, subjects in order of first appearance."""
        subj = self.subject_id[self.ok]
        vals = self.values[self.ok]
        ids, first, inverse, counts = np.unique(subj, return_index=True, return_inverse=True, return_counts=True)
        sums = np.zeros((len(ids),) + vals.shape[1:])
        np.add.at(sums, inverse, vals)
        means = sums / counts[:, None, None]
        order = np.argsort(first)
        return ids[order], means[order], counts[order]


def read_latents(source, column: str | None = None) -> LatentRows:
    """Read the latent column of a feature table.

    Parameters
    ----------
    source : path or pyarrow.Table
        A Parquet feature table, a run folder (the table holding ``column``, or the one table
        with a latent column), or an in-memory Arrow table.
    column : str, optional
        The latent column, e.g. ``"stylegan2__latent"``. Default: the only latent column.

    Raises
    ------
    DataError
        ``column`` is missing, not a latent (a scalar feature or another embedding), or the
        table has no / several latent columns and none was named.
    """
    import pyarrow as pa

    from facefeat.io.tables import read_schema, read_table

    if isinstance(source, pa.Table):
        tables = [(None, source.schema)]
    else:
        tables = [(p, read_schema(p)) for p in _candidate_files(source)]
    found = [(p, s) for p, s in tables if (column in s.names if column else latent_columns(s))]
    where = "the table" if len(tables) == 1 and tables[0][0] is None else ", ".join(str(p) for p, _ in tables)
    all_latents = sorted({c for _, s in tables for c in latent_columns(s)})
    if not found:
        if column:
            raise DataError(f"no column {column!r} in {where}; latent columns there: {all_latents or 'none'}")
        raise DataError(f"no latent column in {where}; probes need the output of the stylegan2 or e4e extractor "
                        f"(a '<extractor>__latent' column with shape [num_ws, 512])")
    if column is None:
        cols = sorted({c for _, s in found for c in latent_columns(s)})
        if len(cols) > 1:
            raise DataError(f"several latent columns in {where}: {cols}; name one (column=... / --latent-column)")
        column = cols[0]
    if len([p for p, s in found if column in s.names]) > 1:
        raise DataError(f"column {column!r} is in several tables ({[str(p) for p, _ in found]}); pass one file")
    path, schema = next((p, s) for p, s in found if column in s.names)
    f = schema.field(column)
    if not _is_latent_field(f):
        kind = ("an embedding" if pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type)
                else f"a scalar feature ({f.type})")
        raise DataError(
            f"column {column!r} is {kind}, not a StyleGAN latent; probes fit latent columns "
            f"('<extractor>__latent' fixed-size lists with shape [num_ws, 512] from the stylegan2 or e4e "
            f"extractors); latent columns available: {all_latents or 'none'}"
        )
    shape = _field_shape(f)
    keys = [k for k in ("image_id", "subject_id", "status") if k in schema.names]
    if "subject_id" not in keys:
        raise DataError(f"{path or 'the table'} has no subject_id column; a facefeat feature table keys rows by "
                        f"image_id and subject_id")
    table = source.select(keys + [column]) if path is None else read_table(path, columns=keys + [column])
    n = table.num_rows
    subject = np.array([str(v) for v in table.column("subject_id").to_pylist()], dtype=object)
    image = (np.array([str(v) for v in table.column("image_id").to_pylist()], dtype=object)
             if "image_id" in keys else np.array([str(i) for i in range(n)], dtype=object))
    status = (np.array([str(v) for v in table.column("status").to_pylist()], dtype=object)
              if "status" in keys else np.full(n, "ok", dtype=object))
    col = table.column(column).combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    values = np.full((n, shape[0] * shape[1]), np.nan)
    if valid.any():
        flat = col.values.slice(col.offset * col.type.list_size, n * col.type.list_size)
        dense = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, -1)
        values[valid] = dense[valid]
    ok = valid & (status == "ok") & np.all(np.isfinite(values), axis=1)
    return LatentRows(image, subject, status, values.reshape(n, *shape), ok, column, shape,
                      None if path is None else str(path))


# -- reading labels --------------------------------------------------------------------------


def read_labels(labels, column: str, *, id_column: str = "subject_id"):
    """One label per subject from a table.

    Parameters
    ----------
    labels : path, pandas.DataFrame or pandas.Series
        A CSV/TSV/Parquet table (read with :func:`facefeat.survival.tables.read_clinical`), a
        DataFrame with an ``id_column`` column (or indexed by subject), or a Series indexed by
        subject id.
    column : str
        The label column.
    id_column : str, default "subject_id"

    Returns
    -------
    pandas.Series
        Indexed by subject id (str), named ``column``; missing labels dropped (the count is in
        ``series.attrs["n_missing"]``).
    """
    import pandas as pd

    source = None
    if isinstance(labels, (str, Path)):
        from facefeat.survival.tables import read_clinical

        source = str(labels)
        labels = read_clinical(labels)
    if isinstance(labels, pd.Series):
        series = labels.rename(column) if labels.name is None else labels
        if series.name != column:
            raise DataError(f"the label series is named {series.name!r}, not {column!r}")
    elif isinstance(labels, pd.DataFrame):
        where = source or "the label table"
        if column not in labels.columns:
            raise DataError(f"no column {column!r} in {where}; columns: {list(labels.columns)}")
        if id_column in labels.columns:
            series = labels.set_index(id_column)[column]
        elif labels.index.name == id_column:
            series = labels[column]
        else:
            raise DataError(f"{where} has no {id_column!r} column (columns: {list(labels.columns)}); name the "
                            f"subject id column with id_column=")
    else:
        raise InputError(f"labels must be a path, a DataFrame or a Series, not {type(labels).__name__}")
    series = series.copy()
    series.index = series.index.map(lambda v: str(v).strip())
    missing = series.isna()
    series = series[~missing]
    dup = series.index.duplicated(keep=False)
    if dup.any():
        conflicting = series[dup].groupby(level=0).nunique()
        bad = conflicting[conflicting > 1]
        if len(bad):
            raise DataError(f"label column {column!r}: subject(s) {list(bad.index[:5])} have conflicting labels")
        series = series[~series.index.duplicated()]
    series.attrs = {"n_missing": int(missing.sum()), "source": source}
    return series


# -- the probe -------------------------------------------------------------------------------


def _features(values: np.ndarray, space: str) -> np.ndarray:
    """``(n, num_ws, dim)`` latents to the probe's design matrix."""
    if space == "w":
        return values.mean(axis=1)
    return values.reshape(len(values), -1)


def _sanitize(name: str) -> str:
    s = re.sub(r"[^a-z0-9_]+", "_", str(name).strip().lower()).strip("_")
    if not s or not s[0].isalpha():
        s = f"p_{s}" if s else "probe"
    return s


@dataclass
class LinearProbe:
    """A fitted linear probe: ``score(x) = features(x) . coef + intercept``.

    Build with :func:`fit_probe`; read with :func:`load_probe`.

    Attributes
    ----------
    name : str
        Used in the feature column ``probe__<name>``.
    kind : {"logistic", "ridge"}
    space : {"w", "w+"}
    latent_column : str
    latent_shape : (num_ws, dim)
        Shape of the latent the probe was fitted on.
    label_column : str
    coef : ndarray (dim,) for W, (num_ws * dim,) for W+
        In raw latent units (standardisation folded in).
    intercept : float
    classes : [negative, positive] or None
        Label values of the two classes (logistic); the score is the positive class's logit.
    metrics : dict
        Cross-validated metrics (see :func:`fit_probe`).
    info : dict
        Provenance: sources, counts, hyper-parameters, versions, creation time.
    """

    name: str
    kind: str
    space: str
    latent_column: str
    latent_shape: tuple[int, int]
    label_column: str
    coef: np.ndarray
    intercept: float
    classes: list | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    # -- scoring ---------------------------------------------------------------------------
    def _design(self, latents: np.ndarray) -> np.ndarray:
        x = np.asarray(latents, dtype=np.float64)
        num_ws, dim = self.latent_shape
        if x.ndim == 2 and x.shape[1] == num_ws * dim:
            x = x.reshape(len(x), num_ws, dim)
        if x.ndim == 2 and x.shape[1] == dim and self.space == "w":
            return x
        if x.ndim != 3 or x.shape[2] != dim or (self.space == "w+" and x.shape[1] != num_ws):
            raise DataError(f"probe {self.name!r} ({self.space.upper()}, latent shape {list(self.latent_shape)}) "
                            f"cannot score latents of shape {list(x.shape[1:])}")
        return _features(x, self.space)

    def decision_function(self, latents: np.ndarray) -> np.ndarray:
        """Scores of latents ``(n, num_ws, dim)`` (or ``(n, dim)`` W codes for a W probe):
        the positive class's logit (logistic) or the predicted label (ridge)."""
        return self._design(latents) @ self.coef + self.intercept

    def predict_proba(self, latents: np.ndarray) -> np.ndarray:
        """Probability of the positive class (logistic probes only)."""
        if self.kind != "logistic":
            raise ConfigError(f"probe {self.name!r} is a {self.kind} regression; it has no class probabilities")
        from scipy.special import expit

        return expit(self.decision_function(latents))

    def predict(self, latents: np.ndarray) -> np.ndarray:
        """Predicted class label (logistic) or value (ridge)."""
        score = self.decision_function(latents)
        if self.kind == "logistic":
            return np.where(score > 0, self.classes[1], self.classes[0])
        return score

    # -- direction -------------------------------------------------------------------------
    @property
    def score_per_unit(self) -> float:
        """Change of the score for a step of length 1 along :meth:`direction` (``|coef|``)."""
        return float(np.linalg.norm(self.coef))

    def direction(self, num_ws: int | None = None) -> np.ndarray:
        """The probe's unit normal in latent space, pointing to higher scores (positive class).

        Parameters
        ----------
        num_ws : int, optional
            For a W probe, repeat the 512-vector on this many layers (each row is the unit
            W direction: moving every layer by it moves W by it). For a W+ probe it must equal
            the fitted ``num_ws`` if given.

        Returns
        -------
        ndarray
            W probe: ``(dim,)``, or ``(num_ws, dim)`` when ``num_ws`` is given. W+ probe:
            ``(num_ws, dim)`` with unit Frobenius norm.
        """
        norm = np.linalg.norm(self.coef)
        if not norm > 0:
            raise ModelError(f"probe {self.name!r} has a zero coefficient vector: it defines no direction")
        unit = self.coef / norm
        fitted_ws, dim = self.latent_shape
        if self.space == "w":
            return unit if num_ws is None else np.tile(unit, (int(num_ws), 1))
        if num_ws is not None and int(num_ws) != fitted_ws:
            raise ConfigError(f"probe {self.name!r} was fitted on W+ with {fitted_ws} layers, not {num_ws}")
        return unit.reshape(fitted_ws, dim)

    def layer_shares(self) -> np.ndarray:
        """Share of the direction's squared norm on each W+ layer (uniform for a W probe)."""
        fitted_ws, dim = self.latent_shape
        if self.space == "w":
            return np.full(fitted_ws, 1.0 / fitted_ws)
        sq = (self.coef.reshape(fitted_ws, dim) ** 2).sum(axis=1)
        return sq / sq.sum()

    # -- features --------------------------------------------------------------------------
    @property
    def column(self) -> str:
        """Feature column written by :meth:`apply`: ``probe__<name>``."""
        return f"probe__{self.name}"

    def apply(self, source, out: str | Path | None = None, *, column: str | None = None):
        """Score every image row of a latent table; rows without a latent keep their status.

        Parameters
        ----------
        source : path or pyarrow.Table
            The feature table (or run folder) with the probe's latent column.
        out : path, optional
            Write the result as Parquet (atomically), with the probe in the provenance.
        column : str, optional
            Latent column to read (default: the one the probe was fitted on).

        Returns
        -------
        pyarrow.Table
            ``image_id``, ``subject_id``, ``status``, ``error`` and the features
            ``probe__<name>`` (score) and, for logistic probes, ``probe__<name>_p``
            (probability of the positive class); null where there is no latent.
        """
        import pyarrow as pa

        rows = read_latents(source, column or self.latent_column)
        if tuple(rows.shape) != tuple(self.latent_shape) and self.space == "w+":
            raise DataError(f"{rows.source or 'the table'}: column {rows.column!r} has shape {list(rows.shape)}, "
                            f"the W+ probe {self.name!r} was fitted on {list(self.latent_shape)}")
        if rows.shape[1] != self.latent_shape[1]:
            raise DataError(f"{rows.source or 'the table'}: latent dim {rows.shape[1]} differs from the probe's "
                            f"{self.latent_shape[1]}")
        n = len(rows.ok)
        score = np.full(n, np.nan)
        if rows.ok.any():
            score[rows.ok] = self.decision_function(rows.values[rows.ok])
        error = [None if good else (f"no latent (status {s})" if s != "ok" else "null latent")
                 for good, s in zip(rows.ok, rows.status)]
        status = [s if (good or s != "ok") else "error" for good, s in zip(rows.ok, rows.status)]
        meta = {b"description": f"{self.kind} probe score on {self.space.upper()} of {self.latent_column}: "
                                f"{'logit of ' + repr(self.classes[1]) if self.kind == 'logistic' else 'predicted ' + self.label_column}".encode()}
        fields = [pa.field("image_id", pa.string()), pa.field("subject_id", pa.string()),
                  pa.field("status", pa.string()), pa.field("error", pa.string()),
                  pa.field(self.column, pa.float64(), metadata=meta)]
        arrays = [pa.array(list(rows.image_id), pa.string()), pa.array(list(rows.subject_id), pa.string()),
                  pa.array(status, pa.string()), pa.array(error, pa.string()),
                  pa.array(score, pa.float64(), from_pandas=True)]
        if self.kind == "logistic":
            from scipy.special import expit

            fields.append(pa.field(f"{self.column}_p", pa.float64(), metadata={
                b"description": f"probability of {self.label_column} = {self.classes[1]!r}".encode(),
                b"unit": b"probability", b"range": b"[0.0, 1.0]"}))
            arrays.append(pa.array(expit(score), pa.float64(), from_pandas=True))
        provenance = {"probe": self.describe(), "latents": rows.source, "status_counts": rows.status_counts()}
        table = pa.Table.from_arrays(arrays, schema=pa.schema(fields).with_metadata(
            {b"facefeat": dumps_json(provenance, sort_keys=True).encode()}))
        if out is not None:
            from facefeat.io.tables import write_parquet_atomic

            write_parquet_atomic(table, out)
        return table

    # -- persistence -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-ready description (everything but the coefficients)."""
        return {
            "format": PROBE_FORMAT, "name": self.name, "kind": self.kind, "space": self.space,
            "latent_column": self.latent_column, "latent_shape": list(self.latent_shape),
            "label_column": self.label_column, "classes": self.classes, "intercept": self.intercept,
            "score_per_unit": self.score_per_unit, "metrics": self.metrics, "info": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the probe as one safetensors file (``coef`` float64, JSON description in the
        header metadata), atomically."""
        from safetensors.numpy import save_file

        from facefeat.io.atomic import atomic_output

        path = Path(path)
        with atomic_output(path) as tmp:
            save_file({"coef": np.ascontiguousarray(self.coef, dtype=np.float64)}, tmp,
                      metadata={_METADATA_KEY: dumps_json(self.describe(), sort_keys=True)})
        return path


def load_probe(path: str | Path) -> LinearProbe:
    """Read a probe written by :meth:`LinearProbe.save`.

    Raises
    ------
    ModelError
        Not a facefeat probe file, or its coefficients do not match its description.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"probe file {path} does not exist")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            coef = fh.get_tensor("coef") if "coef" in fh.keys() else None
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a safetensors file ({exc})") from exc
    if _METADATA_KEY not in meta or coef is None:
        raise ModelError(f"{path}: not a facefeat probe (no '{_METADATA_KEY}' metadata / 'coef' tensor)")
    d = json.loads(meta[_METADATA_KEY])
    if d.get("format") != PROBE_FORMAT:
        raise ModelError(f"{path}: probe format {d.get('format')!r} is not {PROBE_FORMAT!r}")
    shape = tuple(int(v) for v in d["latent_shape"])
    expected = shape[1] if d["space"] == "w" else shape[0] * shape[1]
    if coef.shape != (expected,):
        raise ModelError(f"{path}: coef has shape {coef.shape}, expected ({expected},) for {d['space']} "
                         f"on latents {list(shape)}")
    return LinearProbe(name=d["name"], kind=d["kind"], space=d["space"], latent_column=d["latent_column"],
                       latent_shape=shape, label_column=d["label_column"], coef=np.asarray(coef, np.float64),
                       intercept=float(d["intercept"]), classes=d.get("classes"), metrics=d.get("metrics", {}),
                       info=d.get("info", {}))


# -- fitting ---------------------------------------------------------------------------------


def _label_kind(y, column: str, kind: str, positive) -> tuple[str, np.ndarray, list | None]:
    """Decide logistic vs ridge; returns (kind, y as 0/1 or float, [negative, positive])."""
    import pandas as pd

    values = pd.Series(y)
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    uniques = pd.unique(values)
    if len(uniques) < 2:
        only = uniques[0] if len(uniques) else None
        only = only.item() if isinstance(only, np.generic) else only
        raise DataError(
            f"label column {column!r} has a single class ({only!r}) among the {len(values)} subjects that have "
            f"a latent; a probe needs two classes (or varying values)"
        )
    if kind == "auto":
        kind = "ridge" if numeric and len(uniques) > 2 else "logistic"
    if kind == "ridge":
        if not numeric:
            raise DataError(f"label column {column!r} is not numeric ({values.dtype}); a ridge probe needs numbers")
        return "ridge", values.to_numpy(dtype=np.float64), None
    if len(uniques) > 2:
        raise DataError(
            f"label column {column!r} has {len(uniques)} distinct values; a logistic probe is binary: recode it "
            f"into two groups (or use kind='ridge' for a continuous label)"
        )
    ordered = sorted(uniques.tolist(), key=lambda v: (str(type(v)), v))
    if positive is not None:
        match = [u for u in ordered if u == positive or str(u) == str(positive)]
        if not match:
            raise ConfigError(f"positive class {positive!r} is not a value of label column {column!r} ({ordered})")
        pos = match[0]
        neg = ordered[1] if ordered[0] == pos else ordered[0]
    else:
        neg, pos = ordered  # False < True, smaller < larger number, alphabetical for text
    y01 = (values.to_numpy() == pos).astype(np.int64)
    return "logistic", y01, [to_jsonable(neg), to_jsonable(pos)]


@dataclass
class _Linear:
    """A fitted linear model in raw feature units."""

    coef: np.ndarray
    intercept: float
    strength: float


def _prepare(X: np.ndarray, standardize: bool, n_components: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centre (and scale) ``X``, then express it in an orthonormal basis of its row space, or of
    its ``n_components`` leading principal axes.

    Returns ``(Z, basis, mean, scale)`` with ``Z = ((X - mean) / scale) @ basis.T``. An
    L2-penalised linear model's weights lie in the span of the training rows (its gradient is a
    combination of them), so without ``n_components`` fitting on ``Z`` (``n x rank`` instead of
    ``n x p``) gives the same solution, ``w = basis.T @ w_z``, at a fraction of the cost when
    ``p`` (9216 for an 18-layer W+) exceeds the number of subjects. With ``n_components`` the
    model is fitted on the leading principal components (principal-component regression).
    """
    mean = X.mean(axis=0)
    scale = X.std(axis=0) if standardize else np.ones(X.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    Xs = (X - mean) / scale
    n, p = Xs.shape
    if n_components is None and p <= n:
        return Xs, np.eye(p), mean, scale
    if p > n:
        # eigen-decomposition of the n x n Gram matrix: much cheaper than an SVD of n x p
        ev, U = np.linalg.eigh(Xs @ Xs.T)
        keep = ev > ev.max(initial=0.0) * 1e-10
        ev, U = ev[keep], U[:, keep]
        basis = (Xs.T @ U / np.sqrt(ev)).T  # orthonormal rows spanning the rows of Xs
    else:
        ev, V = np.linalg.eigh(Xs.T @ Xs)
        basis = V.T
    order = np.argsort(ev)[::-1]
    if n_components is not None:
        order = order[:int(n_components)]
    basis = basis[order]
    return Xs @ basis.T, basis, mean, scale


def _to_raw(w_z: np.ndarray, b: float, basis: np.ndarray, mean: np.ndarray, scale: np.ndarray,
            strength: float) -> _Linear:
    coef = (basis.T @ w_z) / scale
    return _Linear(coef, float(b - coef @ mean), float(strength))


def _logistic_path(Z: np.ndarray, y: np.ndarray, Cs: Sequence[float], class_weight):
    """Fit along increasing C with warm starts; yields ``(C, model)``."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=Cs[0], max_iter=2000, warm_start=True, class_weight=class_weight)
    for C in Cs:
        model.set_params(C=C)
        model.fit(Z, y)
        yield C, model


def _fit_linear(X: np.ndarray, y: np.ndarray, kind: str, regularization, standardize: bool, inner_cv: int,
                random_state: int, class_weight=None, n_components: int | None = None) -> _Linear:
    """Fit one probe model; ``regularization == "cv"`` picks the strength by inner CV.

    The inner folds reuse this training set's scaling and basis: without ``n_components`` the
    inner optimum lies in the span of its own rows, a subspace of the basis, so the choice is the
    same as with per-fold bases (only the scaling statistics are shared); with principal
    components the inner folds share the axes too (this only affects the choice of strength;
    the outer estimate refits everything on each outer training fold).
    """
    from sklearn.linear_model import Ridge, RidgeCV
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    Z, basis, mean, scale = _prepare(X, standardize, n_components)
    if kind == "ridge":
        model = RidgeCV(alphas=list(RIDGE_ALPHAS)) if regularization == "cv" else Ridge(alpha=float(regularization))
        model.fit(Z, y)
        alpha = float(model.alpha_) if regularization == "cv" else float(regularization)
        return _to_raw(np.ravel(model.coef_), float(model.intercept_), basis, mean, scale, alpha)
    Cs = sorted(LOGISTIC_CS) if regularization == "cv" else [float(regularization)]
    if len(Cs) > 1:
        loss = np.zeros(len(Cs))
        for tr, va in StratifiedKFold(inner_cv, shuffle=True, random_state=random_state).split(Z, y):
            for i, (_, m) in enumerate(_logistic_path(Z[tr], y[tr], Cs, class_weight)):
                loss[i] += log_loss(y[va], m.predict_proba(Z[va])[:, 1], labels=[0, 1])
        Cs = [Cs[int(np.argmin(loss))]]
    ((C, model),) = list(_logistic_path(Z, y, Cs, class_weight))
    return _to_raw(np.ravel(model.coef_), float(np.ravel(model.intercept_)[0]), basis, mean, scale, C)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


def fit_probe(latents, labels, *, label_column: str, latent_column: str | None = None, space: str = "w",
              kind: str = "auto", positive=None, regularization: float | str = "cv", standardize: bool = True,
              cv: int = 5, random_state: int = 0, id_column: str = "subject_id", name: str | None = None,
              class_weight: str | None = None, n_components: int | None = None,
              blas_threads: int | None = 1) -> LinearProbe:
    """Fit a linear probe of a label on StyleGAN latents.

    Parameters
    ----------
    latents : path, pyarrow.Table or LatentRows
        Feature table (or run folder) with a latent column; see :func:`read_latents`.
    labels : path, DataFrame or Series
        Label table keyed by subject id; see :func:`read_labels`.
    label_column : str
        Column of ``labels`` to predict.
    latent_column : str, optional
        Default: the table's only latent column.
    space : {"w", "w+"}, default "w"
        ``"w"``: the latent averaged over its layers; ``"w+"``: all layers flattened.
    kind : {"auto", "logistic", "ridge"}
        ``"auto"``: logistic for two distinct values (numbers, booleans or text), ridge for a
        numeric label with more.
    positive : optional
        The label value of the positive class (logistic). Default: the larger number, ``True``,
        or the alphabetically last text. The score and the direction point towards it.
    regularization : float or "cv", default "cv"
        ``"cv"`` picks the strength by inner cross-validation on the training folds (logistic:
        C over :data:`LOGISTIC_CS` by log-loss, stratified K-fold; ridge: alpha over
        :data:`RIDGE_ALPHAS` by efficient leave-one-out); a number fixes C (logistic) or alpha
        (ridge).
    standardize : bool, default True
        Standardise each latent feature before fitting (the penalty then treats features
        alike); the stored coefficients are converted back to raw latent units.
    cv : int, default 5
        Outer folds of the accuracy / R2 estimate (stratified for logistic); reduced to the
        smallest class size when that is smaller (recorded in the metrics).
    random_state : int
        Fold shuffling seed.
    id_column : str
        Subject id column of the label table.
    name : str, optional
        Probe name (feature column ``probe__<name>``); default the label column, sanitised.
    class_weight : {None, "balanced"}
        Passed to the logistic regression.
    n_components : int, optional
        Fit on this many leading principal components of the (standardised) latents instead of
        all coordinates (principal-component regression), computed inside every training
        fold; the direction is mapped back to latent space. With a few hundred subjects and
        512 (W) or thousands (W+) of coordinates, the normal's components along directions the
        cohort barely varies in are mostly noise; restricting to the leading axes (20-50) gives
        a far more stable direction (see ``cv_direction_cosine``). Default: all coordinates.
    blas_threads : int or None, default 1
        BLAS threads while fitting (``None``: leave the library default). The problems are
        small (subjects x rank), where threads cost more than they bring.

    Returns
    -------
    LinearProbe
        ``metrics`` holds, for logistic probes, ``cv_accuracy`` (mean and ``_sd`` over folds),
        ``cv_balanced_accuracy``, ``cv_roc_auc``, ``baseline_accuracy`` (majority class); for
        ridge probes ``cv_r2``, ``cv_rmse``, ``cv_pearson_r`` (pooled out-of-fold); plus
        ``cv_folds``, ``n`` and, for logistic, ``n_per_class``. ``info["counts"]`` reports the
        latent rows per status, labelled subjects without a latent (with examples), subjects with a
        latent but no label, and missing labels.

    Raises
    ------
    DataError
        A label column with one class (named), a non-latent column, no subjects with both a
        latent and a label, too few subjects per class.
    """
    if space not in SPACES:
        raise ConfigError(f"space must be one of {SPACES}, not {space!r}")
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, not {kind!r}")
    if regularization != "cv" and not (isinstance(regularization, (int, float)) and regularization > 0):
        raise ConfigError(f"regularization must be 'cv' or a positive number, not {regularization!r}")
    if int(cv) < 2:
        raise ConfigError(f"cv must be >= 2 folds, not {cv!r}")
    if n_components is not None and int(n_components) < 1:
        raise ConfigError(f"n_components must be a positive integer or None, not {n_components!r}")

    rows = latents if isinstance(latents, LatentRows) else read_latents(latents, latent_column)
    if space == "w+" and rows.shape[0] == 1:
        raise ConfigError(f"column {rows.column!r} holds W codes (shape [{rows.shape[1]}]); space 'w+' needs "
                          f"[num_ws, {rows.shape[1]}] latents; use space='w'")
    y_all = read_labels(labels, label_column, id_column=id_column)
    subjects, values, n_images = rows.by_subject()
    in_latents = set(subjects.tolist())
    labelled = set(y_all.index)
    without_latent = sorted(labelled - in_latents)
    unlabelled = sorted(in_latents - labelled)
    counts = {
        "latent_rows": rows.status_counts(),
        "subjects_with_latent": int(len(subjects)),
        "subjects_with_several_images": int(np.sum(n_images > 1)),
        "labelled_subjects": int(len(labelled)),
        "labelled_without_latent": len(without_latent),
        "labelled_without_latent_examples": without_latent[:10],
        "with_latent_without_label": len(unlabelled),
        "missing_labels": int(y_all.attrs.get("n_missing", 0)),
    }
    keep = np.array([s in labelled for s in subjects])
    if not keep.any():
        raise DataError(
            f"no subject has both a latent ({rows.column!r}, {len(subjects)} subjects, e.g. "
            f"{subjects[:3].tolist()}) and a label ({label_column!r}, {len(labelled)} subjects, e.g. "
            f"{sorted(labelled)[:3]}); check that both tables use the same subject ids"
        )
    X = _features(values[keep], space)
    y_raw = y_all.loc[subjects[keep]]
    kind, y, classes = _label_kind(y_raw.reset_index(drop=True), label_column, kind, positive)

    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(y)
    folds = int(cv)
    metrics: dict[str, Any] = {"n": n}
    if kind == "logistic":
        per_class = np.bincount(y, minlength=2)
        metrics["n_per_class"] = {str(classes[0]): int(per_class[0]), str(classes[1]): int(per_class[1])}
        if per_class.min() < 2:
            small = classes[int(np.argmin(per_class))]
            raise DataError(f"label column {label_column!r}: class {small!r} has {int(per_class.min())} subject(s) "
                            f"with a latent; a probe needs at least 2 per class (better 20+)")
        folds = min(folds, int(per_class.min()))
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=random_state).split(X, y))
    else:
        if n < 4:
            raise DataError(f"label column {label_column!r}: only {n} subjects with a latent and a label")
        folds = min(folds, n // 2)
        splits = list(KFold(folds, shuffle=True, random_state=random_state).split(X))

    def fit(rows_x, rows_y, n_inner) -> _Linear:
        return _fit_linear(rows_x, rows_y, kind, regularization, standardize, n_inner, random_state, class_weight,
                           n_components)

    import contextlib
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    # many small dense problems: multi-threaded BLAS only adds overhead (20x slower measured on a
    # busy 2-core machine), so the fits run with `blas_threads` threads
    limit = threadpool_limits(limits=int(blas_threads)) if blas_threads else contextlib.nullcontext()
    with warnings.catch_warnings(), limit:
        warnings.simplefilter("ignore", ConvergenceWarning)
        fold_models, oof = [], np.full(n, np.nan)
        per_fold: dict[str, list[float]] = {"accuracy": [], "balanced_accuracy": [], "roc_auc": []}
        for tr, te in splits:
            n_inner = 2 if kind == "ridge" else max(2, min(5, int(np.bincount(y[tr], minlength=2).min())))
            m = fit(X[tr], y[tr], n_inner)
            fold_models.append(m)
            oof[te] = X[te] @ m.coef + m.intercept
            if kind == "logistic":
                per_fold["accuracy"].append(accuracy_score(y[te], oof[te] > 0))
                per_fold["balanced_accuracy"].append(balanced_accuracy_score(y[te], oof[te] > 0))
                per_fold["roc_auc"].append(roc_auc_score(y[te], oof[te]) if len(set(y[te])) == 2 else np.nan)
        final = fit(X, y, max(2, min(5, folds)))
    if kind == "logistic":
        for key, vals in per_fold.items():
            metrics[f"cv_{key}"] = float(np.nanmean(vals))
            metrics[f"cv_{key}_sd"] = float(np.nanstd(vals, ddof=1)) if len(vals) > 1 else 0.0
        metrics["baseline_accuracy"] = float(per_class.max() / n)
    else:
        ss_res = float(np.sum((y - oof) ** 2))
        ss_tot = float(np.sum((y - y.mean()) ** 2))
        metrics["cv_r2"] = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
        metrics["cv_rmse"] = float(np.sqrt(ss_res / n))
        metrics["cv_pearson_r"] = float(np.corrcoef(y, oof)[0, 1]) if np.std(oof) > 0 else float("nan")
        metrics["label_sd"] = float(np.std(y, ddof=1))
    metrics["cv_folds"] = folds
    # how well the data pin the direction down: cosine of each fold's normal with the final one
    cosines = [_cosine(m.coef, final.coef) for m in fold_models]
    metrics["cv_direction_cosine"] = float(np.nanmean(cosines))
    metrics["cv_direction_cosine_min"] = float(np.nanmin(cosines))
    coef, intercept, chosen = final.coef, final.intercept, final.strength

    from facefeat._version import __version__

    info = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "facefeat_version": __version__,
        "sources": {"latents": rows.source, "labels": y_all.attrs.get("source")},
        "counts": counts,
        "hyperparameters": {"regularization": regularization, "chosen_strength": chosen,
                            "strength_meaning": "C (inverse)" if kind == "logistic" else "alpha",
                            "standardize": standardize, "cv": int(cv), "random_state": random_state,
                            "class_weight": class_weight, "id_column": id_column, "n_components": n_components,
                            "grid": list(LOGISTIC_CS if kind == "logistic" else RIDGE_ALPHAS)
                            if regularization == "cv" else None},
        "score": "logit of the positive class" if kind == "logistic" else f"predicted {label_column}",
        "subject_aggregation": "mean of the subject's image latents",
    }
    for key in ("latents", "labels"):
        src = info["sources"][key]
        if src and Path(src).is_file():
            from facefeat.io.hashing import sha256_file

            info["sources"][f"{key}_sha256"] = sha256_file(src)
    probe_name = _sanitize(name or label_column)
    if not _NAME_RE.match(probe_name):  # pragma: no cover - _sanitize guarantees it
        raise ConfigError(f"probe name {probe_name!r} must match {_NAME_RE.pattern}")
    return LinearProbe(name=probe_name, kind=kind, space=space, latent_column=rows.column,
                       latent_shape=tuple(rows.shape), label_column=label_column, coef=coef, intercept=intercept,
                       classes=classes, metrics=metrics, info=info)
