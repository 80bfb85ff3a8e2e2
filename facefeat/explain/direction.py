"""Latent directions: the "health attribute" of a linear survival model, and probe directions.

A linear Cox model (``coxph`` / ``coxnet``) fitted on a StyleGAN latent predicts a log-hazard
that is an affine function of the latent ``x`` (flattened row-major, ``[num_ws, dim]``):

    eta(x) = g . x + const

whatever affine preprocessing sits in front of the model: standardisation and PCA are undone by
the chain rule, ``g = diag(1 / scale) @ components.T @ beta`` (the model coefficients ``beta``
back-projected through the PCA loadings and divided by the column scales; see
:meth:`facefeat.survival.FeatureBlock.linear_map`). Clinical covariates in the same model are
held fixed during an edit, so they only add to the constant. With late fusion the latent
block's model is used and the chain continues through the stacking Cox model: its coefficient
for the block divided by the spread of the block's out-of-fold risk.

Units
-----
:func:`health_direction` returns ``v = g / |g|^2`` (``per="log_hazard"``, the default), so that
``g . v = 1``: **one unit step along v raises the predicted log-hazard by exactly 1**, i.e.
multiplies the hazard by ``e`` (relative hazard 2.718). Positive steps are *sicker* (higher
risk), negative steps *healthier*. ``per="unit_norm"`` returns ``g / |g|`` instead (one unit is
a step of Euclidean length 1 in latent space, which moves the log-hazard by ``|g|``, stored as
:attr:`LatentDirection.per_unit`).

W and W+
--------
A model fitted on W codes (``[1, dim]`` latents) gives a W direction (``space="w"``): editing a
W+ latent adds the same vector to every layer (:meth:`LatentDirection.broadcast`). A model on
W+ latents gives one row per layer (``space="wplus"``); :meth:`LatentDirection.layer_shares` is
the share of the direction's squared norm on each layer.

Non-linear models
-----------------
Random survival forests, gradient boosting and DeepSurv have no single direction. For them
:func:`gradient_direction` gives a *local* one: central finite differences of the model's
``predict`` around one subject's features, normalised the same way; it holds near that subject
only (the edit's risk must then be read from ``predict`` on each frame, never extrapolated).

Public API: :class:`LatentDirection`, :func:`health_direction`, :func:`gradient_direction`,
:func:`load_direction`, :func:`latent_block_columns`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.io.atomic import atomic_output
from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.io.jsonsafe import dumps_json

__all__ = [
    "DIRECTION_FORMAT",
    "LINEAR_MODELS",
    "LatentDirection",
    "gradient_direction",
    "health_direction",
    "latent_block_columns",
    "load_direction",
]

#: Format tag stored in every direction file.
DIRECTION_FORMAT = "facefeat-latent-direction/1"
#: Model classes whose ``predict`` is ``X @ coef_`` (what a direction needs).
LINEAR_MODELS = ("CoxPHSurvivalAnalysis", "CoxnetCV")
PER = ("log_hazard", "unit_norm")
_FLAT = re.compile(r"^(?P<col>.+)_(?P<i>\d+)$")


@dataclass
class LatentDirection:
    """A direction in a StyleGAN latent space, with its units and provenance.

    Attributes
    ----------
    vector : ndarray of shape (num_ws, dim)
        The step of one unit; ``num_ws == 1`` for a W direction (applied to every layer).
    gradient : ndarray of shape (num_ws, dim)
        Gradient of the target (log-hazard or probe score) with respect to the latent the model
        reads, so a step ``s * vector`` changes the target by ``s * (gradient . vector)``.
    space : {"w", "wplus"}
    target : str
        What the direction moves: ``"log_hazard"`` (survival model) or ``"probe:<name>"``.
    per_unit : float
        Change of the target for one unit step (1.0 for ``per="log_hazard"``).
    name : str
    provenance : dict
        Model directory and its sha256, latent column, block, model kind, generator
        checkpoint, creation time.
    """

    vector: np.ndarray
    gradient: np.ndarray
    space: str
    target: str = "log_hazard"
    per_unit: float = 1.0
    name: str = "health"
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vector = np.atleast_2d(np.asarray(self.vector, dtype=np.float64))
        self.gradient = np.atleast_2d(np.asarray(self.gradient, dtype=np.float64))
        if self.vector.shape != self.gradient.shape or self.vector.ndim != 2:
            raise ValueError(f"vector {self.vector.shape} and gradient {self.gradient.shape} must be (num_ws, dim)")
        if self.space not in ("w", "wplus"):
            raise ValueError(f"space must be 'w' or 'wplus', not {self.space!r}")

    # -- shape ------------------------------------------------------------------------------
    @property
    def num_ws(self) -> int:
        """Rows of the latent the direction was derived on (1 for W)."""
        return int(self.vector.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vector.shape[1])

    @property
    def norm(self) -> float:
        """Euclidean length of one unit step."""
        return float(np.linalg.norm(self.vector))

    def broadcast(self, num_ws: int) -> np.ndarray:
        """The step as a W+ array ``(num_ws, dim)``: a W direction repeated on every layer."""
        num_ws = int(num_ws)
        if self.space == "w":
            return np.repeat(self.vector, num_ws, axis=0)
        if num_ws != self.num_ws:
            raise ConfigError(f"direction {self.name!r} has {self.num_ws} W+ layers; the generator has {num_ws}. "
                              "Use the generator the latents were extracted with.")
        return self.vector.copy()

    def layer_shares(self, num_ws: int | None = None) -> np.ndarray:
        """Share of the step's squared norm on each W+ layer (uniform for a W direction)."""
        if self.space == "w":
            n = int(num_ws or 1)
            return np.full(n, 1.0 / n)
        sq = (self.vector ** 2).sum(axis=1)
        total = sq.sum()
        return sq / total if total > 0 else np.full(self.num_ws, np.nan)

    def effect(self, step: float = 1.0) -> float:
        """Change of the target for a step ``step`` along the whole direction."""
        return float(step * np.sum(self.gradient * self.vector))

    # -- persistence ------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-ready description (everything but the arrays)."""
        return {
            "format": DIRECTION_FORMAT, "name": self.name, "space": self.space, "target": self.target,
            "per_unit": self.per_unit, "shape": list(self.vector.shape), "norm": self.norm,
            "layer_shares": [float(v) for v in self.layer_shares()],
            "units": (f"one unit step changes the {self.target} by {self.per_unit:g}"
                      + (" (hazard x e)" if self.target == "log_hazard" and self.per_unit == 1.0 else "")),
            "provenance": self.provenance,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (``vector``, ``gradient``, ``meta`` = JSON text), atomically.

        The file loads with ``numpy.load(path, allow_pickle=False)``; :func:`load_direction`
        reads it back.
        """
        path = Path(path)
        if path.suffix != ".npz":
            raise ConfigError(f"direction files end in .npz, not {path.name!r}")
        with atomic_output(path, suffix=".npz") as tmp:
            np.savez(tmp, vector=self.vector, gradient=self.gradient,
                     meta=np.array(dumps_json(self.describe(), sort_keys=True)))
        return path

    # -- other sources ----------------------------------------------------------------------
    @classmethod
    def from_probe(cls, probe, *, per: str = "log_hazard") -> "LatentDirection":
        """The direction of a :class:`~facefeat.explain.probes.LinearProbe` (attribute edits).

        One unit step raises the probe's score (logit of the positive class, or the predicted
        label for a ridge probe) by 1 (``per="log_hazard"``, named for symmetry with
        :func:`health_direction`: the normalisation is the same) or is a step of length 1
        (``per="unit_norm"``). A W probe (fitted on the layer mean) gives a W direction: adding
        it to every layer moves the layer mean by it.
        """
        _check_per(per)
        num_ws, dim = probe.latent_shape
        g = np.asarray(probe.coef, dtype=np.float64)
        g = g.reshape(1, dim) if probe.space == "w" else g.reshape(num_ws, dim)
        vector, per_unit = _normalise(g, per, what=f"probe {probe.name!r}")
        prov = {"probe": probe.describe(), "latent_column": probe.latent_column, "created": _now()}
        return cls(vector=vector, gradient=g, space="w" if probe.space == "w" else "wplus",
                   target=f"probe:{probe.name}", per_unit=per_unit, name=probe.name, provenance=prov)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_per(per: str) -> None:
    if per not in PER:
        raise ConfigError(f"per must be one of {PER}, not {per!r}")


def _normalise(g: np.ndarray, per: str, *, what: str) -> tuple[np.ndarray, float]:
    sq = float(np.sum(g * g))
    if not sq > 0:
        raise ModelError(f"{what}: all latent coefficients are zero, so it defines no direction (a penalised "
                         "model may have shrunk them all; lower the penalty or check the fit)")
    if per == "log_hazard":
        return g / sq, 1.0
    return g / np.sqrt(sq), float(np.sqrt(sq))


def load_direction(path: str | os.PathLike) -> LatentDirection:
    """Read a direction written by :meth:`LatentDirection.save`.

    Raises
    ------
    InputError
        No such file.
    ModelError
        Not a facefeat direction file, or its arrays do not match its description.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"direction file {path} does not exist; write one with 'facefeat explain direction'")
    try:
        with np.load(path, allow_pickle=False) as data:
            vector, gradient, meta = data["vector"], data["gradient"], json.loads(str(data["meta"]))
    except (KeyError, ValueError, OSError) as exc:
        raise ModelError(f"{path}: not a facefeat direction file ({exc})") from exc
    if meta.get("format") != DIRECTION_FORMAT:
        raise ModelError(f"{path}: format {meta.get('format')!r} is not {DIRECTION_FORMAT!r}")
    if list(vector.shape) != list(meta["shape"]):
        raise ModelError(f"{path}: vector has shape {list(vector.shape)}, its description says {meta['shape']}")
    return LatentDirection(vector=vector, gradient=gradient, space=meta["space"], target=meta["target"],
                           per_unit=float(meta["per_unit"]), name=meta["name"], provenance=meta.get("provenance", {}))


# -- survival models ---------------------------------------------------------------------------


def _is_latent_name(name: str) -> bool:
    feature = name.split("__", 1)[1] if "__" in name else ""
    return feature.startswith("latent")


def latent_block_columns(meta: dict | None, feature_names, *, column: str | None = None,
                         latent_shape: tuple[int, int] | None = None) -> tuple[str, tuple[int, int], list[str]]:
    """The latent column a model was fitted on: ``(column, (num_ws, dim), flat column names)``.

    Parameters
    ----------
    meta : dict or None
        ``model.json`` of a saved model (its ``schema.feature_tables`` lists the embedding
        columns and their shapes). ``None`` for an in-memory estimator: the latent is then found
        from the flattened names ``<extractor>__latent_<i>`` in ``feature_names``.
    feature_names : sequence of str
        Input columns of the estimator.
    column : str, optional
        The latent column, when the model has several.
    latent_shape : (num_ws, dim), optional
        Shape of the latent when ``meta`` does not say (default: ``[k / 512, 512]`` when ``k``
        is a multiple of 512, else ``[1, k]``).

    Raises
    ------
    ConfigError
        No latent column among the model's inputs (the message lists the blocks' columns), or
        several and none chosen.
    """
    names = [str(c) for c in feature_names]
    embeddings: dict[str, dict] = {}
    if meta is not None:
        for table in (meta.get("schema", {}).get("feature_tables") or []):
            for col, spec in (table.get("columns") or {}).items():
                if spec.get("type") == "embedding":
                    embeddings[col] = {**spec, "file": table.get("file")}
    else:
        groups: dict[str, int] = {}
        for n in names:
            m = _FLAT.match(n)
            if m:
                groups[m.group("col")] = groups.get(m.group("col"), 0) + 1
        embeddings = {c: {"size": k, "shape": None} for c, k in groups.items() if _is_latent_name(c)}
    latents = {c: s for c, s in embeddings.items() if _is_latent_name(c)}
    if column is not None:
        if column not in embeddings:
            raise ConfigError(f"column {column!r} is not an embedding the model was fitted on; latent columns: "
                              f"{sorted(latents) or 'none'}")
        latents = {column: embeddings[column]}
    if not latents:
        blocks = (meta or {}).get("schema", {}).get("blocks") or {}
        listing = "; ".join(f"{b}: {_short(cols)}" for b, cols in blocks.items()) or _short(names)
        raise ConfigError(
            "the model was not fitted on StyleGAN latents (no '<extractor>__latent' embedding column among its "
            f"inputs), so it has no latent direction. Its blocks: {listing}. Fit the model on the stylegan2 or "
            "e4e extractor's table ('facefeat fit --features RUN' with the latent table) to get a health attribute."
        )
    if len(latents) > 1:
        raise ConfigError(f"the model uses several latent columns {sorted(latents)}; choose one (column=... / --column)")
    col, spec = next(iter(latents.items()))
    size = int(spec["size"])
    from facefeat.io.features import flat_columns

    flat = flat_columns(col, size)
    if latent_shape is not None:
        shape = tuple(int(v) for v in latent_shape)
    elif spec.get("shape"):
        shape = tuple(int(v) for v in spec["shape"])
        shape = (1, shape[0]) if len(shape) == 1 else shape
    else:
        shape = (size // 512, 512) if size % 512 == 0 else (1, size)
    if len(shape) != 2 or shape[0] * shape[1] != size:
        raise ConfigError(f"latent shape {list(shape)} does not hold the {size} values of column {col!r}")
    return col, (int(shape[0]), int(shape[1])), flat


def _short(cols, n: int = 6) -> str:
    cols = list(cols)
    return "[" + ", ".join(cols[:n]) + (f", ... ({len(cols)} columns)" if len(cols) > n else "") + "]"


def _model_kind(model) -> str:
    return type(model).__name__


def _check_linear(model, where: str) -> np.ndarray:
    kind = _model_kind(model)
    coef = getattr(model, "coef_", None)
    if kind not in LINEAR_MODELS or coef is None or np.ndim(coef) != 1:
        raise ConfigError(
            f"{where} is a {kind}: a latent direction needs a linear Cox model (coxph or coxnet), whose "
            "log-hazard is coefficients . features. Fit one with 'facefeat fit --model coxph' (or coxnet), or use "
            "a local, gradient-based direction around one subject: facefeat.explain.direction.gradient_direction("
            "estimator, features_row) (finite differences of predict; valid near that subject only)."
        )
    return np.asarray(coef, dtype=np.float64)


def _block_gradient(blk, coef: np.ndarray, flat: list[str]) -> np.ndarray | None:
    """Gradient of ``coef . blk.transform(x)`` with respect to the latent columns ``flat``."""
    cols = list(blk.numeric_columns_)
    pos = {c: i for i, c in enumerate(cols)}
    hit = [pos.get(c) for c in flat]
    if all(h is None for h in hit):
        return None
    lm = blk.linear_map()
    if lm is None:
        raise ConfigError("the latent shares a feature block with categorical columns; put the latent in its own "
                          "block (the default of 'facefeat fit')")
    grad_cols = lm[1] @ coef
    out = np.zeros(len(flat))
    for j, h in enumerate(hit):
        if h is not None:  # columns dropped as constant have no influence
            out[j] = grad_cols[h]
    return out


def _latent_gradient(est, flat: list[str], block: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Gradient of ``est.predict`` with respect to the flattened latent columns."""
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(est, "y_train_")
    if est.fusion == "late":
        names = list(est.block_models_)
        found = []
        for j, name in enumerate(names):
            blk, model = est.block_models_[name]
            if block is not None and name != block:
                continue
            if not any(c in set(blk.numeric_columns_) for c in flat):
                continue
            coef = _check_linear(model, f"the model of block {name!r}")
            g = _block_gradient(blk, coef, flat)
            w = np.asarray(est.combiner_.coef_, dtype=np.float64).ravel()
            factor = (w[j] if est.combiner == "stack" else w[0] * float(est.fusion_weights_.iloc[j])) / est.risk_scale_[j]
            found.append((name, g * factor, _model_kind(model), factor))
        if block is not None and block not in names:
            raise ConfigError(f"no block {block!r} in the model; its blocks are {names}")
        if not found:
            raise ConfigError(f"no block of the model holds the latent columns; blocks: {names}")
        if len(found) > 1:
            raise ConfigError(f"several blocks hold latent columns ({[f[0] for f in found]}); choose one with block=")
        name, g, kind, factor = found[0]
        return g, {"fusion": "late", "block": name, "model": kind, "combiner": est.combiner,
                   "fusion_factor": float(factor)}
    coef = _check_linear(est.model_, "the survival model")
    g = np.zeros(len(flat))
    start, used = 0, []
    for name, blk in est.blocks_.items():
        k = len(blk.get_feature_names_out())
        if block is None or name == block:
            part = _block_gradient(blk, coef[start:start + k], flat)
            if part is not None:
                g += part
                used.append(name)
        start += k
    if not used:
        raise ConfigError(f"no block of the model holds the latent columns; blocks: {list(est.blocks_)}")
    return g, {"fusion": "early", "block": used[0] if len(used) == 1 else used, "model": _model_kind(est.model_)}


def _generator_from_meta(meta: dict | None, column: str) -> dict[str, Any] | None:
    """The generator checkpoint recorded in the latent table's provenance (via model.json)."""
    if not meta:
        return None
    tables = meta.get("schema", {}).get("feature_tables") or []
    kv = meta.get("provenance", {}).get("feature_table_metadata") or []
    for table, md in zip(tables, kv):
        if column not in (table.get("columns") or {}) or not md:
            continue
        return generator_from_provenance(md.get("facefeat"), source=table.get("file"))
    return None


def generator_from_provenance(prov, *, source: str | None = None) -> dict[str, Any] | None:
    """``{"checkpoint", "network", "sha256", "table"}`` from a feature table's provenance.

    ``prov`` is the table's provenance dict (:func:`facefeat.io.tables.read_provenance`) or
    its JSON text; ``None`` when it names no generator checkpoint.
    """
    if isinstance(prov, (str, bytes)):
        try:
            prov = json.loads(prov)
        except ValueError:
            return None
    if not isinstance(prov, dict):
        return None
    cfg = (prov.get("extractor") or {}).get("config") or {}
    if not cfg.get("checkpoint"):
        return None
    return {"checkpoint": cfg["checkpoint"], "network": cfg.get("network", "G_ema"),
            "sha256": (prov.get("models_sha256") or {}).get("checkpoint"), "table": source,
            "extractor": (prov.get("extractor") or {}).get("name")}


def _load(source, *, trust: bool = False) -> tuple[Any, dict | None, dict[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        from facefeat.survival.persist import load_model

        est, meta = load_model(source, trust=trust)
        return est, meta, {"model_dir": str(source), "model_sha256": meta.get("model_sha256")}
    if isinstance(source, tuple) and len(source) == 2:
        est, meta = source
        return est, meta, {"model_sha256": (meta or {}).get("model_sha256")}
    return source, None, {}


def health_direction(estimator_or_model_dir, *, column: str | None = None, block: str | None = None,
                     per: str = "log_hazard", metadata: dict | None = None,
                     latent_shape: tuple[int, int] | None = None,
                     generator: dict[str, Any] | str | None = None, trust: bool = False) -> LatentDirection:
    """The health attribute of a fitted linear survival model: a direction in latent space.

    Parameters
    ----------
    estimator_or_model_dir : SurvivalEstimator, path, or (estimator, metadata)
        A fitted :class:`~facefeat.survival.SurvivalEstimator` or a directory written by
        ``facefeat fit`` / :func:`~facefeat.survival.save_model`.
    column : str, optional
        The latent column (e.g. ``"stylegan2__latent"``) when the model has several.
    block : str, optional
        The block holding the latent, when several could (late fusion: the latent block's model
        is used; the other blocks stay fixed).
    per : {"log_hazard", "unit_norm"}, default "log_hazard"
        ``log_hazard``: ``v = g / |g|^2``, one unit raises the predicted log-hazard by exactly 1;
        ``unit_norm``: ``v = g / |g|``, one unit is a step of length 1 (raising the log-hazard by
        ``|g|``, :attr:`LatentDirection.per_unit`).
    metadata : dict, optional
        ``model.json`` contents for an in-memory estimator (gives the latent's shape and the
        generator).
    latent_shape : (num_ws, dim), optional
        Override the latent's shape (only needed without metadata for non-512 latents).
    generator : dict or str, optional
        Generator checkpoint to record (default: the one in the latent table's provenance).
    trust : bool, default False
        Allow an old pickle model directory (see :func:`facefeat.survival.persist.load_model`).

    Returns
    -------
    LatentDirection
        ``gradient`` is ``g`` reshaped to ``[num_ws, dim]`` (``[1, dim]`` for W).

    Raises
    ------
    ConfigError
        A non-linear model (rsf, gbsa, deepsurv: use :func:`gradient_direction`), a model not
        fitted on latents (the blocks are listed), an unknown block or column.
    """
    _check_per(per)
    est, meta, prov = _load(estimator_or_model_dir, trust=trust)
    meta = meta if metadata is None else metadata
    if meta is not None and metadata is not None:
        prov.setdefault("model_sha256", meta.get("model_sha256"))
    names = getattr(est, "feature_names_in_", None)
    if names is None:
        raise ConfigError("the estimator was fitted on an array without column names; fit it on a DataFrame of "
                          "named features (flattened latents '<extractor>__latent_<i>')")
    col, shape, flat = latent_block_columns(meta, names, column=column, latent_shape=latent_shape)
    missing = [c for c in flat if c not in set(map(str, names))]
    if missing:
        raise ConfigError(f"latent column(s) {missing[:3]} are not among the estimator's inputs")
    g, how = _latent_gradient(est, flat, block)
    g = g.reshape(shape)
    vector, per_unit = _normalise(g, per, what="the survival model")
    gen = generator if isinstance(generator, dict) else (
        {"checkpoint": str(generator)} if generator else _generator_from_meta(meta, col))
    prov.update({"latent_column": col, "latent_shape": list(shape), **how, "generator": gen, "per": per,
                 "gradient_norm": float(np.linalg.norm(g)), "created": _now(),
                 "normalisation": "v = g / |g|^2 (g . v = 1)" if per == "log_hazard" else "v = g / |g|"})
    return LatentDirection(vector=vector, gradient=g, space="w" if shape[0] == 1 else "wplus", target="log_hazard",
                           per_unit=per_unit, name="health", provenance=prov)


def gradient_direction(estimator, features_row, *, column: str | None = None, metadata: dict | None = None,
                       eps: float = 1e-3, per: str = "log_hazard",
                       latent_shape: tuple[int, int] | None = None) -> LatentDirection:
    """A local direction for any model: finite differences of ``predict`` around one subject.

    Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` over every latent
    coordinate, computed in one batched ``predict`` call (``2 * num_ws * dim`` rows). For tree
    ensembles (rsf, gbsa) the risk is piecewise constant, so ``eps`` must be large enough to
    cross split points (try the latent's spread, e.g. 0.05-0.5); DeepSurv is smooth.

    Parameters
    ----------
    estimator : SurvivalEstimator
        Fitted on a DataFrame with the flattened latent columns.
    features_row : pandas.Series or one-row DataFrame
        The subject's full feature row (latent, other features, clinical covariates), as the
        model reads it; everything but the latent stays fixed.

    Returns
    -------
    LatentDirection
        Normalised like :func:`health_direction` (``g . v = 1`` for ``per="log_hazard"``), with
        ``provenance["local"] = True``; valid near this subject only.
    """
    import pandas as pd

    _check_per(per)
    row = features_row.to_frame().T if isinstance(features_row, pd.Series) else features_row
    if not isinstance(row, pd.DataFrame) or len(row) != 1:
        raise ConfigError("features_row must be a Series or a one-row DataFrame of the model's input columns")
    col, shape, flat = latent_block_columns(metadata, row.columns, column=column, latent_shape=latent_shape)
    k = len(flat)
    base = row[list(row.columns)]
    rep = pd.concat([base] * (2 * k), ignore_index=True)
    idx = rep.columns.get_indexer(flat)
    vals = rep.iloc[:, idx].to_numpy(dtype=np.float64)
    vals[np.arange(k), np.arange(k)] += eps
    vals[k + np.arange(k), np.arange(k)] -= eps
    rep.iloc[:, idx] = vals
    risk = np.asarray(estimator.predict(rep), dtype=np.float64)
    g = ((risk[:k] - risk[k:]) / (2 * eps)).reshape(shape)
    vector, per_unit = _normalise(g, per, what=f"the local gradient (eps={eps:g})")
    model = getattr(estimator, "model_", None)
    prov = {"latent_column": col, "latent_shape": list(shape), "local": True, "eps": eps,
            "subject": str(row.index[0]), "model": _model_kind(model) if model is not None else None,
            "per": per, "gradient_norm": float(np.linalg.norm(g)), "created": _now()}
    return LatentDirection(vector=vector, gradient=g, space="w" if shape[0] == 1 else "wplus", target="log_hazard",
                           per_unit=per_unit, name="local_gradient", provenance=prov)
