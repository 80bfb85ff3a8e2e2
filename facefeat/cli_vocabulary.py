"""One command-line vocabulary for every ``facefeat`` command.

The options several commands share are added here, so they are spelled, defaulted and
explained the same way everywhere:

- ``-o/--out``: where a command writes (folder or file);
- ``--model-dir``: a saved model (the folder ``facefeat fit -o`` wrote), for evaluate, predict,
  explain and report;
- ``--folds`` / ``--repeats``: cross-validation, defaults :data:`DEFAULT_FOLDS` x
  :data:`DEFAULT_REPEATS` (``cross_validate``'s own);
- ``--risk-groups``: :data:`DEFAULT_RISK_GROUPS` groups (the median split that ``fit`` stores
  as the model's cut-off);
- ``--no-progress``: no per-stage lines or progress bars (:func:`stage`).

Old spellings keep working for one release: :func:`deprecated` adds them as hidden aliases
that warn once on stderr naming the new spelling.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

DEFAULT_FOLDS = 5
DEFAULT_REPEATS = 5
DEFAULT_RISK_GROUPS = 2
#: The release after which the deprecated spellings are removed.
REMOVED_IN = "0.3"


class _Deprecated(argparse.Action):
    """Store like the new option, after a one-line deprecation message on stderr."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"facefeat: {option_string} is deprecated and will be removed in facefeat {REMOVED_IN}; "
              f"use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def deprecated(parser: argparse.ArgumentParser | Any, *old: str, new: str, dest: str, flag: bool = False,
               **kwargs: Any) -> None:
    """Accept the old spelling(s) ``old`` of option ``new`` (same ``dest``), hidden from --help."""
    parser.add_argument(*old, dest=dest, action=_Deprecated, new=new, nargs=0 if flag else None,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_out(parser, *, required: bool = True, metavar: str = "DIR", help: str = "output folder") -> None:
    """``-o/--out``: where the command writes."""
    parser.add_argument("-o", "--out", required=required, metavar=metavar, help=help)


def add_model_dir(parser, *, required: bool = False, help: str | None = None, old: tuple[str, ...] = ()) -> None:
    """``--model-dir MODEL_DIR``: a model saved by ``facefeat fit -o MODEL_DIR``."""
    parser.add_argument("--model-dir", dest="model_dir", metavar="MODEL_DIR", required=required and not old,
                        default=None, help=help or "saved model: the folder 'facefeat fit -o' wrote")
    if old:
        deprecated(parser, *old, new="--model-dir", dest="model_dir", metavar="MODEL_DIR")


def add_cv(parser, *, repeats: int = DEFAULT_REPEATS, old_folds: tuple[str, ...] = (),
           old_repeats: tuple[str, ...] = ()) -> None:
    """``--folds`` / ``--repeats``: repeated stratified k-fold cross-validation."""
    parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                        help=f"cross-validation folds (default {DEFAULT_FOLDS})")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"cross-validation repeats (default {repeats})")
    if old_folds:
        deprecated(parser, *old_folds, new="--folds", dest="folds", type=int)
    if old_repeats:
        deprecated(parser, *old_repeats, new="--repeats", dest="repeats", type=int)


def add_risk_groups(parser) -> None:
    """``--risk-groups N``: groups of the Kaplan-Meier plots by predicted risk."""
    parser.add_argument("--risk-groups", type=int, default=DEFAULT_RISK_GROUPS,
                        help=f"risk groups by quantiles of the predicted risk (default {DEFAULT_RISK_GROUPS}: "
                             "the median split 'fit' stores as the model's cut-off)")


def add_progress(parser) -> None:
    """``--no-progress``: no per-stage lines or progress bars."""
    parser.add_argument("--no-progress", action="store_true", help="no per-stage lines or progress bars")


def stage(args: argparse.Namespace, text: str, *, _t0: list[float] = []) -> None:  # noqa: B006 - a process clock
    """One progress line on stderr (``[  12.3 s] text``) unless ``--no-progress``."""
    if getattr(args, "no_progress", False):
        return
    if not _t0:
        _t0.append(time.perf_counter())
    print(f"[{time.perf_counter() - _t0[0]:7.1f} s] {text}", file=sys.stderr, flush=True)
