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
    "facefeat.robustness.cli",  # robustness
    "facefeat.study.cli",  # study init|validate|run|status
)


#: What Ctrl-C leaves behind for a command that registers no ``on_interrupt`` note of its own (the
#: commands that can resume register one that says how).
INTERRUPT_NOTE = "this command does not resume: files it had written are kept, work in progress is lost; run it again"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every area's subcommands."""
    parser = argparse.ArgumentParser(
        prog="facefeat",
        description="Portrait photos to prognostic features and survival predictions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'facefeat COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"facefeat {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output: -v facefeat's debug lines and other libraries' info lines, "
                             "-vv debug lines of every library (default: facefeat's info lines and "
                             "other libraries' warnings)")
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
        help="also load an old pickle model file (model.joblib, facefeat 0.1); a pickle can run any code it "
             "holds: use only for models you made yourself, then re-save them (fit again)")
#: Loggers whose INFO lines are shown by default: facefeat and its built-in plugins.
OWN_LOGGERS = ("facefeat", "facefeat_builtins")


def configure_logging(verbose: int = 0) -> None:
    """Log to stderr: facefeat's own INFO lines by default, other libraries' only from WARNING.

    Third-party libraries log routine INFO lines (``numexpr.utils: NumExpr defaulting to 2
    threads``) that say nothing about the run, so the root logger stays at WARNING and only
    :data:`OWN_LOGGERS` are lowered: ``verbose=0`` facefeat INFO, ``1`` facefeat DEBUG and
    others INFO, ``2`` or more everything DEBUG.
    """
    own = logging.INFO if verbose <= 0 else logging.DEBUG
    others = (logging.WARNING, logging.INFO, logging.DEBUG)[min(max(verbose, 0), 2)]
    logging.basicConfig(level=others, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facefeat`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
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
    except KeyboardInterrupt as exc:
        # What an interruption keeps differs by command: the command's own account (raised as
        # KeyboardInterrupt(text)) or the note it registered (set_defaults(on_interrupt=...)).
        note = str(exc) or getattr(args, "on_interrupt", None) or INTERRUPT_NOTE
        print(f"facefeat {args.command}: interrupted; {note}", file=sys.stderr)
        return 130
    except Exception as exc:
        from facefeat.devices import is_device_failure

        if not is_device_failure(exc):
            raise
        # a GPU lost mid-run: the same account of what is kept as for an interruption, no traceback
        first = (str(exc).strip().splitlines() or ["no message"])[0]
        note = getattr(args, "on_interrupt", None) or INTERRUPT_NOTE
        print(f"facefeat {args.command}: error: the compute device failed ({type(exc).__name__}: {first}); {note}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
