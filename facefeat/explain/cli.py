"""``facefeat explain direction|edit|regions|probe``: parsing and composition only.

The work is done by :mod:`facefeat.explain.direction`, :mod:`~facefeat.explain.edit`,
:mod:`~facefeat.explain.regions` and :mod:`~facefeat.explain.probes`; nothing heavy is
imported at module level.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facefeat.cli import accept_negative_values, add_trust_option

DIRECTION_EPILOG = """\
examples:
  facefeat explain direction --model models/faces_coxph -o health.npz
  facefeat explain direction --model models/late --block image --per unit_norm -o health_unit.npz

The direction v = g / |g|^2 (g: the model's log-hazard gradient in latent space, through its
scaling and PCA) moves the predicted log-hazard by exactly +1 per unit step (hazard x e).
Writes the .npz (vector, gradient, JSON description) and a readable .json next to it.
Needs a linear model (coxph, coxnet); see docs/explain.md for non-linear ones.
"""

EDIT_EPILOG = """\
examples:
  facefeat explain edit --model models/m1 --features runs/r1 --clinical clinical.csv \\
      --subject P017 --steps -3..3 --gif -o edits/
  facefeat explain edit --model models/m1 --features runs/r1 --subject P017 --subject P020 \\
      --steps -2..2:0.5 --layers coarse -o edits_coarse/
  facefeat explain edit --model models/m1 --features runs/r1 --subject P017 \\
      --probe probes/smoker.safetensors --steps -4,0,4 -o edits_smoker/

Writes OUT/<subject>_grid.png (frames with the model's predicted log-hazard and the hazard
relative to the unedited photo under each), OUT/<subject>_risk.csv and, with --gif,
OUT/<subject>.gif. Steps are in the direction's units (health: +1 log-hazard per step; positive
= sicker). Layers: coarse (4-8 px rows), middle (16-32 px), fine (64 px+), all, or rows "0-3".
The generator is the one recorded in the latent table (override with --generator).
"""

REGIONS_EPILOG = """\
examples:
  facefeat explain regions --model models/m1 --features runs/r1 --clinical clinical.csv -o regions/
  facefeat explain regions --model models/m1 --features runs/r1 --max-subjects 50 \\
      --steps -2,0,2 --layers middle --format parquet -o regions_middle/

Writes OUT/regions.csv (one row per subject x step: status, share / area / energy per region
face, below_chin, hair, background), OUT/regions_summary.csv (per region over subjects with a
detected face), OUT/layers.csv (direction norm share per W+ layer) and OUT/regions.png.
Landmarks are detected on each reconstruction (dlib 68 points); subjects where none is found
are rows with status no_face.
"""

PROBE_FIT_EPILOG = """\
examples:
  facefeat explain probe fit --features runs/r1 --labels clinical.csv --label smoker -o probes/smoker.safetensors
  facefeat explain probe fit --features runs/r1 --labels clinical.csv --label age --space w+ \\
      --n-components 32 -o probes/age.safetensors

Logistic probe for a two-valued label, ridge for a numeric one, on W (layer mean) or W+; prints
the cross-validated accuracy / AUC or R2. Use the probe as an edit direction with
'facefeat explain edit --probe FILE' or as features with 'facefeat explain probe apply'.
"""

PROBE_APPLY_EPILOG = """\
examples:
  facefeat explain probe apply --probe probes/smoker.safetensors --features runs/r1 -o runs/r1/probe_smoker.parquet

Writes a feature table (image_id, subject_id, status, error, probe__<name> and for logistic
probes probe__<name>_p); rows without a latent keep their status.
"""


def _parser(sub, name: str, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    return accept_negative_values(p)


def _model_args(p: argparse.ArgumentParser, *, features: bool = True) -> None:
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="directory written by 'facefeat fit'")
    add_trust_option(p)
    if features:
        p.add_argument("--features", required=True, metavar="RUN",
                       help="run folder (or latent Parquet table) the model's features come from")
        p.add_argument("--clinical", metavar="CSV", help="clinical table (needed when the model uses covariates; "
                                                         "they are held at each subject's values)")
        p.add_argument("--generator", metavar="CHECKPOINT",
                       help="generator to render with (default: the checkpoint in the latent table's provenance)")
        p.add_argument("--device", default="cpu", help="torch device for rendering: cpu (default), cuda, cuda:N or mps")
        g = p.add_mutually_exclusive_group()
        g.add_argument("--direction", metavar="NPZ", help="a direction file (default: the model's health direction)")
        g.add_argument("--probe", metavar="FILE", help="edit along a linear probe's direction instead")
        p.add_argument("--steps", default="-3..3", help="steps: LO..HI, LO..HI:STRIDE or a comma list (default -3..3)")
        p.add_argument("--layers", default=None,
                       help="W+ rows that move: coarse, middle, fine, all (default) or rows like 0-3 or 0,2,5")
    p.add_argument("--column", help="latent column when the model has several (e.g. stylegan2__latent)")


def add_commands(subparsers: Any) -> None:
    """Register ``facefeat explain`` and its subcommands."""
    fmt = argparse.RawDescriptionHelpFormatter
    top = subparsers.add_parser(
        "explain", help="health-attribute directions, face edits, where edits change the image, latent probes",
        description="Interpret a survival model fitted on StyleGAN latents: its coefficients as a latent "
                    "direction, photos edited along it with the predicted risk, and where the edits change the image.",
        formatter_class=fmt,
        epilog="run 'facefeat explain COMMAND --help' for examples; the maths is in docs/explain.md",
    )
    sub = top.add_subparsers(dest="explain_command", metavar="COMMAND")
    top.set_defaults(func=lambda args: (top.print_help(), 2)[1])

    p = _parser(sub, "direction", "save a linear model's health direction in latent space",
                "Map a linear Cox model's coefficients back to the latent space (undoing scaling and PCA) and save "
                "the direction with its units and provenance.", DIRECTION_EPILOG)
    _model_args(p, features=False)
    p.add_argument("--block", help="block holding the latent (late fusion: the latent block's model is used)")
    p.add_argument("--per", choices=("log_hazard", "unit_norm"), default="log_hazard",
                   help="unit: +1 log-hazard per step (default) or a step of length 1")
    p.add_argument("--generator", metavar="CHECKPOINT", help="record this generator (default: from the latent table)")
    p.add_argument("-o", "--out", required=True, metavar="NPZ", help="output .npz")
    p.set_defaults(func=cmd_direction)

    p = _parser(sub, "edit", "render subjects edited along a direction, with the model's risk per frame",
                "Move subjects' latents along the health direction (or a probe's), render them through the "
                "generator and write PNG grids (risk under each frame), risk tables and optional GIFs.", EDIT_EPILOG)
    _model_args(p)
    p.add_argument("--subject", action="append", required=True, metavar="ID", help="subject id (repeatable)")
    p.add_argument("--image", metavar="IMAGE_ID", help="which photo to edit (default: the subject's first ok photo)")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF per subject")
    p.add_argument("--frames", action="store_true", help="also write one PNG per frame")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_edit)

    p = _parser(sub, "regions", "share of each edit's pixel change in face / hair / background / below chin",
                "For a cohort, render each subject's edits and split the pixel-change energy between face, hair, "
                "background and below-chin regions (landmarks detected on the reconstruction); also the direction's "
                "norm per W+ layer. Writes tables and a plot.", REGIONS_EPILOG)
    _model_args(p)
    p.set_defaults(steps="-2,0,2")
    p.add_argument("--subjects", help="comma-separated subject ids (default: every subject of the model's table)")
    p.add_argument("--max-subjects", type=int, help="at most this many subjects")
    p.add_argument("--forehead", type=float, default=0.0, help="lift the face mask's brows by this many IOD")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="table format (default csv)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=cmd_regions)

    probe = sub.add_parser("probe", help="InterFaceGAN-style linear probes on latents: fit, apply",
                           description="Fit a linear classifier / regressor of a label on W or W+ latents, or apply "
                                       "one as features.", formatter_class=fmt,
                           epilog="run 'facefeat explain probe fit --help' or 'apply --help' for examples")
    psub = probe.add_subparsers(dest="probe_command", metavar="COMMAND")
    probe.set_defaults(func=lambda args: (probe.print_help(), 2)[1])
    p = _parser(psub, "fit", "fit a probe of a label on latents", "Fit a linear probe of a label column on latents.",
                PROBE_FIT_EPILOG)
    p.add_argument("--features", required=True, metavar="RUN", help="run folder or latent Parquet table")
    p.add_argument("--labels", required=True, metavar="CSV", help="table with the subject id and the label column")
    p.add_argument("--label", required=True, help="label column")
    p.add_argument("--id", dest="id_column", default="subject_id", help="subject id column (default subject_id)")
    p.add_argument("--latent-column", help="latent column (default: the table's only one)")
    p.add_argument("--space", choices=("w", "w+"), default="w", help="W (layer mean, default) or W+")
    p.add_argument("--kind", choices=("auto", "logistic", "ridge"), default="auto", help="model (default auto)")
    p.add_argument("--positive", help="label value of the positive class (logistic)")
    p.add_argument("--cv", type=int, default=5, help="outer CV folds (default 5)")
    p.add_argument("--n-components", type=int, help="fit on this many leading principal components")
    p.add_argument("--name", help="probe name (feature column probe__<name>; default the label)")
    p.add_argument("--seed", type=int, default=0, help="fold seed (default 0)")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="probe file (.safetensors)")
    p.set_defaults(func=cmd_probe_fit)
    p = _parser(psub, "apply", "score a latent table with a probe", "Apply a probe to every image of a latent "
                "table.", PROBE_APPLY_EPILOG)
    p.add_argument("--probe", required=True, metavar="FILE")
    p.add_argument("--features", required=True, metavar="RUN", help="run folder or latent Parquet table")
    p.add_argument("--latent-column", help="latent column (default: the probe's)")
    p.add_argument("-o", "--out", required=True, metavar="PARQUET")
    p.set_defaults(func=cmd_probe_apply)


# -- commands ------------------------------------------------------------------------------------


def cmd_direction(args: argparse.Namespace) -> int:
    from facefeat.errors import ConfigError
    from facefeat.explain.direction import health_direction
    from facefeat.io.jsonsafe import dumps_json

    out = Path(args.out)
    if out.suffix != ".npz":
        raise ConfigError(f"-o {out}: the direction file must end in .npz")
    d = health_direction(args.model, column=args.column, block=args.block, per=args.per, generator=args.generator,
                         trust=args.trust)
    d.save(out)
    out.with_suffix(".json").write_text(dumps_json(d.describe(), indent=2))
    shares = d.layer_shares()
    top = ", ".join(f"{i}: {s:.2f}" for i, s in sorted(enumerate(shares), key=lambda t: -t[1])[:3])
    print(f"{d.space.upper()} direction {list(d.vector.shape)} from {args.model}: {d.describe()['units']}; "
          f"|v| = {d.norm:.4g}" + (f"; largest layer shares {top}" if d.space == "wplus" else "") + f" -> {out}")
    return 0


def _direction(args, ctx):
    if args.direction:
        from facefeat.explain.direction import load_direction

        return load_direction(args.direction)
    if args.probe:
        from facefeat.explain.direction import LatentDirection
        from facefeat.explain.probes import load_probe

        return LatentDirection.from_probe(load_probe(args.probe))
    return ctx.direction()


def _setup(args):
    from facefeat.devices import check_device
    from facefeat.explain.edit import load_edit_context, load_edit_generator, parse_steps

    steps = parse_steps(args.steps)
    device = check_device(args.device)  # before the model and the tables are read
    ctx = load_edit_context(args.model, args.features, clinical=args.clinical, column=args.column, trust=args.trust)
    direction = _direction(args, ctx)
    G = load_edit_generator(ctx.generator_spec(args.generator), device=device)
    return ctx, direction, G, steps


def cmd_edit(args: argparse.Namespace) -> int:
    from facefeat.explain.edit import edit_subject

    ctx, direction, G, steps = _setup(args)
    out = Path(args.out)
    for subject in args.subject:
        res = edit_subject(ctx, subject, direction, steps, layers=args.layers, G=G, image_id=args.image)
        paths = res.save(out, gif=args.gif, frames=args.frames)
        lh = res.log_hazard
        print(f"{subject}: {len(steps)} frames, log-hazard {lh[0]:+.2f} .. {lh[-1]:+.2f} "
              f"(unedited {res.base_log_hazard:+.2f}) -> " + ", ".join(str(p) for k, p in paths.items()
                                                                        if not k.startswith("frame")))
    return 0


def cmd_regions(args: argparse.Namespace) -> int:
    from facefeat.explain.regions import cohort_regions, layer_table, plot_regions, save_table, summarize_regions

    ctx, direction, G, steps = _setup(args)
    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()] if args.subjects else None
    table = cohort_regions(ctx, subjects, direction, steps, layers=args.layers, G=G, forehead=args.forehead,
                           max_subjects=args.max_subjects, progress=True)
    summary = summarize_regions(table)
    layers = layer_table(direction, G.num_ws)
    out = Path(args.out)
    ext = "." + args.format
    save_table(table, out / f"regions{ext}")
    save_table(summary, out / f"regions_summary{ext}")
    save_table(layers, out / f"layers{ext}")
    plot_regions(summary, layers, out / "regions.png", title=f"{direction.name} direction, {args.model}")
    counts = summary.attrs.get("status_counts", {})
    face = summary.set_index("region")["mean_share"].get("face")
    print(f"{sum(counts.values())} subject(s) ({', '.join(f'{k}: {v}' for k, v in counts.items())}); mean share of "
          f"the change inside the face: {face:.3f}; tables and regions.png in {out}")
    return 0


def cmd_probe_fit(args: argparse.Namespace) -> int:
    from facefeat.explain.probes import fit_probe

    probe = fit_probe(args.features, args.labels, label_column=args.label, latent_column=args.latent_column,
                      space=args.space, kind=args.kind, positive=args.positive, cv=args.cv, random_state=args.seed,
                      id_column=args.id_column, name=args.name, n_components=args.n_components)
    path = probe.save(args.out)
    m = probe.metrics
    if probe.kind == "logistic":
        summary = (f"CV accuracy {m['cv_accuracy']:.3f} (baseline {m['baseline_accuracy']:.3f}), "
                   f"AUC {m['cv_roc_auc']:.3f}")
    else:
        summary = f"CV R2 {m['cv_r2']:.3f}, RMSE {m['cv_rmse']:.3g}"
    print(f"{probe.kind} probe {probe.name!r} on {probe.space.upper()} ({m['n']} subjects, {m['cv_folds']} folds): "
          f"{summary}; direction stability {m['cv_direction_cosine']:.2f} -> {path}")
    return 0


def cmd_probe_apply(args: argparse.Namespace) -> int:
    from facefeat.explain.probes import load_probe

    probe = load_probe(args.probe)
    table = probe.apply(args.features, args.out, column=args.latent_column)
    ok = sum(1 for s in table.column("status").to_pylist() if s == "ok")
    print(f"scored {ok} of {table.num_rows} image(s) with probe {probe.name!r} -> {args.out}")
    return 0
