"""Building rating tables from engine rows: exclusions counted, per-feature missing values."""

import numpy as np

from facefeat.robustness.study import FeatureMatrix, ratings_statistics


def _fm():
    values = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 1.0], [4.0, 5.0], [5.0, 3.0], [6.5, 7.0],
                       [7.0, 1.0], [8.0, 2.5]])
    rows = {k: i for i, k in enumerate("abcdefgh")}
    return FeatureMatrix("x", rows, {}, values, [("x__f", None, "x__f"), ("x__g", None, "x__g")])


def test_subjects_without_a_usable_row_are_excluded_and_counted():
    R = np.array([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["a", "missing"]], dtype=object)
    df = ratings_statistics(_fm(), R, form="ICC(2,1)", level=0.95, min_subjects=3).set_index("feature")
    # x__f: 4 complete subjects (the 5th has no row for its copy)
    assert df.loc["x__f", "n_subjects"] == 4 and df.loc["x__f", "n_excluded"] == 1
    # x__g is null on row b: subject 0 drops out for that feature only
    assert df.loc["x__g", "n_subjects"] == 3 and df.loc["x__g", "n_excluded"] == 2
    assert (df["status"] == "ok").all()
    # same numbers as the ICC of the complete ratings by hand
    from facefeat.robustness.icc import icc

    ref = icc(np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.5], [7.0, 8.0]]))["ICC(2,1)"]["icc"][0]
    assert df.loc["x__f", "icc"] == ref


def test_too_few_after_exclusions_says_why():
    R = np.array([["a", "zz"], ["c", "d"], ["e", "yy"]], dtype=object)
    df = ratings_statistics(_fm(), R, form="ICC(2,1)", level=0.95, min_subjects=3)
    assert set(df["status"]) == {"too_few"}
    assert df["note"].str.contains("1 complete subject").all()
    assert (df["n_excluded"] == 2).all()
    # the same columns as computed rows, so tables of any mix concatenate
    ok = ratings_statistics(_fm(), np.array([["a", "c"], ["e", "g"], ["d", "f"]], dtype=object), form="ICC(2,1)",
                            level=0.95, min_subjects=3)
    assert list(df.columns) == list(ok.columns)
    assert df["icc"].isna().all()


def test_copies_showing_another_face_are_found():
    """Group photo 200 x 100 with the kept face at x 20..60: a mirrored copy must have it at
    139..179; a downscaled copy that kept another face (at x 140..180 in source pixels) is caught."""
    from facefeat.robustness.perturb import Condition
    from facefeat.robustness.study import other_faces

    fm = _fm()
    fm.size_of = {"a": (200, 100)}
    fm.box_of = {"a": (20, 30, 60, 70), "b": (139, 30, 179, 70), "c": (70, 15, 90, 35), "d": (10, 15, 30, 35)}
    rows = [
        {"source_image_id": "S", "image_id": "a", "perturbation": "none"},
        {"source_image_id": "S", "image_id": "b", "perturbation": "flip"},  # same face, mirrored
        {"source_image_id": "S", "image_id": "c", "perturbation": "downscale_0.5"},  # another face
        {"source_image_id": "S", "image_id": "d", "perturbation": "jpeg_q50"},  # jpeg keeps geometry: moved = other
    ]
    conds = [Condition("flip", True), Condition("downscale", 0.5), Condition("jpeg", 50)]
    assert other_faces(fm, rows, conds) == {"c", "d"}
