"""A small real study for the report tests: W latents of the tiny test generator written as the
``stylegan2`` table of an extraction run (the engine's Parquet layout and provenance), a clinical
table with survival times planted along a direction in W, and a model fitted and saved by
``facefeat fit``.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "tests" / "data" / "stylegan2" / "rosinality_tiny_converted_ckpt.pt"
NASTY_ID = '<script>alert("x")</script>&P\'1'


def write_latent_run(run: Path, ids: list[str], latents: np.ndarray, status: list[str], *,
                     checkpoint: str = str(GENERATOR), extractor: str = "stylegan2", column: str = "latent") -> Path:
    """Write ``<run>/<extractor>.parquet`` as the engine does (keys, engine diagnostics, the
    extractor's latent column with its shape, provenance)."""
    import pyarrow as pa

    from facefeat.engine.extractor import embedding_array, embedding_field
    from facefeat.io.tables import ENGINE_DIAG_FIELDS, table_schema, write_parquet_atomic

    n = len(ids)
    shape = [1, latents.shape[1]] if latents.ndim == 2 else list(latents.shape[1:])
    ext_schema = pa.schema([embedding_field(f"{extractor}__{column}", shape, "StyleGAN2 W latent"),
                            pa.field(f"diag__{extractor}__loss", pa.float32())])
    counts = {s: status.count(s) for s in ("ok", "no_face", "multiple_faces", "unreadable", "too_large", "error")}
    prov = {
        "facefeat_version": "0.1.0", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "extractor": {"name": extractor, "version": "1.0.0", "config": {"checkpoint": checkpoint, "space": "w", "steps": 50},
                      "plugin": "facefeat_builtins.stylegan2", "distribution": "facefeat", "distribution_version": "0.1.0"},
        "models_sha256": {"generator": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()
                          if Path(checkpoint).is_file() else None},
        "preprocessing": {"face": {"detector": "hog"}, "align": {"sizes": [32]}},
        "input": {"source": "photos/", "manifest_sha256": hashlib.sha256("".join(ids).encode()).hexdigest(),
                  "n_images": n + 1, "duplicates": [{"path": "photos/0001_copy.jpg", "duplicate_of": "photos/0001.jpg"}]},
        "run": {"batch_size": 8, "jobs": 1, "device": "cpu", "extractors": [extractor]},
        "status_counts": counts,
    }
    schema = table_schema(ext_schema, prov)
    ok = np.array([s == "ok" for s in status])
    lat = embedding_array(latents)
    lat = pa.array(lat.to_pylist(), type=lat.type, mask=~ok)
    cols = {
        "image_id": pa.array([hashlib.sha256(f"img{i}{s}".encode()).hexdigest() for i, s in enumerate(ids)]),
        "subject_id": pa.array(ids),
        "path": pa.array([f"photos/{i:04d}.jpg" for i in range(n)]),
        "status": pa.array(status),
        "error": pa.array([None if s == "ok" else f"{s}: simulated failure" for s in status], pa.string()),
    }
    for f in ENGINE_DIAG_FIELDS:
        cols[f.name] = pa.nulls(n, f.type)
    cols[f"{extractor}__{column}"] = lat
    cols[f"diag__{extractor}__loss"] = pa.array(np.where(ok, 0.05, np.nan).astype(np.float32), mask=~ok)
    table = pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)
    run.mkdir(parents=True, exist_ok=True)
    return write_parquet_atomic(table, run / f"{extractor}.parquet")


def make_study(root: Path, *, n: int = 90, seed: int = 0, model: str = "coxph", params=("alpha=1.0",),
               with_age: bool = True, extractor: str = "stylegan2", column: str = "latent",
               covariates: str = "none", fusion: str = "early", checkpoint: str = str(GENERATOR),
               wplus: bool = False) -> dict[str, Path]:
    """Build the study under ``root``: ``run/``, ``clinical.csv``, ``model/``.

    Subjects P000..; one has an id full of HTML metacharacters; three images failed
    (``no_face``, ``unreadable``, ``multiple_faces``); two clinical subjects have no photo.
    """
    import torch

    from facefeat.models.checkpoints import load_generator

    rng = np.random.default_rng(seed)
    G = load_generator(GENERATOR)
    with torch.no_grad():
        z = torch.from_numpy(rng.standard_normal((n, G.z_dim)).astype(np.float32))
        ws = G.mapping(z).numpy()  # [n, num_ws, w_dim], every row the same W
    w = ws[:, 0]
    if wplus:  # W+ codes: each layer moved a little on its own, as projection in W+ gives
        ws = ws + 0.3 * ws.std() * rng.standard_normal(ws.shape).astype(np.float32)
    ids = [f"P{i:03d}" for i in range(n)]
    ids[5] = NASTY_ID
    status = ["ok"] * n
    for i, st in ((7, "no_face"), (11, "unreadable"), (13, "multiple_faces")):
        if i < n:
            status[i] = st
    run = root / "run"
    write_latent_run(run, ids, ws if wplus else w, status, extractor=extractor, column=column, checkpoint=checkpoint)
    # survival planted along a random unit direction of standardised W
    direction = rng.standard_normal(w.shape[1])
    direction /= np.linalg.norm(direction)
    score = ((w - w.mean(0)) / (w.std(0) + 1e-8)) @ direction
    lin = 1.2 * score / score.std()
    t = rng.exponential(20 * np.exp(-lin))
    c = rng.uniform(5, 60, n)
    clin = pd.DataFrame({"subject_id": ids, "os_months": np.round(np.minimum(t, c), 2) + 0.01,
                         "death": (t <= c).astype(int)})
    if with_age:
        clin["age"] = np.round(60 + 8 * rng.standard_normal(n) + 3 * lin, 1)
    extra = pd.DataFrame({"subject_id": ["X900", "X901"], "os_months": [12.0, 30.0], "death": [1, 0]})
    if with_age:
        extra["age"] = [55.0, 70.0]
    clin = pd.concat([clin, extra], ignore_index=True)
    clinical = root / "clinical.csv"
    clin.to_csv(clinical, index=False)
    out = root / "model"
    fit_with(run, clinical, out, model=model, params=params, covariates=covariates, fusion=fusion)
    return {"run": run, "clinical": clinical, "model": out, "root": root}


def fit_with(run: Path, clinical: Path, out: Path, *, model: str, params, covariates: str, fusion: str = "early") -> Path:
    """``facefeat fit`` with the study's column names."""
    from facefeat.survival import cli as survival_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    survival_cli.add_commands(sub)
    argv = ["fit", "--features", str(run), "--clinical", str(clinical), "--time", "os_months", "--event", "death",
            "--covariates", covariates, "--model", model, "--fusion", fusion, "--out", str(out)]
    for p in params:
        argv += ["--param", p]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    return out
