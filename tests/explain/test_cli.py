"""``facefeat explain direction|edit|regions|probe`` end to end on the tiny-generator study."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facefeat.cli import main
from facefeat.explain.direction import load_direction


def test_help_has_examples(capsys):
    for cmd in (["explain", "direction"], ["explain", "edit"], ["explain", "regions"], ["explain", "probe", "fit"],
                ["explain", "probe", "apply"]):
        with pytest.raises(SystemExit) as exc:
            main([*cmd, "--help"])
        assert exc.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_direction_command(study, tmp_path, capsys):
    out = tmp_path / "health.npz"
    assert main(["explain", "direction", "--model-dir", str(study["models"]["coxph"]), "-o", str(out)]) == 0
    d = load_direction(out)
    assert d.vector.shape == (8, 64) and d.per_unit == 1.0
    assert out.with_suffix(".json").is_file()
    assert "by 1" in capsys.readouterr().out


def test_edit_command(study, tmp_path, capsys):
    out = tmp_path / "edits"
    code = main(["explain", "edit", "--model-dir", str(study["models"]["coxph"]), "--features", str(study["run"]),
                 "--clinical", str(study["clinical"]), "--subject", "P017", "--subject", "P018",
                 "--steps", "-3..3", "--gif", "-o", str(out)])
    assert code == 0
    for s in ("P017", "P018"):
        assert Image.open(out / f"{s}.gif").n_frames == 7
        risk = pd.read_csv(out / f"{s}_risk.csv")
        assert np.allclose(risk["delta_log_hazard"], np.arange(-3, 4), atol=1e-6)
    assert Image.open(out / "P017_grid.png").size[0] == 7 * 128 + 8 * 4
    assert "P017: 7 frames" in capsys.readouterr().out


def test_edit_command_with_saved_direction_layers_and_generator(study, tmp_path):
    from tests.explain.conftest import TINY

    d = tmp_path / "d.npz"
    assert main(["explain", "direction", "--model-dir", str(study["models"]["coxph"]), "-o", str(d)]) == 0
    out = tmp_path / "edits"
    assert main(["explain", "edit", "--model-dir", str(study["models"]["coxph"]), "--features", str(study["run"]),
                 "--clinical", str(study["clinical"]), "--subject", "P001", "--steps", "-2,0,2",
                 "--layers", "middle", "--direction", str(d), "--generator", str(TINY), "-o", str(out)]) == 0
    risk = pd.read_csv(out / "P001_risk.csv")
    assert risk["log_hazard"].is_monotonic_increasing and risk["delta_log_hazard"].iloc[-1] < 2


@pytest.mark.parametrize("subject, message", [
    ("P999", "subject 'P999' is not in feature table"),
    ("P_FAIL", "subject 'P_FAIL' has no latent in feature table"),
])
def test_edit_command_bad_subject(study, tmp_path, capsys, subject, message):
    code = main(["explain", "edit", "--model-dir", str(study["models"]["coxph"]), "--features", str(study["run"]),
                 "--clinical", str(study["clinical"]), "--subject", subject, "-o", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_edit_command_bad_inputs(study, rsf_model, tmp_path, capsys):
    base = ["explain", "edit", "--features", str(study["run"]), "--subject", "P001", "-o", str(tmp_path)]
    assert main([*base, "--model-dir", str(study["models"]["coxph"])]) == 2
    assert "--clinical" in capsys.readouterr().err
    assert main([*base, "--model-dir", str(study["models"]["coxph"]), "--clinical", str(study["clinical"]),
                 "--layers", "fine"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["explain", "direction", "--model-dir", str(rsf_model), "-o", str(tmp_path / "x.npz")]) == 2
    assert "linear Cox model" in capsys.readouterr().err


def test_regions_command(study, tmp_path, capsys):
    out = tmp_path / "regions"
    code = main(["explain", "regions", "--model-dir", str(study["models"]["coxph"]), "--features", str(study["run"]),
                 "--clinical", str(study["clinical"]), "--subjects", "P001,P002,P_FAIL", "-o", str(out)])
    assert code == 0
    table = pd.read_csv(out / "regions.csv")
    assert set(table["status"]) == {"no_face", "no_latent"}
    assert len(pd.read_csv(out / "layers.csv")) == 8
    assert (out / "regions.png").is_file() and (out / "regions_summary.csv").is_file()
    assert "no_face: 2" in capsys.readouterr().out


def test_probe_fit_apply_and_edit(study, tmp_path, capsys):
    labels = pd.read_csv(study["clinical"])
    probe = tmp_path / "sex.safetensors"
    assert main(["explain", "probe", "fit", "--features", str(study["run"]), "--labels", str(study["clinical"]),
                 "--label", "sex", "--cv", "3", "-o", str(probe)]) == 0
    assert "logistic probe 'sex'" in capsys.readouterr().out
    scored = tmp_path / "probe.parquet"
    assert main(["explain", "probe", "apply", "--probe", str(probe), "--features", str(study["run"]),
                 "-o", str(scored)]) == 0
    t = pd.read_parquet(scored)
    assert len(t) == len(labels) - 1 and t.loc[t.subject_id == "P_FAIL", "status"].iloc[0] == "no_face"
    out = tmp_path / "edits"
    assert main(["explain", "edit", "--model-dir", str(study["models"]["coxph"]), "--features", str(study["run"]),
                 "--clinical", str(study["clinical"]), "--subject", "P001", "--probe", str(probe),
                 "--steps", "-1..1", "-o", str(out)]) == 0
    assert (out / "P001_grid.png").is_file()
