"""``facefeat study init|validate|run|status``: parsing and composition only (see
:mod:`facefeat.study`). Nothing heavy is imported at module level."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  facefeat study init my_study                 # writes my_study/study.yaml, every key annotated
  facefeat study validate my_study/study.yaml  # config and inputs checked, nothing computed
  facefeat study run my_study/study.yaml       # runs the stages that are not up to date
  facefeat study status my_study/study.yaml    # done / stale / missing per stage

outputs (in the folder of study.yaml, or -o DIR): extract/ (feature tables), data/ (modelling table),
arms/<name>/ (cross-validation, out-of-fold predictions, full-data model), comparison.csv/.parquet,
report.html, exports/ (CSV + Parquet + README.md data dictionary), study.lock.json.
"""


def add_commands(subparsers: Any) -> None:
    """Register ``study`` with its four subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("study", help="run a whole study from one config (arms compared on identical folds)",
                              description="A study: photos and a clinical table, extraction, model arms "
                                          "cross-validated on identical folds, their comparison with a reference "
                                          "arm, a report and exports, every stage cached by content.",
                              formatter_class=fmt, epilog=EPILOG)
    sub = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    q = sub.add_parser("init", help="write an annotated study.yaml", formatter_class=fmt,
                       description="Write DIR/study.yaml with every key, its default and its meaning.",
                       epilog="example:\n  facefeat study init my_study && $EDITOR my_study/study.yaml\n")
    q.add_argument("dir", metavar="DIR", help="study folder (created)")
    q.add_argument("--name", help="study name (default: the folder name)")
    q.add_argument("--force", action="store_true", help="replace an existing study.yaml")
    q.set_defaults(func=cmd_init)

    for name, helptext, func in (
        ("validate", "check study.yaml and its inputs without computing anything", cmd_validate),
        ("run", "run every stage that is not up to date", cmd_run),
        ("status", "say which stages are done, stale or missing", cmd_status),
    ):
        q = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".",
                           formatter_class=fmt, epilog=f"example:\n  facefeat study {name} my_study/study.yaml\n")
        q.add_argument("config", metavar="STUDY_YAML", help="study.yaml (or its folder)")
        q.add_argument("-o", "--out", metavar="DIR", help="study folder (default: the folder of study.yaml)")
        if name == "run":
            q.add_argument("--jobs", type=int, help="parallel CV folds and extraction workers (default: "
                                                    "execution.jobs)")
            q.add_argument("--no-progress", action="store_true", help="no per-stage lines or progress bars")
        q.set_defaults(func=func)


def cmd_init(args: argparse.Namespace) -> int:
    from facefeat.errors import ConfigError
    from facefeat.io.atomic import atomic_output
    from facefeat.study.template import render_template

    folder = Path(args.dir)
    path = folder / "study.yaml"
    if path.exists() and not args.force:
        raise ConfigError(f"{path} exists; edit it, or pass --force to replace it with the template")
    with atomic_output(path, umask_mode=True) as tmp:
        tmp.write_text(render_template(args.name or folder.resolve().name), encoding="utf-8")
    print(f"wrote {path}: set inputs.photos and inputs.clinical, the extractors and the arms, then run "
          f"'facefeat study validate {path}'")
    return 0


def _study(args: argparse.Namespace, **kwargs: Any):
    from facefeat.study import Study

    return Study.from_yaml(args.config, folder=args.out, **kwargs)


def cmd_validate(args: argparse.Namespace) -> int:
    study = _study(args)
    info = study.validate()
    cfg = study.config
    print(f"{cfg['_file']}: valid. {info['n_photos']} photos of {info['n_subjects_photos']} subjects; clinical "
          f"table {info['n_clinical']} subjects; {info['n_matched']} in both.")
    for what, n, ids in (("clinical subjects without a photo", info["n_clinical_without_photo"],
                          info["clinical_without_photo"]),
                         ("photo subjects without a clinical row", info["n_photos_without_clinical"],
                          info["photos_without_clinical"])):
        if n:
            print(f"  {n} {what} (left out of every arm): {', '.join(ids)}{' ...' if n > len(ids) else ''}")
    arms = ", ".join(a["name"] + (" (reference)" if a["name"] == cfg["reference"] else "") for a in cfg["arms"])
    print(f"  arms: {arms}; {cfg['cv']['repeats']} x {cfg['cv']['folds']}-fold CV, seed {cfg['cv']['seed']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    quiet = args.no_progress
    study = _study(args, progress=None if quiet else (lambda line: print(line, file=sys.stderr, flush=True)),
                   show_bars=not quiet)
    result = study.run(jobs=args.jobs)
    reused = [s.name for s in result.stages if s.action == "reused"]
    computed = [s.name for s in result.stages if s.action == "computed"]
    print(result.table())
    print(f"\nstages computed: {', '.join(computed) or 'none'}; reused: {', '.join(reused) or 'none'}")
    print(f"study folder: {result.folder} (report.html, comparison.csv, exports/)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    study = _study(args)
    states = study.status()
    width = max(len(s.name) for s in states)
    for s in states:
        print(f"{s.name:<{width}}  {s.state:<8} {s.reason}")
    return 0 if all(s.state == "done" for s in states) else 1
