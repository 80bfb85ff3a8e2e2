"""``facefeat train generator`` through ``facefeat.cli.main``."""

from __future__ import annotations

import json

import PIL.Image
import pytest

from facefeat.cli import build_parser, main


def test_train_group_and_generator_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "generator", "--help"])
    out = capsys.readouterr().out
    assert "--init" in out and "--resume" in out and "Examples:" in out and "dlib" in out
    assert main(["train"]) == 2  # the group alone prints its help
    assert "generator" in capsys.readouterr().out


def test_train_subcommands_can_be_added_by_other_modules(monkeypatch):
    """Another trainer joins 'facefeat train' through add_train_commands in a listed module."""
    import sys
    import types

    from facefeat.training import cli as training_cli

    mod = types.ModuleType("facefeat_test_encoder_cli")

    def add_train_commands(sub):
        p = sub.add_parser("encoder", help="train an encoder")
        p.set_defaults(func=lambda args: 0)

    mod.add_train_commands = add_train_commands
    monkeypatch.setitem(sys.modules, "facefeat_test_encoder_cli", mod)
    monkeypatch.setattr(training_cli, "TRAIN_COMMAND_MODULES", ("facefeat_test_encoder_cli",))
    args = build_parser().parse_args(["train", "encoder"])
    assert args.func(args) == 0


def test_missing_arguments_and_existing_runs_are_reported(tmp_path, capsys, nvidia_tiny):
    assert main(["train", "generator", "--out", str(tmp_path / "o")]) == 2
    assert "needs --init and --images" in capsys.readouterr().err
    out = tmp_path / "run"
    out.mkdir()
    (out / "network-snapshot-000000004.state.pt").write_bytes(b"x")
    (out / "network-snapshot-000000004.safetensors").write_bytes(b"x")
    (out / "network-snapshot-000000004.json").write_text("{}")
    assert main(["train", "generator", "--init", str(nvidia_tiny), "--images", str(tmp_path), "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_resume_end_to_end(tmp_path, faces32, nvidia_tiny, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, f in enumerate(faces32[:12]):
        PIL.Image.fromarray(f).save(crops / f"{i:02d}.png")
    out = tmp_path / "ft"
    common = ["--no-progress", "--metric-samples", "16", "--proj-steps", "3"]
    rc = main(["train", "generator", "--init", str(nvidia_tiny), "--images", str(crops), "--out", str(out),
               "--kimg", "0.032", "--batch", "4", "--tick", "0.016", "--snap", "0.016", "--metrics", "kid,proj",
               "--holdout", "2", "--mirror", *common])
    assert rc == 0
    text = capsys.readouterr().out
    assert "dlib_face_recognition_resnet_model_v1" in text and "generator-final.safetensors" in text
    assert (out / "network-snapshot-000000032.state.pt").is_file() and (out / "reals.png").is_file()
    assert (out / "fakes-000000016.png").is_file()
    opts = json.loads((out / "training_options.json").read_text())
    assert opts["config"]["mirror"] and opts["heldout"]["n_images"] == 2 and opts["data"]["n_images"] == 10
    assert opts["feature_network"]["name"] == "dlib_face_recognition_resnet_model_v1"

    # continue to 48 images: --images and the settings come from the run itself
    assert main(["train", "generator", "--resume", "--out", str(out), "--kimg", "0.048", *common]) == 0
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("resume") == 1
    assert events[-1]["event"] == "done" and events[-1]["nimg"] == 48
    ticks = [e for e in events if e["event"] == "tick"]
    assert all(k in ticks[-1] for k in ("sec_per_kimg", "share_r1", "share_pl", "augment_p", "means"))
    metrics = [e for e in events if e["event"] == "metrics"]
    assert metrics and all(e["feature_network"]["name"].startswith("dlib") for e in metrics)
    assert "kid" in metrics[-1] and "proj_psnr" in metrics[-1]
    # a setting that would change the run is refused on resume
    assert main(["train", "generator", "--resume", "--out", str(out), "--kimg", "0.064", "--gamma", "5",
                 *common]) == 2
    assert "r1_gamma" in capsys.readouterr().err
