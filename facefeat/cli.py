"""The ``facefeat`` command line: parses, validates and composes; no logic of its own.

Each area of the library contributes its subcommands through a small ``cli`` module with an
``add_commands(subparsers)`` function; those modules import nothing heavy at import time, so
``facefeat --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from typing import Sequence

from facefeat._version import __version__
from facefeat.errors import FacefeatError

#: Modules that add subcommands, in help order. A module that is not there yet is skipped.
COMMAND_MODULES = (
    "facefeat.engine.cli",  # extract, plugins, inspect
    "facefeat.io.cli",  # export
    "facefeat.models.cli",  # models list|pull|verify|convert
    "facefeat.survival.cli",  # fit, evaluate, predict
    "facefeat.training.cli",  # train generator|encoder
    "facefeat.explain.cli",  # explain direction|edit|regions|probe
    "facefeat.simulate.cli",  # simulate
    "facefeat.report.cli",  # report
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every area's subcommands."""
    parser = argparse.ArgumentParser(
        prog="facefeat",
        description="Portrait photos to prognostic features and survival predictions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'facefeat COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"facefeat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_optional_commands(subparsers, COMMAND_MODULES, "add_commands")
    return parser


def add_optional_commands(subparsers, modules, hook: str) -> None:
    """Call ``module.<hook>(subparsers)`` for each module that is installed; skip absent ones.

    Only a module that is itself missing is skipped: an import error inside it is raised.
    """
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # the module or its package is absent (not yet built / not installed)
            if exc.name == name or name.startswith(f"{exc.name}."):
                continue
            raise
        getattr(module, hook)(subparsers)


# Values argparse would take for options: "-3", "-0.5", step ranges "-3..3" / "-2..2:0.5" and
# lists "-2,0,2".
_NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]+\.\.-?[\d.]+(:[\d.]+)?$|^-[\d.]+(,\s*-?[\d.]+)+$")


def accept_negative_values(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let ``parser`` read negative numbers, ranges and lists (``--steps -3..3``) as values.

    argparse only does so by itself when no option looks like a negative number; ranges such as
    ``-3..3`` are never recognised. Returns the parser.
    """
    parser._negative_number_matcher = _NEGATIVE_VALUE  # argparse's own hook for this decision
    return parser


def add_trust_option(parser: argparse.ArgumentParser) -> None:
    """The ``--trust`` flag of every command that loads a saved survival model."""
    parser.add_argument(
        "--trust", action="store_true",
        help="also load an old pickle model file (model.joblib, facefeat < 0.3); a pickle can run any code it "
             "holds: use only for models you made yourself, then re-save them (fit again)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facefeat`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from facefeat.runtime import configure_runtime

    configure_runtime()  # threads, OpenMP wait policy, subnormal flushing: before torch loads
    try:
        return int(args.func(args) or 0)
    except FacefeatError as exc:
        print(f"facefeat {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished parts are kept, re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
