"""The feature-table contract on real runs over examples/faces: one reader, one key, one status
rule, one flattened naming scheme, refusals, and read-back from pandas, pyarrow, polars, DuckDB."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import facefeat
from facefeat.engine.run import run_extraction
from facefeat.errors import DataError
from facefeat.io.features import FLAT_DIGITS, combine_status, flat_column, flat_columns, split_flat_column
from facefeat.io.tables import (
    ENGINE_DIAG_FIELDS,
    assemble_table,
    feature_tables,
    read_features,
    read_provenance,
    write_feature_table,
)

TWO = ["landmarks", "face_descriptor"]  # the README's example run
THREE = TWO + ["attributes"]
ENGINE_DIAGS = {f.name for f in ENGINE_DIAG_FIELDS}


@pytest.fixture(scope="module")
def run2(tmp_path_factory, examples_dir):
    """The README's example run: landmarks and face_descriptor over examples/faces."""
    out = tmp_path_factory.mktemp("run2")
    run_extraction({"input": str(examples_dir), "out": str(out), "extractors": TWO}, progress=False)
    return out


@pytest.fixture(scope="module")
def run3(tmp_path_factory, examples_dir):
    """The same with a third extractor (attributes)."""
    out = tmp_path_factory.mktemp("run3")
    run_extraction({"input": str(examples_dir), "out": str(out), "extractors": THREE}, progress=False)
    return out


def test_flat_column_is_one_zero_padded_scheme():
    assert flat_column("stylegan2__latent", 7) == "stylegan2__latent_0007"
    names = flat_columns("e4e__latent", 18 * 512)  # the largest W+ (1024 px): still sorts in element order
    assert sorted(names) == names and len(set(names)) == 18 * 512
    assert split_flat_column("stylegan2__latent_0123") == ("stylegan2__latent", 123)
    assert split_flat_column("landmarks__fwhr") is None and split_flat_column("x_12") is None
    assert FLAT_DIGITS == 4


@pytest.mark.parametrize("n_tables", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_flattened_join_has_no_suffix_columns_and_engine_diagnostics_once(request, n_tables):
    run = request.getfixturevalue(f"run{n_tables}")
    df = read_features(run, include_failed=True)
    names = list(df.columns)
    assert not [c for c in names if c.endswith(("_x", "_y"))]
    assert len(names) == len(set(names))
    assert names[:5] == ["image_id", "subject_id", "path", "status", "error"]
    # engine diagnostics once, flattened with the same scheme as embeddings
    assert [c for c in names if c.startswith("diag__face_box_") and c[-4:].isdigit()] == flat_columns("diag__face_box", 4)
    assert [c for c in names if c.startswith("diag__align_quad")] == flat_columns("diag__align_quad", 8)
    assert sum(c == "diag__detector_score" for c in names) == 1
    emb = [c for c in names if c.startswith("face_descriptor__embedding_")]
    assert emb == flat_columns("face_descriptor__embedding", 128)
    tables = TWO if n_tables == 2 else THREE
    assert [c for c in names if c.startswith("status__")] == [f"status__{t}" for t in sorted(tables)]
    # the values are the single table's values, aligned by key
    one = pq.read_table(run / "face_descriptor.parquet").to_pandas().set_index(["image_id", "subject_id"])
    wide = df.set_index(["image_id", "subject_id"]).loc[one.index]
    ok = (one["status"] == "ok").to_numpy()
    got = wide[emb].to_numpy()[ok]
    want = np.stack(one["face_descriptor__embedding"].to_numpy()[ok])
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert np.isnan(wide[emb].to_numpy()[~ok]).all()
    assert df.attrs["status_counts"] == {"ok": 4, "no_face": 1}


def test_default_read_is_ok_rows_flattened_with_counts(run2):
    df = facefeat.read_features(run2)
    assert set(df["status"]) == {"ok"} and len(df) == 4
    assert df.attrs["n_dropped"] == 1 and df.attrs["status_counts"]["no_face"] == 1
    assert not any(isinstance(v, (list, np.ndarray)) for v in df.iloc[0].to_numpy())


def test_status_rule_is_first_non_ok_in_extractor_order(run2, tmp_path):
    for f in feature_tables(run2):
        shutil.copy(f, tmp_path / f.name)
    # landmarks fails one ok photo with 'error', face_descriptor the same photo with 'too_large'
    victim = None
    for name, status in (("landmarks", "error"), ("face_descriptor", "too_large")):
        t = pq.read_table(tmp_path / f"{name}.parquet")
        st = t.column("status").to_pylist()
        i = st.index("ok") if victim is None else t.column("image_id").to_pylist().index(victim)
        victim = t.column("image_id")[i].as_py()
        st[i] = status
        t = t.set_column(t.column_names.index("status"), t.schema.field("status"), pa.array(st, pa.string()))
        pq.write_table(t, tmp_path / f"{name}.parquet")
    df = read_features(tmp_path, include_failed=True, flatten=False).set_index("image_id")
    row = df.loc[victim]
    # extractor order = table name order: face_descriptor before landmarks
    assert row["status"] == "too_large"
    assert (row["status__face_descriptor"], row["status__landmarks"]) == ("too_large", "error")
    assert combine_status(["a", "b"], [["ok", "no_face"], ["error", "error"]]) == ["error", "no_face"]
    # the report's image status uses the same rule
    assert read_features(tmp_path, status="too_large", flatten=False)["image_id"].tolist() == [victim]


def test_refuses_files_that_are_not_tables_of_the_run(run2, tmp_path, examples_dir):
    for f in feature_tables(run2):
        shutil.copy(f, tmp_path / f.name)
    pd.DataFrame({"subject_id": ["a"], "time": [1.0]}).to_parquet(tmp_path / "clinical.parquet")
    with pytest.raises(DataError, match=r"clinical\.parquet is not a facefeat feature table.*image_id"):
        read_features(tmp_path)
    (tmp_path / "clinical.parquet").unlink()
    # a table of another input set (one photo) in the same folder
    one = tmp_path.parent / "one_in"
    one.mkdir()
    shutil.copy(examples_dir / "dogs.jpg", one / "dogs.jpg")
    other = tmp_path.parent / "one_out"
    run_extraction({"input": str(one), "out": str(other), "extractors": ["landmarks"]}, progress=False)
    shutil.copy(other / "landmarks.parquet", tmp_path / "landmarks_other.parquet")
    with pytest.raises(DataError, match="different runs.*manifest_sha256"):
        read_features(tmp_path)
    from facefeat.survival import load_feature_table

    with pytest.raises(DataError, match="different runs"):
        load_feature_table([tmp_path / "landmarks.parquet", tmp_path / "landmarks_other.parquet"])


def test_key_twice_and_disagreeing_diagnostics_name_file_and_subject(run2, tmp_path):
    t = pq.read_table(run2 / "landmarks.parquet")
    pq.write_table(pa.concat_tables([t, t.slice(0, 1)]), tmp_path / "landmarks.parquet")
    sid = t.column("subject_id")[0].as_py()
    with pytest.raises(DataError, match=rf"landmarks\.parquet: photo .* of subject '{sid}' has two rows"):
        read_features(tmp_path / "landmarks.parquet")
    pq.write_table(t, tmp_path / "landmarks.parquet")
    d = pq.read_table(run2 / "face_descriptor.parquet")
    widths = d.column("diag__image_width").to_pylist()
    widths[0] += 1
    d = d.set_column(d.column_names.index("diag__image_width"), d.schema.field("diag__image_width"),
                     pa.array(widths, pa.int32()))
    pq.write_table(d, tmp_path / "face_descriptor.parquet")
    with pytest.raises(DataError, match=rf"diag__image_width of subject '{d.column('subject_id')[0].as_py()}'.*"
                                        "not made with the same preprocessing"):
        read_features(tmp_path)


def test_every_table_reads_back_alike_in_pandas_pyarrow_polars_duckdb(run2):
    import duckdb
    import polars as pl

    for f in feature_tables(run2):
        arrow = pq.read_table(f)
        pdf = pd.read_parquet(f)
        pol = pl.read_parquet(f)
        ddb = duckdb.sql(f"SELECT * FROM read_parquet('{f}')").df()
        assert list(pdf.columns) == arrow.column_names == pol.columns == list(ddb.columns)
        keys = ["image_id", "subject_id", "status"]
        for k in keys:
            assert pdf[k].tolist() == pol[k].to_list() == ddb[k].tolist() == arrow.column(k).to_pylist()
        for field in arrow.schema:
            name = field.name
            if pa.types.is_fixed_size_list(field.type):  # embeddings: same values in all four
                ok = arrow.column(name).is_valid().to_numpy(zero_copy_only=False)
                if not ok.any():
                    assert pol[name].null_count() == len(ok) and ddb[name].isna().all()
                    continue
                a = np.stack(pdf.loc[ok, name].to_numpy())
                b = np.stack(pol.filter(pl.Series(ok))[name].to_list())
                c = np.stack(ddb.loc[ok, name].to_numpy())
                np.testing.assert_array_equal(a, b)
                np.testing.assert_array_equal(a, c)
                if not name.startswith("diag__"):  # an embedding's shape travels in the field metadata
                    assert np.prod(json.loads(field.metadata[b"shape"])) == field.type.list_size
            elif pa.types.is_floating(field.type):
                np.testing.assert_array_equal(pdf[name].to_numpy(float), pol[name].to_numpy().astype(float))
                np.testing.assert_array_equal(pdf[name].to_numpy(float), ddb[name].to_numpy(float))
        # the facefeat reader gives the same values, flattened (null lists: NaN in every column)
        mine = read_features(f, include_failed=True)
        for field in arrow.schema:
            if pa.types.is_fixed_size_list(field.type):
                valid = arrow.column(field.name).is_valid().to_numpy(zero_copy_only=False)
                wide = mine[flat_columns(field.name, field.type.list_size)].to_numpy(float)
                if valid.any():
                    np.testing.assert_array_equal(wide[valid], np.stack(pdf.loc[valid, field.name].to_numpy()))
                assert np.isnan(wide[~valid]).all()


def test_flattened_names_identical_across_io_survival_explain_simulate(run2):
    from facefeat.explain.direction import latent_block_columns
    from facefeat.simulate.pipeline import _latent_frame
    from facefeat.survival import load_feature_table

    io_cols = [c for c in read_features(run2).columns if c.startswith("face_descriptor__embedding_")]
    surv = load_feature_table(run2 / "face_descriptor.parquet")
    assert [c for c in surv.attrs["feature_columns"] if c.startswith("face_descriptor__embedding_")] == io_cols
    latents = np.zeros((3, 2, 64))
    sim = list(_latent_frame(latents, "stylegan2__latent", ["a", "b", "c"]).columns)
    assert sim == flat_columns("stylegan2__latent", 128)
    col, shape, flat = latent_block_columns(None, sim)
    assert (col, flat) == ("stylegan2__latent", sim)


def test_assemble_and_write_without_paths(tmp_path):
    from facefeat.engine.extractor import embedding_array, embedding_field

    schema = pa.schema([embedding_field("demo__latent", [2, 3]), pa.field("demo__score", pa.float64())])
    columns = {"image_id": ["a" * 64, "b" * 64], "subject_id": ["S1", "S2"], "status": ["ok", "no_face"],
               "path": ["/data/Jane_Doe.jpg", "/data/John_Roe.jpg"], "error": [None, "no face in /data/John_Roe.jpg"],
               "demo__latent": embedding_array(np.arange(12.0).reshape(2, 6)), "demo__score": [0.5, None]}
    t = assemble_table(schema, columns, provenance={"input": {"source": "/data", "n_images": 2,
                                                              "duplicates": [{"path": "/data/Jane_Doe.jpg"}]}})
    assert t.column_names[:5] == ["image_id", "subject_id", "path", "status", "error"]
    path = write_feature_table(t, tmp_path / "demo.parquet", paths=False)
    back = pq.read_table(path)
    assert "path" not in back.column_names
    assert back.column("error").to_pylist() == [None, "no face in <file>"]
    assert b"Jane_Doe" not in path.read_bytes() and b"John_Roe" not in path.read_bytes()
    prov = read_provenance(path)
    assert prov["input"]["n_duplicates"] == 1 and prov["input"]["paths_removed"] is True
    with pytest.raises(DataError, match="not in the table layout"):
        assemble_table(schema, {**columns, "other__x": [1, 2]})


def test_inspect_output_follows_the_documented_schema(run2, tmp_path):
    import jsonschema

    from facefeat.io.tables import summarize_tables

    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    schema = json.loads((root / "schemas" / "feature-table.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    reports = json.loads(json.dumps(summarize_tables(run2), default=str))
    for rep in reports:
        assert list(validator.iter_errors(rep)) == []
    broken = dict(reports[0], columns=reports[0]["columns"][1:])  # no image_id first
    assert list(validator.iter_errors(broken))
    broken = dict(reports[0], status_counts={"okay": 3})
    assert list(validator.iter_errors(broken))
