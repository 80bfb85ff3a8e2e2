"""One command-line vocabulary (issue 13 item 8): the same spelling and default of every shared
option across commands, and the old spellings accepted for one release with a message."""

from __future__ import annotations

import argparse

import pytest

from facefeat.cli import build_parser
from facefeat.cli_vocabulary import DEFAULT_FOLDS, DEFAULT_REPEATS, DEFAULT_RISK_GROUPS


def _subparsers(parser: argparse.ArgumentParser, prefix=()):
    """Every leaf command as (('explain', 'edit'), parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                leaf = True
                for inner in _subparsers(sub, prefix + (name,)):
                    leaf = False
                    yield inner
                if leaf:
                    yield prefix + (name,), sub


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings}


COMMANDS = dict(_subparsers(build_parser()))

#: Commands that write files, and are expected to take -o/--out (study init takes the folder to create).
WRITERS = [("extract",), ("fit",), ("evaluate",), ("predict",), ("simulate",), ("report",), ("export",),
           ("robustness",), ("train", "generator"), ("train", "encoder"), ("models", "convert"),
           ("explain", "direction"), ("explain", "edit"), ("explain", "regions"), ("explain", "probe"),
           ("study", "run")]


@pytest.mark.parametrize("command", [c for c in WRITERS if c in COMMANDS], ids=" ".join)
def test_every_writer_has_o_and_out(command):
    opts = _options(COMMANDS[command])
    assert "-o" in opts and "--out" in opts and opts["-o"] is opts["--out"]


@pytest.mark.parametrize("command", [("evaluate",), ("predict",), ("report",), ("explain", "direction"),
                                     ("explain", "edit"), ("explain", "regions")], ids=" ".join)
def test_saved_model_is_model_dir_everywhere(command):
    opts = _options(COMMANDS[command])
    assert opts["--model-dir"].dest == "model_dir"


@pytest.mark.parametrize("command", [("evaluate",), ("report",), ("simulate",)], ids=" ".join)
def test_folds_repeats_and_risk_groups_have_one_default(command):
    opts = _options(COMMANDS[command])
    assert opts["--folds"].default == DEFAULT_FOLDS and opts["--repeats"].default == DEFAULT_REPEATS
    if "--risk-groups" in opts:
        assert opts["--risk-groups"].default == DEFAULT_RISK_GROUPS


def test_old_spellings_work_with_a_deprecation_message(capsys, tmp_path):
    parser = build_parser()
    args = parser.parse_args(["report", "runs/r1", "--model-dir", "m", "-o", "r.html", "--cv-folds", "3",
                              "--cv-repeats", "2"])
    assert (args.folds, args.repeats, args.model_dir) == (3, 2, "m")
    err = capsys.readouterr().err
    assert "--cv-folds is deprecated" in err and "use --folds" in err and "use --repeats" in err
    args = parser.parse_args(["explain", "direction", "--model", "models/m1", "-o", "h.npz"])
    assert args.model_dir == "models/m1"
    assert "--model is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one of --model-dir / --model is required
        parser.parse_args(["explain", "direction", "-o", "h.npz"])
    assert "--model-dir" in capsys.readouterr().err


def test_report_positional_model_dir_is_deprecated(tmp_path, capsys):
    from facefeat.cli import main

    # the old form still parses and reaches the command, which names the new spelling
    rc = main(["report", str(tmp_path / "run"), str(tmp_path / "model"), "-o", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert "deprecated" in err and "--model-dir MODEL_DIR" in err
    assert rc == 2  # then fails on the missing run folder, as before


def test_models_convert_takes_o(tmp_path, capsys):
    from facefeat.cli import main

    assert main(["models", "convert", str(tmp_path / "missing.pt")]) == 2
    assert "-o OUT" in capsys.readouterr().err
