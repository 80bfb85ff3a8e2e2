"""Latent-space linear probes (facefeat.explain.probes) on synthetic latents.

The latents imitate StyleGAN's W: a low-rank structure (24 axes carry most of the variance)
plus small isotropic noise, repeated on 4 layers with small per-layer noise, stored as a
``stylegan2__latent`` fixed-size list column with field metadata ``shape`` ``[4, 512]``. Labels
are known linear functions of the latent, so the probe's normal must recover the planted
direction.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facefeat.errors import ConfigError, DataError, InputError, ModelError
from facefeat.explain.probes import (
    PROBE_FORMAT,
    LinearProbe,
    _fit_linear,
    fit_probe,
    latent_columns,
    load_probe,
    read_labels,
    read_latents,
)

NUM_WS, DIM, RANK = 4, 512, 24


def _cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def latent_table(values: np.ndarray, subjects, status=None, *, column="stylegan2__latent",
                 extra: dict | None = None) -> pa.Table:
    """A feature table as the engine writes it: keys, a latent column, optional extra columns.

    Rows whose status is not ok get a null latent."""
    n = len(values)
    status = list(status) if status is not None else ["ok"] * n
    flat = np.asarray(values, np.float32).reshape(n, -1)
    mask = np.array([s != "ok" for s in status])
    arr = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1], mask=pa.array(mask))
    shape = list(values.shape[1:])
    t = pa.table({"image_id": [f"img{i:04d}" for i in range(n)], "subject_id": list(subjects),
                  "path": [f"/photos/{i}.jpg" for i in range(n)], "status": status,
                  "error": [None if s == "ok" else "no face found" for s in status]})
    t = t.append_column(pa.field(column, arr.type, metadata={b"shape": json.dumps(shape).encode()}), arr)
    for name, col in (extra or {}).items():
        t = t.append_column(name, col)
    return t


@pytest.fixture(scope="module")
def cohort():
    """300 subjects (20 photographed twice), 10 failed images, latents and planted labels."""
    rng = np.random.default_rng(7)
    n = 300
    A = rng.normal(size=(DIM, RANK)) / np.sqrt(RANK)
    mu = rng.normal(size=DIM) * 0.2
    w = mu + rng.normal(size=(n, RANK)) @ A.T + 0.05 * rng.normal(size=(n, DIM))
    beta = A @ rng.normal(size=RANK)
    beta /= np.linalg.norm(beta)
    proj = (w - mu) @ beta
    z = proj / proj.std()
    subjects = np.array([f"P{i:03d}" for i in range(n)])
    labels = pd.DataFrame({
        "subject_id": subjects,
        "smoker": (z + 0.2 * rng.normal(size=n) > 0).astype(int),
        "age": 60 + 8 * z + 1.0 * rng.normal(size=n),
        "group": np.where(z > 0, "high", "low"),
    })
    # images: every subject once, 20 of them twice (a second photo with a little jitter)
    rows_subj = list(subjects) + list(subjects[:20])
    rows_w = np.concatenate([w, w[:20] + 0.02 * rng.normal(size=(20, DIM))])
    wplus = rows_w[:, None, :] + 0.05 * rng.normal(size=(len(rows_w), NUM_WS, DIM))
    # 10 extra images of 10 other subjects failed (no face): no latent, and those subjects are
    # labelled, so they must be counted as labelled without a latent
    failed = [f"Q{i:02d}" for i in range(10)]
    values = np.concatenate([wplus, np.zeros((10, NUM_WS, DIM))])
    status = ["ok"] * len(wplus) + ["no_face"] * 10
    table = latent_table(values, rows_subj + failed, status, extra={
        "stylegan2__psnr_scalar": pa.array(rng.normal(size=len(values))),
        "face_descriptor__embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(rng.normal(size=len(values) * 8).astype(np.float32)), 8),
    })
    extra = pd.DataFrame({"subject_id": failed + ["NOPHOTO1", "NOPHOTO2"], "smoker": [0, 1] * 6,
                          "age": [50.0] * 12, "group": ["low"] * 12})
    labels = pd.concat([labels, extra], ignore_index=True)
    return {"table": table, "labels": labels, "beta": beta, "mu": mu, "w": w, "A": A, "subjects": subjects}


# -- reading ---------------------------------------------------------------------------------


def test_read_latents_finds_the_column_and_marks_failed_rows(cohort, tmp_path):
    table = cohort["table"]
    assert latent_columns(table.schema) == ["stylegan2__latent"]
    rows = read_latents(table)
    assert rows.column == "stylegan2__latent" and rows.shape == (NUM_WS, DIM)
    assert rows.values.shape == (330, NUM_WS, DIM)
    assert rows.ok.sum() == 320 and rows.status_counts() == {"ok": 320, "no_face": 10}
    subjects, means, counts = rows.by_subject()
    assert len(subjects) == 300 and counts.max() == 2 and counts.sum() == 320
    # the first subject has two photos: its mean latent is the mean of both rows
    np.testing.assert_allclose(means[0], rows.values[[0, 300]].mean(axis=0))
    # from a run folder holding several tables
    run = tmp_path / "run"
    run.mkdir()
    pq.write_table(table, run / "stylegan2.parquet")
    pq.write_table(pa.table({"image_id": ["a"], "subject_id": ["b"], "status": ["ok"], "landmarks__fwhr": [1.9]}),
                   run / "landmarks.parquet")
    again = read_latents(run)
    assert again.source == str(run / "stylegan2.parquet")
    np.testing.assert_array_equal(again.ok, rows.ok)


def test_non_latent_columns_are_refused_with_a_clear_message(cohort):
    table = cohort["table"]
    with pytest.raises(DataError, match=r"scalar feature.*not a StyleGAN latent.*stylegan2__latent"):
        read_latents(table, "stylegan2__psnr_scalar")
    with pytest.raises(DataError, match=r"'face_descriptor__embedding' is an embedding, not a StyleGAN latent"):
        read_latents(table, "face_descriptor__embedding")
    with pytest.raises(DataError, match=r"no column 'e4e__latent'.*stylegan2__latent"):
        read_latents(table, "e4e__latent")
    with pytest.raises(DataError, match="no latent column"):
        read_latents(pa.table({"image_id": ["a"], "subject_id": ["b"], "landmarks__fwhr": [1.9]}))
    with pytest.raises(InputError, match="no such"):
        read_latents(Path("/nonexistent/run"))
    # fitting through such a column gives the same error
    with pytest.raises(DataError, match="not a StyleGAN latent"):
        fit_probe(table, cohort["labels"], label_column="smoker", latent_column="face_descriptor__embedding")


def test_read_labels_from_csv_and_conflicts(tmp_path):
    csv = tmp_path / "clinical.csv"
    csv.write_text("subject_id,smoker,age\nP1,yes,61\nP2,no,NA\nP3,yes,70\nP3,yes,70\n")
    s = read_labels(csv, "smoker")
    assert list(s.index) == ["P1", "P2", "P3"] and s.attrs["source"] == str(csv)
    age = read_labels(csv, "age")
    assert list(age.index) == ["P1", "P3"] and age.attrs["n_missing"] == 1
    with pytest.raises(DataError, match="no column 'stage'"):
        read_labels(csv, "stage")
    bad = pd.DataFrame({"subject_id": ["P1", "P1"], "smoker": ["yes", "no"]})
    with pytest.raises(DataError, match="conflicting"):
        read_labels(bad, "smoker")
    with pytest.raises(DataError, match="patient"):
        read_labels(pd.DataFrame({"patient": ["P1"], "smoker": [1]}), "smoker")
    assert read_labels(pd.DataFrame({"patient": ["P1"], "smoker": [1]}), "smoker", id_column="patient").iloc[0] == 1


# -- fitting: the planted direction is recovered --------------------------------------------


def test_logistic_probe_on_w_recovers_the_direction(cohort):
    probe = fit_probe(cohort["table"], cohort["labels"], label_column="smoker", space="w", n_components=32)
    assert probe.kind == "logistic" and probe.space == "w" and probe.classes == [0, 1]
    cos = _cos(probe.direction(), cohort["beta"])
    assert cos > 0.9, cos
    m = probe.metrics
    assert m["n"] == 300 and m["cv_folds"] == 5 and m["cv_roc_auc"] > 0.9 and m["cv_accuracy"] > 0.8
    assert m["cv_accuracy"] > m["baseline_accuracy"] + 0.2 and m["cv_direction_cosine"] > 0.9
    counts = probe.info["counts"]
    # 10 failed-image subjects + 2 without photos are labelled but have no latent
    assert counts["labelled_without_latent"] == 12 and "NOPHOTO1" in counts["labelled_without_latent_examples"]
    assert counts["latent_rows"] == {"ok": 320, "no_face": 10}
    assert counts["subjects_with_several_images"] == 20 and counts["with_latent_without_label"] == 0


def test_ridge_probe_on_wplus_recovers_the_direction(cohort):
    probe = fit_probe(cohort["table"], cohort["labels"], label_column="age", space="w+", n_components=32)
    assert probe.kind == "ridge" and probe.classes is None
    d = probe.direction()
    assert d.shape == (NUM_WS, DIM) and np.linalg.norm(d) == pytest.approx(1.0)
    truth = np.tile(cohort["beta"], (NUM_WS, 1))
    assert _cos(d, truth) > 0.9
    assert probe.metrics["cv_r2"] > 0.9 and probe.metrics["cv_rmse"] < 3.0
    # the label is a function of W, so every layer carries about the same share
    np.testing.assert_allclose(probe.layer_shares(), 0.25, atol=0.05)


def test_default_probe_uses_every_coordinate(cohort):
    # without principal components the probe is InterFaceGAN's plain linear model on all 512
    # coordinates; with 300 subjects its normal is noisier but still points the right way
    probe = fit_probe(cohort["table"], cohort["labels"], label_column="smoker", space="w")
    assert _cos(probe.direction(), cohort["beta"]) > 0.85
    assert probe.info["hyperparameters"]["n_components"] is None


def test_wplus_probe_finds_the_layer_that_carries_the_label():
    rng = np.random.default_rng(3)
    n = 300
    A = rng.normal(size=(DIM, RANK)) / np.sqrt(RANK)
    layers = np.stack([rng.normal(size=(n, RANK)) @ A.T + 0.05 * rng.normal(size=(n, DIM))
                       for _ in range(NUM_WS)], axis=1)
    beta = A @ rng.normal(size=RANK)
    beta /= np.linalg.norm(beta)
    y = 10 * layers[:, 1] @ beta + rng.normal(size=n)  # only layer 1 matters
    subjects = [f"S{i}" for i in range(n)]
    table = latent_table(layers, subjects)
    probe = fit_probe(table, pd.Series(y, index=subjects, name="score"), label_column="score", space="w+",
                      n_components=NUM_WS * RANK)  # each layer varies on its own 24 axes
    shares = probe.layer_shares()
    assert np.argmax(shares) == 1 and shares[1] > 0.6 and np.delete(shares, 1).max() < 0.15
    assert _cos(probe.direction()[1], beta) > 0.9


def test_text_labels_and_the_positive_class(cohort):
    table, labels = cohort["table"], cohort["labels"]
    high = fit_probe(table, labels, label_column="group", n_components=32, regularization=1.0, positive="high")
    low = fit_probe(table, labels, label_column="group", n_components=32, regularization=1.0, positive="low")
    assert high.classes == ["low", "high"] and low.classes == ["high", "low"]
    assert _cos(high.direction(), cohort["beta"]) > 0.9
    np.testing.assert_allclose(low.direction(), -high.direction(), atol=1e-6)
    # default: alphabetically last is positive
    assert fit_probe(table, labels, label_column="group", n_components=32, regularization=1.0).classes == ["high", "low"]
    with pytest.raises(ConfigError, match="positive class 'medium'"):
        fit_probe(table, labels, label_column="group", positive="medium")


def test_row_space_reduction_gives_the_full_solution():
    """Fitting on the row-space coordinates equals fitting on all p > n coordinates."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 200))
    y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    Xs = StandardScaler().fit_transform(X)
    sc = X.std(axis=0)
    ref = LogisticRegression(C=0.05, max_iter=10000, tol=1e-10).fit(Xs, y)
    ours = _fit_linear(X, y, "logistic", 0.05, True, 2, 0)
    np.testing.assert_allclose(ours.coef * sc, ref.coef_[0], atol=2e-4)
    ref_r = Ridge(alpha=3.0).fit(Xs, y.astype(float))
    ours_r = _fit_linear(X, y.astype(float), "ridge", 3.0, True, 2, 0)
    np.testing.assert_allclose(ours_r.coef * sc, ref_r.coef_, atol=1e-8)
    np.testing.assert_allclose(X @ ours_r.coef + ours_r.intercept, ref_r.predict(Xs), atol=1e-8)


# -- the probe as a function, a file and a feature ------------------------------------------


@pytest.fixture(scope="module")
def probe(cohort) -> LinearProbe:
    return fit_probe(cohort["table"], cohort["labels"], label_column="smoker", space="w", n_components=32)


def test_direction_and_score_per_unit(probe, cohort):
    w = cohort["w"][:5][:, None, :].repeat(NUM_WS, axis=1)
    d = probe.direction(num_ws=NUM_WS)
    assert d.shape == (NUM_WS, DIM)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
    # a unit step along the (per-layer) direction moves the score by score_per_unit
    step = probe.decision_function(w + d) - probe.decision_function(w)
    np.testing.assert_allclose(step, probe.score_per_unit, rtol=1e-9)
    # W probes score W codes directly too
    np.testing.assert_allclose(probe.decision_function(cohort["w"][:5]), probe.decision_function(w), rtol=1e-9)
    p = probe.predict_proba(w)
    assert np.all((p > 0) & (p < 1))
    np.testing.assert_array_equal(probe.predict(w), np.where(p > 0.5, 1, 0))
    with pytest.raises(DataError, match="cannot score"):
        probe.decision_function(np.zeros((2, NUM_WS, 100)))


def test_save_and_load_round_trip(probe, cohort, tmp_path):
    path = probe.save(tmp_path / "probes" / "smoker.safetensors")
    back = load_probe(path)
    assert back.describe() == json.loads(json.dumps(probe.describe(), default=str))
    w = cohort["w"][:10]
    np.testing.assert_array_equal(back.decision_function(w), probe.decision_function(w))
    np.testing.assert_array_equal(back.direction(NUM_WS), probe.direction(NUM_WS))
    d = back.describe()
    assert d["format"] == PROBE_FORMAT and d["latent_column"] == "stylegan2__latent" and d["space"] == "w"
    assert d["label_column"] == "smoker" and d["metrics"]["n"] == 300
    assert d["info"]["hyperparameters"]["chosen_strength"] > 0 and d["info"]["facefeat_version"]
    # bad files
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(ModelError, match="not a safetensors"):
        load_probe(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file

    save_file({"coef": np.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelError, match="not a facefeat probe"):
        load_probe(tmp_path / "other.safetensors")
    with pytest.raises(InputError):
        load_probe(tmp_path / "missing.safetensors")


def test_apply_scores_every_image_and_keeps_failed_rows(probe, cohort, tmp_path):
    src = tmp_path / "stylegan2.parquet"
    pq.write_table(cohort["table"], src)
    out = probe.apply(src, tmp_path / "probe_smoker.parquet")
    assert out.num_rows == 330 and out.column_names == ["image_id", "subject_id", "status", "error",
                                                         "probe__smoker", "probe__smoker_p"]
    back = pq.read_table(tmp_path / "probe_smoker.parquet")
    assert back.equals(out)
    df = back.to_pandas()
    failed = df["status"] != "ok"
    assert failed.sum() == 10 and df.loc[failed, "probe__smoker"].isna().all()
    assert df.loc[failed, "error"].str.contains("no_face").all()
    rows = read_latents(src)
    np.testing.assert_allclose(df.loc[~failed, "probe__smoker"], probe.decision_function(rows.values[rows.ok]))
    assert ((df.loc[~failed, "probe__smoker_p"] > 0.5) == (df.loc[~failed, "probe__smoker"] > 0)).all()
    prov = json.loads(back.schema.metadata[b"facefeat"])
    assert prov["probe"]["name"] == "smoker" and prov["status_counts"] == {"ok": 320, "no_face": 10}
    # the applied scores separate the labels (in-sample)
    lab = cohort["labels"].set_index("subject_id")["smoker"]
    ok = df[~failed].drop_duplicates("subject_id")
    assert ((ok["probe__smoker"] > 0).astype(int).to_numpy() == lab.loc[ok["subject_id"]].to_numpy()).mean() > 0.85


def test_apply_refuses_a_latent_of_another_shape(cohort):
    probe = fit_probe(cohort["table"], cohort["labels"], label_column="age", space="w+", n_components=8,
                      regularization=1.0)
    other = latent_table(np.zeros((3, 2, DIM)), ["a", "b", "c"])
    with pytest.raises(DataError, match=r"shape \[2, 512\]"):
        probe.apply(other)
    with pytest.raises(ConfigError, match="no class probabilities"):
        probe.predict_proba(np.zeros((1, NUM_WS, DIM)))
    with pytest.raises(ConfigError, match="4 layers"):
        probe.direction(num_ws=18)


# -- bad labels ------------------------------------------------------------------------------


def test_one_class_label_names_the_column(cohort):
    labels = cohort["labels"].assign(all_smokers=1)
    with pytest.raises(DataError, match=r"label column 'all_smokers' has a single class \(1\)"):
        fit_probe(cohort["table"], labels, label_column="all_smokers")


def test_other_bad_labels(cohort):
    table, labels = cohort["table"], cohort["labels"]
    three = labels.assign(stage=np.array(["I", "II", "III"])[np.arange(len(labels)) % 3])
    with pytest.raises(DataError, match="3 distinct values"):
        fit_probe(table, three, label_column="stage")
    with pytest.raises(DataError, match="not numeric"):
        fit_probe(table, labels, label_column="group", kind="ridge")
    one_member = labels.assign(rare=(labels["subject_id"] == "P000").astype(int))
    with pytest.raises(DataError, match="class 1 has 1 subject"):
        fit_probe(table, one_member, label_column="rare")
    strangers = pd.DataFrame({"subject_id": ["X1", "X2", "X3"], "smoker": [0, 1, 0]})
    with pytest.raises(DataError, match="no subject has both a latent"):
        fit_probe(table, strangers, label_column="smoker")
    with pytest.raises(ConfigError, match="space"):
        fit_probe(table, labels, label_column="smoker", space="z")
    with pytest.raises(ConfigError, match="regularization"):
        fit_probe(table, labels, label_column="smoker", regularization=-1)
    w_only = latent_table(np.zeros((4, 1, 8)), ["a", "b", "c", "d"])
    with pytest.raises(ConfigError, match="space 'w\\+' needs"):
        fit_probe(w_only, pd.Series([0, 1, 0, 1], index=list("abcd"), name="y"), label_column="y", space="w+")
