"""What ``facefeat`` prints on Ctrl-C is true for each command: the commands that resume say how
(extract: parts; train: --resume; models pull: the .part file), every other command says it
does not resume. Before, every command printed "finished parts are kept, re-run the same
command to resume", also those that keep nothing."""

from __future__ import annotations

import importlib

import pytest

from facefeat.cli import INTERRUPT_NOTE, build_parser, main


def _interrupt(monkeypatch, module: str, func: str, argv: list[str], capsys) -> str:
    def stopped(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(module), func, stopped)
    assert main(argv) == 130
    return capsys.readouterr().err


@pytest.mark.parametrize("module, func, argv, note", [
    ("facefeat.engine.cli", "cmd_extract", ["extract", "photos/", "--out", "o"],
     "finished batches are kept in OUT/.parts; re-run the same command to resume (only the missing images are "
     "processed)"),
    ("facefeat.training.cli", "_cmd_generator", ["train", "generator", "--out", "o"],
     "snapshots written so far are kept in --out; add --resume to the same command to continue from the newest "
     "(training since that snapshot is lost)"),
    ("facefeat.training.encoder_cli", "_cmd_encoder", ["train", "encoder", "--out", "o"],
     "snapshots written so far are kept in --out; add --resume to the same command to continue from the newest "
     "(training since that snapshot is lost)"),
    ("facefeat.models.cli", "_cmd_pull", ["models", "pull", "ffhq-256"],
     "what arrived is kept in <file>.part; run the same command again to resume the download"),
    ("facefeat.survival.cli", "cmd_fit", ["fit", "--features", "r", "--clinical", "c.csv", "--out", "m"],
     INTERRUPT_NOTE),
])
def test_each_command_says_what_an_interruption_keeps(monkeypatch, capsys, module, func, argv, note):
    err = _interrupt(monkeypatch, module, func, argv, capsys)
    assert err == f"facefeat {argv[0]}: interrupted; {note}\n"


def test_the_default_note_promises_no_resume():
    assert "does not resume" in INTERRUPT_NOTE and "run it again" in INTERRUPT_NOTE


def test_a_command_that_knows_more_says_it(monkeypatch, capsys):
    def stopped(args):
        raise KeyboardInterrupt("the study at N = 400 is complete in out/; the power curve is lost")

    monkeypatch.setattr(importlib.import_module("facefeat.simulate.cli"), "cmd_simulate", stopped)
    assert main(["simulate", "-o", "out"]) == 130
    assert capsys.readouterr().err == ("facefeat simulate: interrupted; the study at N = 400 is complete in out/; "
                                       "the power curve is lost\n")


def _leaf_parsers(parser, prefix=()):
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_parsers(child, prefix + (name,))


def test_commands_that_promise_to_resume_have_the_means():
    # a note that says "--resume" belongs to a command with a --resume option
    promised = []
    for path, parser in _leaf_parsers(build_parser()):
        note = parser.get_default("on_interrupt") or ""
        if "--resume" in note:
            promised.append(path)
            assert "--resume" in {o for a in parser._actions for o in a.option_strings}, path
    assert sorted(promised) == [("train", "encoder"), ("train", "generator")]
