"""Shared fixtures: real data sets shipped with scikit-survival, and synthetic feature tables
written in the engine's Parquet layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def write_feature_table(
    path: Path, features: pd.DataFrame, *, subject_ids, extractor: str = "ext", embedding: np.ndarray | None = None,
    status=None, extra_columns: dict | None = None,
) -> Path:
    """Write ``features`` (one row per image) as a facefeat feature table.

    Columns become ``<extractor>__<name>`` floats; ``embedding`` (n, k) becomes a fixed-size
    list<float32> column ``<extractor>__latent`` with ``shape`` metadata; a ``diag__`` column
    is added to check that it is ignored.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(features)
    ids = [hashlib.sha256(f"{extractor}{i}{s}".encode()).hexdigest() for i, s in enumerate(subject_ids)]
    status = list(status) if status is not None else ["ok"] * n
    cols = {
        "image_id": pa.array(ids), "subject_id": pa.array([str(s) for s in subject_ids]),
        "path": pa.array([f"photos/{s}_{i}.jpg" for i, s in enumerate(subject_ids)]),
        "status": pa.array(status), "error": pa.array([None if s == "ok" else f"{s} detected" for s in status], pa.string()),
    }
    fields = [pa.field(k, v.type) for k, v in cols.items()]
    arrays = list(cols.values())
    for c in features.columns:
        vals = features[c].to_numpy(dtype=float).copy()
        vals[np.asarray(status) != "ok"] = np.nan
        fields.append(pa.field(f"{extractor}__{c}", pa.float64()))
        arrays.append(pa.array(vals, pa.float64()))
    if embedding is not None:
        k = embedding.shape[1]
        flat = pa.array(embedding.astype(np.float32).ravel(), pa.float32())
        arr = pa.FixedSizeListArray.from_arrays(flat, k)
        fields.append(pa.field(f"{extractor}__latent", arr.type, metadata={"shape": json.dumps([k])}))
        arrays.append(arr)
    for name, vals in (extra_columns or {}).items():
        fields.append(pa.field(name, pa.array(vals).type))
        arrays.append(pa.array(vals))
    fields.append(pa.field(f"diag__{extractor}__score", pa.float64()))
    arrays.append(pa.array(np.linspace(0.5, 1, n)))
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata={"facefeat": json.dumps({"extractor": extractor})}))
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="session")
def gbsg2():
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    return X, y


@pytest.fixture
def gbsg2_split_files(tmp_path, gbsg2):
    """GBSG2 as a clinical CSV (age, menostat, tgrade, horTh + outcome) and a feature table
    (tsize, pnodes, progrec, estrec as image features) in the engine layout."""
    X, y = gbsg2
    ids = [f"P{i:04d}" for i in range(len(X))]
    clin = pd.DataFrame({"subject_id": ids, "time": y["time"], "event": y["cens"].astype(int),
                         "age": X["age"], "menostat": X["menostat"].astype(str), "tgrade": X["tgrade"].astype(str),
                         "horTh": X["horTh"].astype(str)})
    clin_path = tmp_path / "clinical.csv"
    clin.to_csv(clin_path, index=False)
    run = tmp_path / "run"
    run.mkdir()
    feats = np.log1p(X[["tsize", "pnodes", "progrec", "estrec"]].astype(float))
    write_feature_table(run / "tumour.parquet", feats, subject_ids=ids, extractor="tumour")
    return clin_path, run, ids


def synthetic(n: int = 200, p: int = 5, seed: int = 0, censor: float = 0.3):
    """A Cox-generated data set with known coefficients."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.linspace(1.0, -0.5, p)
    t = rng.exponential(1 / np.exp(X @ beta)) * 100 + 0.1
    c = rng.exponential(100 / censor, n)
    event = t <= c
    time = np.minimum(t, c)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = event, time
    return X, y
