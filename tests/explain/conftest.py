"""A small survival study on the 32 px test generator, in the real on-disk layout.

Latents are sampled from the tiny rosinality generator (``tests/data/stylegan2``: W is 64-d, W+
has 8 rows), jittered per layer so W+ is a genuine W+ code, and written as a
``stylegan2.parquet`` feature table the way the engine writes one (key columns, engine
diagnostics, a ``stylegan2__latent`` fixed-size list with its ``shape`` in the field metadata,
provenance naming the generator checkpoint). Survival times are simulated from a known linear
log-hazard in W+ that lies in the span of the leading principal axes of the standardised
latents, so a Cox model with scaling and PCA can recover it. Models are fitted with the real
``facefeat fit`` command.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "data" / "stylegan2" / "rosinality_tiny_converted_ckpt.pt"
N, NUM_WS, DIM, PCS = 240, 8, 64, 8


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def write_latent_table(path: Path, latents: np.ndarray, subjects, *, status=None, checkpoint=TINY,
                       extractor: str = "stylegan2") -> Path:
    """A feature table in the engine's layout with a ``<extractor>__latent`` column."""
    import pyarrow as pa

    from facefeat.engine import embedding_array, embedding_field
    from facefeat.io.hashing import sha256_file
    from facefeat.io.tables import table_schema, write_parquet_atomic

    n = len(latents)
    status = list(status) if status is not None else ["ok"] * n
    shape = list(latents.shape[1:])
    ext_schema = pa.schema([embedding_field(f"{extractor}__latent", shape, "test latent"),
                            pa.field(f"diag__{extractor}__mse", pa.float64())])
    prov = {"extractor": {"name": extractor, "version": "1.0.0",
                          "config": {"checkpoint": str(checkpoint), "network": "G_ema",
                                     "space": "wplus" if shape[0] > 1 else "w"}},
            "models_sha256": {"checkpoint": sha256_file(checkpoint)}}
    schema = table_schema(ext_schema, prov)
    ok = np.array([s == "ok" for s in status])
    lat = embedding_array(np.asarray(latents, np.float32).reshape(n, -1))
    lat = pa.FixedSizeListArray.from_arrays(lat.values, lat.type.list_size, mask=pa.array(~ok))
    cols = {
        "image_id": [hashlib.sha256(f"{i}{s}".encode()).hexdigest() for i, s in enumerate(subjects)],
        "subject_id": [str(s) for s in subjects], "path": [f"photos/{s}_{i}.jpg" for i, s in enumerate(subjects)],
        "status": status, "error": [None if s == "ok" else f"{s}: test" for s in status],
    }
    arrays = []
    for f in schema:
        if f.name in cols:
            arrays.append(pa.array(cols[f.name], f.type))
        elif f.name == f"{extractor}__latent":
            arrays.append(lat)
        elif f.name == f"diag__{extractor}__mse":
            arrays.append(pa.array(np.where(ok, 0.01, np.nan), f.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(n, f.type))
    return write_parquet_atomic(pa.Table.from_arrays(arrays, schema=schema), path)


def _fit(args: list[str]) -> None:
    from facefeat.cli import main

    assert main(["fit", *args]) == 0


@pytest.fixture(scope="session")
def tiny_G():
    _threads()
    from facefeat.models.checkpoints import load_generator

    return load_generator(TINY)


@pytest.fixture(scope="session")
def study(tmp_path_factory, tiny_G):
    """Feature tables, clinical table, the planted direction and fitted models."""
    import torch
    from sklearn.decomposition import PCA

    root = tmp_path_factory.mktemp("explain_study")
    rng = np.random.default_rng(3)
    with torch.no_grad():
        w = tiny_G.mapping(torch.from_numpy(rng.normal(size=(N, tiny_G.z_dim)).astype(np.float32))).numpy()
    w = w.astype(np.float64)
    spread = w[:, 0].std(axis=0).mean()
    wplus = w + 0.3 * spread * rng.normal(size=w.shape)
    flat = wplus.reshape(N, -1)
    # planted log-hazard: a combination of the leading principal axes of the standardised
    # latents, mapped back to raw latent units (what scaling + PCA can represent exactly)
    mean, sd = flat.mean(axis=0), flat.std(axis=0)
    pca = PCA(PCS).fit((flat - mean) / sd)
    c = np.zeros(PCS)
    c[:4] = [1.0, -0.7, 0.5, 0.3]
    beta = (pca.components_.T @ c) / sd
    eta = (flat - mean) @ beta
    beta *= 1.2 / eta.std()
    eta = (flat - mean) @ beta
    t = -np.log(rng.uniform(size=N)) / (0.05 * np.exp(eta))
    cens = rng.exponential(scale=np.quantile(t, 0.9) * 2, size=N)
    subjects = [f"P{i:03d}" for i in range(N)]
    clinical = pd.DataFrame({"subject_id": subjects, "time": np.minimum(t, cens).round(4),
                             "event": (t <= cens).astype(int), "age": rng.normal(60, 8, N).round(1),
                             "sex": rng.choice(["F", "M"], N)})
    # the clinical table also names a subject without a photo; the latent table has one failed
    # photo (P_FAIL: no_face, null latent), also in the clinical table
    clinical = pd.concat([clinical, pd.DataFrame({"subject_id": ["P_FAIL", "P_NOPHOTO"], "time": [5.0, 6.0],
                                                  "event": [1, 0], "age": [50.0, 51.0], "sex": ["F", "M"]})])
    clin_path = root / "clinical.csv"
    clinical.to_csv(clin_path, index=False)
    run = root / "run_wplus"
    status = ["ok"] * N + ["no_face"]
    write_latent_table(run / "stylegan2.parquet", np.concatenate([wplus, np.zeros((1, NUM_WS, DIM))]),
                       subjects + ["P_FAIL"], status=status)
    run_w = root / "run_w"
    write_latent_table(run_w / "stylegan2.parquet", w[:, :1], subjects)

    models = {}
    common = ["--clinical", str(clin_path), "--time", "time", "--event", "event"]
    models["coxph"] = root / "m_coxph"
    _fit(["--features", str(run), *common, "--covariates", "age,sex", "--model", "coxph", "--pca", str(PCS),
          "--out", str(models["coxph"])])
    models["coxnet"] = root / "m_coxnet"
    _fit(["--features", str(run), *common, "--covariates", "none", "--model", "coxnet", "--pca", str(PCS),
          "--param", "l1_ratio=0.5", "--out", str(models["coxnet"])])
    models["w"] = root / "m_w"
    _fit(["--features", str(run_w), *common, "--covariates", "none", "--model", "coxph", "--param", "alpha=1.0",
          "--out", str(models["w"])])
    return {"root": root, "run": run, "run_w": run_w, "clinical": clin_path, "beta": beta.reshape(NUM_WS, DIM),
            "models": models, "wplus": wplus, "w": w[:, :1], "subjects": subjects}


@pytest.fixture(scope="session")
def late_model(study):
    path = study["root"] / "m_late"
    _fit(["--features", str(study["run"]), "--clinical", str(study["clinical"]), "--covariates", "age",
          "--model", "coxph", "--pca", str(PCS), "--fusion", "late", "--out", str(path)])
    return path


@pytest.fixture(scope="session")
def rsf_model(study):
    path = study["root"] / "m_rsf"
    _fit(["--features", str(study["run"]), "--clinical", str(study["clinical"]), "--covariates", "none",
          "--model", "rsf", "--pca", "4", "--param", "n_estimators=5", "--out", str(path)])
    return path


@pytest.fixture(scope="session")
def scalar_model(study):
    """A model on scalar (non-latent) features: a landmarks-like table."""
    from tests.survival.conftest import write_feature_table

    rng = np.random.default_rng(5)
    run = study["root"] / "run_scalar"
    run.mkdir()
    feats = pd.DataFrame({"jaw_width": rng.normal(size=N), "eye_ratio": rng.normal(size=N)})
    write_feature_table(run / "landmarks.parquet", feats, subject_ids=study["subjects"], extractor="landmarks")
    path = study["root"] / "m_scalar"
    _fit(["--features", str(run), "--clinical", str(study["clinical"]), "--covariates", "age", "--model", "coxph",
          "--out", str(path)])
    return path
