"""``facefeat report``: the study report as one self-contained HTML file.

Only argument parsing lives here; the work is :func:`facefeat.report.build.write_report`.
Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

REPORT_EPILOG = """\
examples:
  facefeat report runs/r1 models/m1 -o report.html
  facefeat report runs/r1 models/m1 -o report.html --clinical clinical.csv \\
      --subjects P017,P042 --edit-steps -3..3 --generator checkpoints/ffhq-finetuned.pkl

RUN_DIR is the --out folder of 'facefeat extract', MODEL_DIR the --out folder of 'facefeat fit'.
The report has: cohort and image status counts, features used, cross-validated C-index (Harrell,
Uno), time-dependent AUC, integrated Brier score with 95 % intervals, Kaplan-Meier curves by
out-of-fold risk tertile, calibration, health-attribute edit grids and the face-vs-background
share of the edits (linear models on StyleGAN latents only; otherwise a note says why), and
provenance (versions, hashes, command lines, settings fingerprint).

Cross-validation: when MODEL_DIR/cv/ holds the output of
  facefeat evaluate ... --out MODEL_DIR/cv
(the same model options as 'facefeat fit') it is used; otherwise the model's specification is
cross-validated now (--cv-folds x --cv-repeats). The report says which.

--edit-steps takes LO..HI (whole steps), LO..HI:STRIDE (-2..2:0.5) or a list (-2,0,2).
The HTML has no external references (CSS inline, images as base64 PNG) and works offline.
"""


#: Options and their defaults, in the order the recorded command line lists them.
OPTIONS = {"clinical": None, "subjects": None, "edit_steps": "-3..3", "generator": None, "edit_subjects": 3, "region_subjects": 20,
           "cv_folds": 5, "cv_repeats": 5, "risk_groups": 3, "seed": 0, "jobs": 1, "device": "cpu", "title": None,
           "sep": None, "subgroups": None}


def command_line(args: argparse.Namespace) -> str:
    """The command as run, rebuilt from the parsed arguments (options that differ from the
    defaults), for the report's provenance; works the same when ``main(argv)`` is called."""
    parts = ["facefeat", "report", args.run_dir, args.model_dir, "-o", args.out]
    for name, default in OPTIONS.items():
        value = getattr(args, name, None)
        if value is not None and value != default:
            parts.append(f"--{name.replace('_', '-')}={value}")
    return " ".join(shlex.quote(str(p)) for p in parts)


def add_commands(subparsers: Any) -> None:
    """Register ``report``."""
    from facefeat.cli import accept_negative_values, add_trust_option

    p = subparsers.add_parser(
        "report", help="write the study report (one self-contained HTML file)",
        description="Summarise an extraction run and a fitted survival model in one self-contained HTML report.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPORT_EPILOG)
    # as 'facefeat explain edit --steps': '--edit-steps -3..3' is a value, not an option
    accept_negative_values(p)
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of 'facefeat extract'")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="output folder of 'facefeat fit'")
    add_trust_option(p)
    p.add_argument("-o", "--out", required=True, metavar="HTML", help="report file to write (e.g. report.html)")
    p.add_argument("--clinical", metavar="CSV", help="clinical table (default: the one recorded in MODEL_DIR/model.json)")
    p.add_argument("--subjects", metavar="P1,P2", help="subjects to edit (default: 3 of low, middle, high out-of-fold risk)")
    p.add_argument("--edit-steps", metavar="A..B", default="-3..3",
                   help="steps along the health direction, +1 = +1 predicted log-hazard (default -3..3; also "
                        "-2..2:0.5 or -2,0,2)")
    p.add_argument("--generator", metavar="G", help="StyleGAN2 checkpoint to render edits (default: the one recorded "
                                                    "in the latent table's provenance)")
    p.add_argument("--edit-subjects", type=int, default=3, metavar="N", help="subjects edited by default (default 3)")
    p.add_argument("--region-subjects", type=int, default=20, metavar="N",
                   help="subjects whose edits are measured face vs background (default 20)")
    p.add_argument("--cv-folds", type=int, default=5, help="folds when cross-validating now (default 5)")
    p.add_argument("--cv-repeats", type=int, default=5, help="repeats when cross-validating now (default 5)")
    p.add_argument("--risk-groups", type=int, default=3, help="risk groups of the Kaplan-Meier plot (default 3, tertiles)")
    p.add_argument("--seed", type=int, default=0, help="cross-validation seed (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="parallel CV folds (default 1)")
    p.add_argument("--device", default="cpu", help="device of the generator (default cpu)")
    p.add_argument("--subgroups", metavar="COL,COL",
                   help="clinical columns whose subgroups are audited (default: the model's clinical covariates)")
    p.add_argument("--title", help="page title")
    p.add_argument("--sep", help="clinical CSV field separator (default: detected)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from facefeat.errors import ConfigError
    from facefeat.report.build import write_report

    for name in ("cv_folds", "cv_repeats", "edit_subjects", "region_subjects", "jobs"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be 1 or more, not {getattr(args, name)}")
    if args.cv_folds < 2:
        raise ConfigError(f"--cv-folds must be 2 or more, not {args.cv_folds}")
    from facefeat.devices import check_device

    device = check_device(args.device)
    out = write_report(
        args.run_dir, args.model_dir, args.out, clinical=args.clinical, subjects=args.subjects,
        edit_steps=args.edit_steps, generator=args.generator, n_edit_subjects=args.edit_subjects,
        n_region_subjects=args.region_subjects,
        cv_folds=args.cv_folds, cv_repeats=args.cv_repeats, risk_groups=args.risk_groups, seed=args.seed,
        trust=args.trust, subgroups=args.subgroups,
        n_jobs=args.jobs, device=device, title=args.title, sep=args.sep,
        command=command_line(args),
    )
    print(f"report written to {out}")
    return 0
