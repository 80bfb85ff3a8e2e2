"""Reports of other kinds of study: a non-linear model, features without latents, clinical
covariates with late fusion, a stored cross-validation; and the page in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from facefeat.report import build_report
from tests.report.study import make_study

FAST = dict(cv_folds=3, cv_repeats=1, n_region_subjects=2, n_edit_subjects=2)


def _section(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, re.S)
    assert m, sid
    return m.group(1)


def _absent(text: str, sid: str) -> str:
    body = _section(text, sid)
    m = re.search(r'<div class="note absent">(.*?)</div>', body, re.S)
    assert m, f"section {sid} has no 'absent' note"
    return m.group(1)


@pytest.mark.slow
def test_non_linear_model_says_why_edits_are_absent(tmp_path):
    s = make_study(tmp_path, model="rsf", params=("n_estimators=20", "min_samples_leaf=10"))
    text = build_report(s["run"], s["model"], **FAST)
    for sid in ("edits", "regions"):
        why = _absent(text, sid)
        assert "rsf" in why and "not linear" in why and "coxph or coxnet" in why
    assert "data:image/png;base64," in _section(text, "km")
    assert "data:image/png;base64," in _section(text, "calibration")  # rsf has survival functions


def test_features_without_latents_say_why_edits_are_absent(tmp_path):
    s = make_study(tmp_path, n=60, extractor="landmarks", column="geometry")
    text = build_report(s["run"], s["model"], **FAST)
    for sid in ("edits", "regions"):
        why = _absent(text, sid)
        assert "without StyleGAN latents" in why and "landmarks.parquet" in why
    assert "landmarks__geometry" in _section(text, "features")
    assert re.search(r"Harrell&#x27;s C-index</td><td class=\"num\">0\.\d+", _section(text, "validation"))


@pytest.mark.slow
def test_clinical_covariates_late_fusion(tmp_path):
    s = make_study(tmp_path, covariates="age", fusion="late")
    text = build_report(s["run"], s["model"], **FAST)
    assert "age" in _section(text, "features")
    edits = _section(text, "edits")
    assert 'class="note absent"' not in edits
    assert edits.count("data:image/png;base64,") == 2
    assert "late fusion" in edits


@pytest.mark.slow
def test_stored_cross_validation_is_used_and_named(tmp_path):
    from facefeat.survival import cli as survival_cli

    s = make_study(tmp_path, n=60)
    import argparse

    parser = argparse.ArgumentParser()
    survival_cli.add_commands(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--features", str(s["run"]), "--clinical", str(s["clinical"]), "--time",
                              "os_months", "--event", "death", "--covariates", "none", "--model", "coxph", "--param",
                              "alpha=1.0", "--folds", "3", "--repeats", "2", "--out", str(s["model"] / "cv")])
    assert args.func(args) == 0
    text = build_report(s["run"], s["model"], n_region_subjects=1, n_edit_subjects=1)
    val = _section(text, "validation")
    assert "stored: read from" in val and "2 x 3-fold" in val
    assert "pooled out-of-fold risk" in _section(text, "km")  # evaluate stored 2 groups; the report shows tertiles


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    import numpy as np
    from PIL import Image

    _, path = report
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,3000", path.resolve().as_uri()],
                   check=True, timeout=120, capture_output=True)
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (3000, 1280)
    grey = img.mean(axis=2)
    assert (grey < 240).mean() > 0.05  # text, tables and plots, not a blank page
    assert grey[:60].mean() < 100  # the dark title band rendered (CSS applied)
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 50  # embedded images decoded


@pytest.mark.parametrize("spec, why", [
    (None, "records no model specification"),
    ("0" * 64, "is of another model specification (model &#x27;rsf&#x27;, early fusion; specification sha256 000000000000"),
])
def test_stored_cross_validation_of_another_model_is_not_shown(tmp_path, study, spec, why):
    """A stored CV is used only when its specification fingerprint is the saved model's; otherwise the
    report cross-validates the model now and says why (it used to show the stored figures under a warning)."""
    import json

    model = tmp_path / "model"
    shutil.copytree(study["model"], model)
    cv = model / "cv"
    cv.mkdir()
    (cv / "results.json").write_text(json.dumps({
        "mode": "cross-validation", "model": "rsf", "fusion": "early", **({"spec_sha256": spec} if spec else {}),
        "summary": [{"metric": "c_index", "mean": 0.6, "sd": 0.05, "ci_low": 0.5, "ci_high": 0.7, "p2.5": 0.52,
                     "p97.5": 0.68, "folds": 3}],
        "settings": {"n": 40, "events": 20, "n_splits": 3, "n_repeats": 1, "risk_groups": 2}, "calibration": {}}))
    (cv / "oof_predictions.csv").write_text("id,time,event,risk,risk_group\n"
                                            + "".join(f"P{i:03d},{i + 1},{i % 2},{i / 10},1\n" for i in range(40)))
    text = build_report(study["run"], model, n_region_subjects=1, n_edit_subjects=1, cv_repeats=1)
    val = _section(text, "validation")
    assert "stored: read from" not in val and "computed now" in val
    assert val.count('class="note warning"') == 1 and "was not used" in val and why in val
    assert "0.600" not in val  # the stored figures are not shown


@pytest.mark.slow
def test_report_of_a_simulated_study(tmp_path):
    """End to end: 'facefeat simulate' writes a complete study (features, clinical.csv, model/);
    'facefeat report' renders it."""
    pytest.importorskip("facefeat.simulate.cli", reason="facefeat simulate is not part of this installation")
    from facefeat.cli import main

    sim = tmp_path / "sim"
    assert main(["simulate", "--n", "60", "--steps", "10", "--effect", "1.0", "--folds", "3", "--repeats", "1",
                 "-o", str(sim)]) == 0
    out = tmp_path / "report.html"
    assert main(["report", str(sim / "features"), str(sim / "model"), "-o", str(out), "--cv-folds", "3",
                 "--cv-repeats", "1", "--region-subjects", "2", "--edit-subjects", "2"]) == 0
    text = out.read_text(encoding="utf-8")
    for sid in ("cohort", "features", "validation", "km", "calibration", "edits", "regions", "provenance"):
        assert f'<section id="{sid}">' in text
    assert "stylegan2__latent" in _section(text, "features")
    assert _section(text, "edits").count("data:image/png;base64,") == 2
    assert "generator.safetensors" in _section(text, "edits")  # the generator recorded by simulate
    assert "http://" not in text and "https://" not in text
    # one CV specification: the report shows simulate's own cross-validation (it recomputed a 5x5 one before)
    import json

    summary = json.loads((sim / "summary.json").read_text())
    val = _section(text, "validation")
    assert "stored: read from" in val and "1 x 3-fold" in val
    assert f"{summary['recovered']['c_index']:.3f}" in val


@pytest.mark.slow
def test_generator_not_on_this_machine(tmp_path):
    """The checkpoint recorded by the extraction is elsewhere: a note says so; --generator fixes it."""
    from tests.report.study import GENERATOR

    s = make_study(tmp_path, n=50, checkpoint="/elsewhere/ffhq-finetuned.pkl")
    text = build_report(s["run"], s["model"], **FAST)
    why = _absent(text, "edits")
    assert "/elsewhere/ffhq-finetuned.pkl" in why and "--generator" in why
    text = build_report(s["run"], s["model"], generator=GENERATOR, **FAST)
    assert _section(text, "edits").count("data:image/png;base64,") == 2


def test_run_with_a_table_the_model_does_not_use(study, tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from tests.report.study import write_latent_run

    run = tmp_path / "run"
    shutil.copytree(study["run"], run)
    keys = pq.read_table(run / "stylegan2.parquet", columns=["subject_id", "status"]).to_pandas()
    status = keys["status"].tolist()
    status[0] = "no_face"  # a failure in a table the model does not read must not drop the subject
    write_latent_run(run, keys["subject_id"].tolist(), np.zeros((len(keys), 4), "float32"), status,
                     extractor="landmarks", column="geometry")
    text = build_report(run, study["model"], **FAST)
    cohort = _section(text, "cohort")
    assert "The model does not use the table(s) landmarks" in cohort
    row = re.search(r"<tr><td>landmarks</td>(.*?)</tr>", cohort).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row)[:4] == ["90", "90", "86", "2"]  # images, subjects, ok, no_face
    assert re.search(r"<th>subjects analysed \(usable photo and clinical row\)</th><td>87</td>", cohort)
    assert "Tables in RUN_DIR that the model does not use: landmarks.parquet" in _section(text, "features")


def test_run_without_the_model_table(study, tmp_path):
    import numpy as np

    from facefeat.errors import InputError
    from tests.report.study import write_latent_run

    run = tmp_path / "run"
    write_latent_run(run, ["A", "B"], np.zeros((2, 4), "float32"), ["ok", "ok"], extractor="landmarks",
                     column="geometry")
    with pytest.raises(InputError, match=r"lacks the feature table\(s\) \['stylegan2.parquet'\].*run folder"):
        build_report(run, study["model"])


@pytest.mark.slow
def test_wplus_model_has_a_per_layer_direction(tmp_path):
    s = make_study(tmp_path, wplus=True, params=("alpha=10.0",))
    text = build_report(s["run"], s["model"], **FAST)
    edits = _section(text, "edits")
    assert "shape [8, 64]; W+: one step per row" in edits
    assert edits.count("data:image/png;base64,") == 2
    regions = _section(text, "regions")
    assert "The direction&#x27;s squared norm per W+ layer" in regions
    shares = re.search(r"<tr><td>share of \|direction\|\^2</td>(.*?)</tr>", regions).group(1)
    values = [float(v) for v in re.findall(r'<td class="num">([\d.]+)</td>', shares)]
    assert len(values) == 8 and abs(sum(values) - 1) < 0.01 and max(values) != min(values)
