"""The one JSON rule (facefeat.io.jsonsafe): NaN and infinities are null, numpy and paths plain."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from facefeat.io.jsonsafe import dumps_json, to_jsonable


def test_non_finite_floats_become_null_everywhere():
    value = {"a": math.nan, "b": [1.5, math.inf, -math.inf], "c": np.float32("nan"),
             "d": np.array([1.0, np.nan]), "e": torch.tensor([np.inf, 2.0]), "f": (np.float64(0.25),)}
    out = to_jsonable(value)
    assert out == {"a": None, "b": [1.5, None, None], "c": None, "d": [1.0, None], "e": [None, 2.0], "f": [0.25]}
    text = dumps_json(value, sort_keys=True)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == out  # strict JSON: reads back with the standard library
    # pandas reads the nulls back as missing values
    assert pd.read_json(__import__("io").StringIO(dumps_json([{"x": math.nan}, {"x": 1.0}]))).x.isna().tolist() == [True, False]


def test_numpy_torch_paths_dates_sets_and_keys():
    out = to_jsonable({1: np.int64(3), "b": np.bool_(True), "p": Path("/tmp/x.png"), "t": torch.tensor(7),
                       "d": dt.date(2026, 12, 4), "ts": pd.Timestamp("2026-12-04T10:00"), "na": pd.NA,
                       "nat": pd.NaT, "s": {3, 1, 2}, "dtype": np.dtype("float32"), "m": np.eye(2, dtype=np.uint8)})
    assert out == {"1": 3, "b": True, "p": "/tmp/x.png", "t": 7, "d": "2026-12-04", "ts": "2026-12-04T10:00:00",
                   "na": None, "nat": None, "s": [1, 2, 3], "dtype": "float32", "m": [[1, 0], [0, 1]]}
    assert type(out["1"]) is int and type(out["b"]) is bool


def test_same_input_same_text_and_finite_floats_exact():
    v = {"b": [0.1, 1e-300, 123456789.123456789], "a": {"z": 1, "y": 2}}
    assert dumps_json(v, sort_keys=True) == json.dumps(v, sort_keys=True)  # plain values: byte-identical to json
    assert json.loads(dumps_json(v))["b"] == v["b"]


def test_allow_nan_cannot_be_switched_back_on():
    with pytest.raises(TypeError):
        dumps_json({"a": 1}, allow_nan=True)
