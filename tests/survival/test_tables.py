import numpy as np
import pandas as pd
import pytest

from facefeat.errors import ConfigError, DataError
from facefeat.survival import DataReport, aggregate_images, load_feature_table, load_survival_data, read_clinical

from .conftest import write_feature_table


def _feats(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})


def test_reader_keeps_ok_rows_flattens_embeddings_and_ignores_diagnostics(tmp_path):
    emb = np.arange(12, dtype=float).reshape(4, 3)
    write_feature_table(tmp_path / "e.parquet", _feats(4), subject_ids=["s1", "s2", "s3", "s4"], extractor="e",
                        embedding=emb, status=["ok", "no_face", "ok", "unreadable"])
    rep = DataReport()
    df = load_feature_table(tmp_path, report=rep)
    assert df["subject_id"].tolist() == ["s1", "s3"]
    assert [c for c in df.columns if c.startswith("e__latent")] == ["e__latent_0000", "e__latent_0001", "e__latent_0002"]
    np.testing.assert_allclose(df[["e__latent_0000", "e__latent_0001", "e__latent_0002"]].to_numpy(), emb[[0, 2]])
    assert not any(c.startswith("diag__") for c in df.columns)
    assert df.attrs["feature_columns"] == ["e__a", "e__b", "e__latent_0000", "e__latent_0001", "e__latent_0002"]
    item = rep.items[0]
    assert item.count == 2 and "no_face: 1" in item.message and "unreadable: 1" in item.message
    schema = df.attrs["feature_schema"][0]
    assert schema["columns"]["e__latent"] == {"type": "embedding", "size": 3, "shape": [3]}


def test_two_tables_join_on_image_and_drop_partial_failures(tmp_path):
    subj = ["s1", "s2", "s3"]
    write_feature_table(tmp_path / "a.parquet", _feats(3), subject_ids=subj, extractor="a")
    write_feature_table(tmp_path / "b.parquet", _feats(3, 1), subject_ids=subj, extractor="a", status=["ok", "error", "ok"])
    # same image ids (hash of extractor + index + subject) in both tables: rename the second's features
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "b.parquet")
    t = t.rename_columns([c.replace("a__", "b__") if c.startswith(("a__", "diag__a__")) else c for c in t.column_names])
    pq.write_table(t, tmp_path / "b.parquet")
    rep = DataReport()
    df = load_feature_table(tmp_path, report=rep)
    assert df["subject_id"].tolist() == ["s1", "s3"]
    assert {"a__a", "b__a"} <= set(df.columns)
    assert any("ok in some tables" in i.message for i in rep.items)


def test_missing_key_column_is_an_error(tmp_path):
    pd.DataFrame({"image_id": ["x"], "status": ["ok"], "f__a": [1.0]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="subject_id"):
        load_feature_table(tmp_path / "t.parquet")


def test_aggregation_rules(tmp_path):
    f = pd.DataFrame({"a": [1.0, 3.0, 5.0]})
    write_feature_table(tmp_path / "e.parquet", f, subject_ids=["s1", "s1", "s2"], extractor="e",
                        extra_columns={"taken": ["2020-05-01", "2019-01-01", "2021-01-01"]})
    img = load_feature_table(tmp_path, keep=["taken"])
    rep = DataReport()
    mean = aggregate_images(img, rule="mean", report=rep)
    assert mean.loc["s1", "e__a"] == 2.0 and mean.loc["s1", "n_images"] == 2
    assert rep.items and rep.items[0].count == 1
    assert aggregate_images(img, rule="first", order_by="taken").loc["s1", "e__a"] == 3.0
    assert aggregate_images(img, rule="most_recent", order_by="taken").loc["s1", "e__a"] == 1.0
    with pytest.raises(ConfigError, match="ordering column"):
        aggregate_images(img, rule="most_recent")


def test_semicolon_decimal_comma_csv_is_read_as_numbers(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id;time;event;age;stage\nP1;12,5;1;61,2;II\nP2;30;0;55;III\nP3;7,25;1;70,1;IIIa\n", encoding="utf-8")
    rep = DataReport()
    df = read_clinical(p, report=rep)
    assert df["time"].tolist() == [12.5, 30.0, 7.25]
    assert df["age"].dtype.kind == "f"
    assert df["stage"].tolist() == ["II", "III", "IIIa"]
    assert any("';'" in i.message for i in rep.items)
    assert any("decimal commas" in i.message for i in rep.items)


def test_comma_csv_with_decimal_commas_is_rejected_naming_the_separator(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id,time,event\nP1,12,5,1\nP2,30,0\n")
    with pytest.raises(DataError, match=r"separator ','.*line\(s\) 2"):
        read_clinical(p)


def test_wrong_explicit_separator_is_named(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id;time;event\nP1;12;1\n")
    with pytest.raises(DataError, match="looks separated by ';'"):
        read_clinical(p, sep=",")


def test_mixed_numbers_and_text_are_not_silently_text(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id,time,event,crp\nP1,1,1,3.5\nP2,2,0,4.1\nP3,3,1,<0.5\n")
    with pytest.raises(DataError, match=r"'crp' is mostly numbers but has text in rows 4"):
        read_clinical(p)
    assert read_clinical(p, text_columns=["crp"])["crp"].tolist() == ["3.5", "4.1", "<0.5"]


def _clinical(tmp_path, rows):
    p = tmp_path / "clin.csv"
    pd.DataFrame(rows, columns=["subject_id", "time", "event", "age"]).to_csv(p, index=False)
    return p


def test_duplicate_subject_ids_are_named(tmp_path):
    p = _clinical(tmp_path, [["P1", 1, 1, 50], ["P2", 2, 0, 60], ["P1", 3, 1, 70]])
    with pytest.raises(DataError, match=r"duplicate subject id\(s\) \['P1'\].*lines 2, 4"):
        load_survival_data(clinical=p)


def test_unmatched_subjects_drop_with_report_or_fail(tmp_path):
    p = _clinical(tmp_path, [["P1", 1, 1, 50], ["P2", 2, 0, 60], ["P3", 3, 1, 70]])
    run = tmp_path / "run"
    run.mkdir()
    write_feature_table(run / "e.parquet", _feats(3), subject_ids=["P1", "P2", "P9"], extractor="e",
                        status=["ok", "no_face", "ok"])
    ds = load_survival_data(clinical=p, features=run)
    assert list(ds.X.index) == ["P1"]
    msgs = {i.message: i for i in ds.report.items}
    no_photo = next(i for m, i in msgs.items() if "no usable photo" in m)
    assert no_photo.count == 2 and no_photo.examples == ["P2", "P3"]
    no_clin = next(i for m, i in msgs.items() if "not in the clinical table" in m)
    assert no_clin.examples == ["P9"]
    with pytest.raises(DataError, match=r"2 subject\(s\) in the clinical table have no usable photo.*P2, P3"):
        load_survival_data(clinical=p, features=run, unmatched="error")


def test_blocks_and_covariates(tmp_path, gbsg2_split_files):
    clin, run, ids = gbsg2_split_files
    ds = load_survival_data(clinical=clin, features=run, covariates="age,tgrade")
    assert ds.blocks == {"clinical": ["age", "tgrade"], "image": ["tumour__tsize", "tumour__pnodes", "tumour__progrec", "tumour__estrec"]}
    assert ds.categorical == ["tgrade"]
    assert len(ds.X) == len(ids) and ds.y["event"].sum() == 299
    faces_only = load_survival_data(clinical=clin, features=run, covariates="none")
    assert list(faces_only.blocks) == ["image"]
    with pytest.raises(ConfigError, match="outcome"):
        load_survival_data(clinical=clin, covariates="age,time")
