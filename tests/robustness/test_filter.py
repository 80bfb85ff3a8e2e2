"""filter_features: threshold, embedding dimensions, provenance, bad input."""

import pandas as pd
import pytest

from facefeat.errors import ConfigError, DataError, InputError
from facefeat.io.hashing import sha256_file
from facefeat.robustness import filter_features


def _table(tmp_path):
    rows = [
        # extractor, column, index, feature, perturbation, scope, status, icc, icc3_1
        ("landmarks", "landmarks__eye_distance", None, "landmarks__eye_distance", "all", "all", "ok", 0.95, 0.97),
        ("landmarks", "landmarks__mouth_width", None, "landmarks__mouth_width", "all", "all", "ok", 0.60, 0.80),
        ("landmarks", "landmarks__flat", None, "landmarks__flat", "all", "all", "constant", float("nan"), float("nan")),
        ("face_descriptor", "face_descriptor__descriptor", 0, "face_descriptor__descriptor_000", "all", "all", "ok", 0.91, 0.92),
        ("face_descriptor", "face_descriptor__descriptor", 1, "face_descriptor__descriptor_001", "all", "all", "ok", 0.20, 0.30),
        ("landmarks", "landmarks__eye_distance", None, "landmarks__eye_distance", "jpeg_q50", "condition", "ok", 0.70, 0.70),
        ("landmarks", "landmarks__mouth_width", None, "landmarks__mouth_width", "jpeg_q50", "condition", "ok", 0.99, 0.99),
    ]
    df = pd.DataFrame(rows, columns=["extractor", "column", "index", "feature", "perturbation", "scope", "status",
                                     "icc", "icc3_1"])
    df["index"] = df["index"].astype("Int64")
    df["icc_form"] = "ICC(2,1)"
    path = tmp_path / "robustness.parquet"
    df.to_parquet(path)
    return path


COLUMNS = ["landmarks__eye_distance", "landmarks__mouth_width", "landmarks__flat",
           "face_descriptor__descriptor_0000", "face_descriptor__descriptor_0001", "attributes__apparent_age"]


def test_threshold_dimensions_and_record(tmp_path):
    path = _table(tmp_path)
    kept, rec = filter_features(COLUMNS, tmp_path, min_icc=0.75)
    # dimensions match by (column, index) whatever the padding of the table's names; attributes is
    # not assessed, kept
    assert kept == ["landmarks__eye_distance", "face_descriptor__descriptor_0000", "attributes__apparent_age"]
    assert rec["dropped_columns"] == ["landmarks__mouth_width", "landmarks__flat", "face_descriptor__descriptor_0001"]
    assert (rec["kept"], rec["dropped"], rec["dropped_below"], rec["dropped_undefined"], rec["not_assessed"]) == (3, 3, 2, 1, 1)
    assert rec["table_sha256"] == sha256_file(path)
    assert rec["form"] == "ICC(2,1)" and rec["perturbation"] == "all" and rec["min_icc"] == 0.75
    assert rec["not_assessed_extractors"] == ["attributes"]


def test_other_form_and_worst(tmp_path):
    _table(tmp_path)
    kept, rec = filter_features(COLUMNS[:2], tmp_path, min_icc=0.75, form="ICC(3,1)")
    assert kept == COLUMNS[:2] and rec["form"] == "ICC(3,1)"
    kept, _ = filter_features(COLUMNS[:2], tmp_path / "robustness.parquet", min_icc=0.75, perturbation="worst")
    assert kept == ["landmarks__mouth_width"]


def test_default_without_pooled_rows_is_worst(tmp_path):
    df = pd.read_parquet(_table(tmp_path))
    df[df["perturbation"] != "all"].to_parquet(tmp_path / "robustness.parquet")
    kept, rec = filter_features(COLUMNS[:2], tmp_path, min_icc=0.75)
    assert rec["perturbation"] == "worst" and kept == ["landmarks__mouth_width"]


def test_bad_inputs(tmp_path):
    _table(tmp_path)
    with pytest.raises(ConfigError, match="out of range"):
        filter_features(COLUMNS, tmp_path, min_icc=1.5)
    with pytest.raises(ConfigError, match="no rows for perturbation 'blur'"):
        filter_features(COLUMNS, tmp_path, min_icc=0.5, perturbation="blur")
    with pytest.raises(DataError, match="landmarks__nose"):
        filter_features(["landmarks__nose"], tmp_path, min_icc=0.5)
    with pytest.raises(InputError, match="does not exist"):
        filter_features(COLUMNS, tmp_path / "nope.parquet", min_icc=0.5)
