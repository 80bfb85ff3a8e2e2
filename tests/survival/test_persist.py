"""Model files run no code: skops with an explicit list of types; old pickles only with --trust.

The malicious files below would write a marker file when built: loading must refuse them before
anything is built, so the marker must not exist afterwards.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from facefeat.cli import main
from facefeat.errors import ModelError
from facefeat.io.hashing import sha256_bytes
from facefeat.survival.blocks import FeatureBlock
from facefeat.survival.dataset import load_reference_dataset
from facefeat.survival.estimator import SurvivalEstimator
from facefeat.survival.persist import LEGACY_MODEL_FILE, META_FILE, MODEL_FILE, load_model, save_model

MARKER_ENV = "FACEFEAT_TEST_MARKER"


class Evil:
    """Writes the marker file named in its state when it is rebuilt (skops) or unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code ran")
        self.__dict__.update(state)

    def __reduce__(self):  # pickle: calling Path.write_text on load
        return (Path.write_text, (Path(self.marker), "code ran"))


@pytest.fixture(scope="module")
def gbsg2_small():
    X, y = load_reference_dataset("gbsg2")
    return X.iloc[:300], y[:300]


CATS = ["horTh", "menostat", "tgrade"]


@pytest.mark.parametrize("model, params, extra", [
    ("coxph", {}, {}),
    ("coxnet", {}, {}),
    ("deepsurv", {"hidden_layers": (8,), "max_epochs": 15}, {}),
    ("rsf", {"n_estimators": 5, "max_depth": 3}, {}),
    ("coxph", {}, {"fusion": "late", "blocks": {
        "a": FeatureBlock(columns=["age", "tsize", "pnodes"], pca=2),
        "b": FeatureBlock(columns=["horTh", "tgrade"], categorical=["horTh", "tgrade"])}}),
])
def test_every_model_kind_round_trips_with_equal_predictions(tmp_path, gbsg2_small, model, params, extra):
    X, y = gbsg2_small
    kw = {"blocks": {"all": FeatureBlock(categorical=CATS)}, **extra}
    est = SurvivalEstimator(model, model_params=params, random_state=0, **kw).fit(X, y)
    save_model(tmp_path / "m", est, schema={"blocks": {}}, settings={})
    assert (tmp_path / "m" / MODEL_FILE).is_file() and not (tmp_path / "m" / LEGACY_MODEL_FILE).exists()
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert meta["serialisation"] == "skops" and "facefeat.survival.estimator.SurvivalEstimator" in meta["types"]
    est2, meta2 = load_model(tmp_path / "m")
    np.testing.assert_array_equal(est.predict(X), est2.predict(X))
    np.testing.assert_array_equal(est.predict_survival_function(X[:5], return_array=True),
                                  est2.predict_survival_function(X[:5], return_array=True))


def _write_model_dir(folder: Path, data: bytes, *, serialisation: str | None, file: str) -> Path:
    folder.mkdir()
    (folder / file).write_bytes(data)
    meta = {"format": "facefeat-survival-model", "format_version": 2, "model_sha256": sha256_bytes(data),
            "schema": {"blocks": {}}, "settings": {}}
    if serialisation:
        meta["serialisation"] = serialisation
    (folder / META_FILE).write_text(json.dumps(meta))
    return folder


def test_skops_file_naming_an_unknown_type_is_refused_before_building(tmp_path):
    import skops.io as sio

    marker = tmp_path / "marker"
    data = sio.dumps({"model": Evil(str(marker))})
    folder = _write_model_dir(tmp_path / "m", data, serialisation="skops", file=MODEL_FILE)
    with pytest.raises(ModelError, match=r"names type\(s\) \['tests\.survival\.test_persist\.Evil'\].*could run code"):
        load_model(folder)
    assert not marker.exists()
    # the check is by type name, whatever the file claims to be: trusting it explicitly builds it
    load_model(folder, trusted_types=["tests.survival.test_persist.Evil"])
    assert marker.exists()


def test_skops_file_referring_to_a_function_is_refused(tmp_path):
    import os

    import skops.io as sio

    data = sio.dumps({"f": os.system})
    folder = _write_model_dir(tmp_path / "m", data, serialisation="skops", file=MODEL_FILE)
    with pytest.raises(ModelError, match=r"system.*could run code"):
        load_model(folder)


def test_saving_a_model_with_an_untrusted_type_is_refused_at_save_time(tmp_path):
    with pytest.raises(ModelError, match=r"Evil.*trusted_types"):
        save_model(tmp_path / "m", {"x": Evil(str(tmp_path / "never"))}, schema={})
    assert not (tmp_path / "m" / MODEL_FILE).exists()


def test_old_pickle_needs_trust_and_warns(tmp_path, caplog, capsys):
    import pickle

    marker = tmp_path / "marker"
    folder = _write_model_dir(tmp_path / "m", pickle.dumps(Evil(str(marker))), serialisation=None,
                              file=LEGACY_MODEL_FILE)
    with pytest.raises(ModelError, match=r"old pickle.*--trust.*never pass --trust"):
        load_model(folder)
    assert not marker.exists()
    # the command line refuses it the same way, exit 2 and one line
    assert main(["predict", "--model-dir", str(folder), "--clinical", "nonexistent.csv", "--out",
                 str(tmp_path / "p.csv")]) == 2
    assert "old pickle model file" in capsys.readouterr().err
    assert not marker.exists()
    with caplog.at_level(logging.WARNING, logger="facefeat.survival"):
        load_model(folder, trust=True)
    assert marker.exists() and "pickle" in caplog.text  # what --trust means: the code ran


def test_tampered_and_damaged_files(tmp_path, gbsg2_small):
    X, y = gbsg2_small
    est = SurvivalEstimator("coxph", blocks={"all": FeatureBlock(categorical=CATS)}).fit(X, y)
    save_model(tmp_path / "m", est, schema={}, settings={})
    path = tmp_path / "m" / MODEL_FILE
    good = path.read_bytes()
    path.write_bytes(good[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="does not match the sha256"):
        load_model(tmp_path / "m")
    path.write_bytes(b"not a zip file")
    meta = json.loads((tmp_path / "m" / META_FILE).read_text())
    meta["model_sha256"] = sha256_bytes(b"not a zip file")
    (tmp_path / "m" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="not a readable skops model file"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / META_FILE).write_text("{broken")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(tmp_path / "m")
