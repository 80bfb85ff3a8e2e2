"""``facefeat robustness``: parsing and composition only; the work is in facefeat.robustness.study."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  facefeat robustness examples/faces/ --extractors landmarks,face_descriptor -o runs/robust
  facefeat robustness cohort.csv -e landmarks,attributes -o runs/robust --perturbations jpeg,downscale
  facefeat robustness photos/ -e stylegan2 -s stylegan2.checkpoint=G.pkl -s stylegan2.steps=100 \\
      --seeds 1,2,3 -o runs/robust_sg2
  # defaults, but JPEG at 95 and 30 and no mirror image
  facefeat robustness photos/ -e landmarks -o runs/r -s robustness.perturbations.jpeg=[95,30] \\
      -s robustness.perturbations.flip=[]

Each photo and its perturbed copies (JPEG 90/70/50, downscale 0.5/0.25, brightness and
contrast 0.8/1.2, rotation -5/+5 degrees, 5 % crop jitter, mirror) go through the normal
engine (cached and resumable: re-run the same command after a crash). Extractors with a 'seed'
setting are also run with --seeds. A manifest with several photos of a subject and a 'date'
column adds test-retest statistics. Writes DIR/robustness.parquet|csv (one row per feature and
perturbation), DIR/summary.parquet|csv, DIR/conditions.csv and the data dictionary DIR/README.md.
A YAML --config holds the run settings plus a 'robustness:' section (perturbations, seeds, form,
level, min_subjects, repeat_date_column, repeat_photos).
"""


def add_commands(subparsers) -> None:
    """Add ``robustness``."""
    p = subparsers.add_parser("robustness", help="feature reliability (ICC) under perturbations, seeds and repeat photos",
                              description="Run photos and perturbed copies through the engine and report each "
                                          "feature's intraclass correlation, Lin's CCC and within-subject CV.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="folder of photos, or a CSV/Parquet manifest (subject_id, path[, date])")
    p.add_argument("--out", "-o", help="output folder")
    p.add_argument("--extractors", "-e", help="comma-separated extractor names (see 'facefeat plugins')")
    p.add_argument("--config", "-c", help="YAML config: run settings plus a 'robustness:' section")
    p.add_argument("-s", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. -s robustness.perturbations.jpeg=[90,50] -s stylegan2.steps=50")
    p.add_argument("--perturbations", help="comma-separated families to run with their default strengths "
                                           "(jpeg, downscale, brightness, contrast, rotate, crop, flip); 'none' for none")
    p.add_argument("--seeds", help="comma-separated extra seeds for stochastic extractors (default 1,2); 'none' for none")
    p.add_argument("--form", help="ICC form of the icc column: ICC(1,1), ICC(2,1) (default), ICC(3,1), ICC(1,k), "
                                  "ICC(2,k), ICC(3,k)")
    p.add_argument("--jobs", "-j", type=int, help="engine worker processes (default 1)")
    p.add_argument("--batch-size", type=int, help="images per batch (default 8)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_robustness)


def robustness_config(args) -> dict:
    """The run config (with its ``robustness`` section) a command line describes."""
    from facefeat.engine.cli import run_config

    return run_config(args, sections=lambda config: _robustness_section(args, config))


def _robustness_section(args, config: dict) -> dict:
    from facefeat.errors import ConfigError
    from facefeat.robustness.perturb import DEFAULT_PERTURBATIONS

    section: dict = {}
    if args.perturbations:
        names = [x.strip() for x in args.perturbations.split(",") if x.strip()]
        unknown = [n for n in names if n not in DEFAULT_PERTURBATIONS and n != "none"]
        if unknown:
            raise ConfigError(f"--perturbations: unknown perturbation(s) {', '.join(unknown)}; "
                              f"known: {', '.join(DEFAULT_PERTURBATIONS)} (or none)")
        # the families named, with their default strengths; every other family off
        section["perturbations"] = {n: (v if n in names else []) for n, v in DEFAULT_PERTURBATIONS.items()}
    if args.seeds:
        try:
            section["seeds"] = [] if args.seeds.strip() == "none" else [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers or 'none', not {args.seeds!r}") from None
    if args.form:
        section["form"] = args.form
    if section:
        # --perturbations replaces the file's perturbation set as a whole, not family by family
        base = dict(config.get("robustness") or {})
        base.update(section)
        config["robustness"] = base
    return config


def cmd_robustness(args) -> int:
    from facefeat.robustness.study import run_robustness

    result = run_robustness(robustness_config(args), progress=not args.no_progress)
    print(result.line())
    import pandas as pd

    summary = pd.read_parquet(result.summary)
    top = summary[(summary["column"] == "*") & summary["scope"].isin(["all", "seeds", "repeat"])]
    for r in top.itertuples():
        head = f"  {r.extractor} [{r.perturbation}]: {r.n_defined} of {r.n_features} features defined"
        if r.n_defined:
            print(f"{head}; ICC >= 0.75: {r.share_ge_075:.0%}, >= 0.9: {r.share_ge_090:.0%} ({r.icc_form}, "
                  f"n = {r.n_subjects})")
        else:
            print(f"{head} ({r.n_subjects} complete subjects; the note column says why; conditions.csv "
                  "counts the photos without a usable row)")
    return 0
