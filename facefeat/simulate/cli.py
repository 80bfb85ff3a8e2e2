"""``facefeat simulate``: a planted-signal study through the real pipeline, and a power curve.

Only parsing and composition; the work is :mod:`facefeat.simulate.pipeline`. Nothing heavy is
imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  # the acceptance study: tiny test generator, 400 subjects, strong effect (HR e^2 per SD)
  facefeat simulate --n 400 --effect 2.0 --censoring 0.3 --baseline weibull \\
      --inversion projection --steps 1200 -o sim/n400

  # a power curve over cohort sizes (5 replicates each), plus the study at --n
  facefeat simulate --n 200 --effect 1.0 --grid 100,200,400,800 --replicates 5 -o sim/power

  # your own generator, an attribute direction from a probe, an e4e encoder for inversion
  facefeat simulate --generator models/ffhq256.safetensors --direction probes/age.safetensors \\
      --inversion encoder --encoder models/e4e_tiny.pt --n 400 -o sim/age

writes OUT/images/*.png, OUT/features/stylegan2.parquet (the stylegan2 extractor's layout),
OUT/clinical.csv (subject_id, time, event, true_risk, true_projection), OUT/truth.npz,
OUT/model/ (as 'facefeat fit' writes it), OUT/summary.json and summary.md, cv_*.json, and
with --grid: power.csv, power_replicates.csv and power.png. The clinical table holds the
true risk: fit other models on it with '--covariates none'.
"""


def _ints(text: str, what: str) -> list[int]:
    from facefeat.errors import ConfigError

    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers (e.g. 100,200,400), not {text!r}") from None
    if not vals:
        raise ConfigError(f"{what} must list at least one integer (e.g. 100,200,400)")
    return vals


def _params(items: list[str]) -> dict[str, Any] | None:
    from facefeat.errors import ConfigError

    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param must be KEY=VALUE (e.g. l1_ratio=0.5), not {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="planted-signal simulation and power curve (validate the pipeline before collecting photos)",
        description="Sample latents of a StyleGAN2 generator, render photos, simulate survival times with a known "
                    "hazard direction in W, then run the real pipeline (inversion -> feature table -> survival model "
                    "with cross-validation) and report how much of the signal comes back.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    g = p.add_argument_group("generator and latents")
    g.add_argument("--generator", default=None, metavar="G",
                   help="checkpoint file or registry name (default: the bundled 32 px tiny test generator)")
    g.add_argument("--psi", type=float, default=1.0, help="truncation psi of the sampled latents (default 1: none)")
    g.add_argument("--calibrate-output", choices=("auto", "on", "off"), default="auto",
                   help="rescale the generator output into [-1, 1]; auto: when > 5%% of pixels would be clipped "
                        "(untrained test generators)")
    g.add_argument("--render-noise", choices=("const", "random"), default="const",
                   help="noise maps of the renders (default: the generator's stored ones)")
    d = p.add_argument_group("design")
    d.add_argument("--n", type=int, default=400, help="subjects (default 400)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--direction", default="random",
                   help="true hazard direction in W: random (default), a probe file (.safetensors) or a .npy vector "
                        "of length w_dim (or [num_ws, w_dim], summed over layers)")
    d.add_argument("--effect", type=float, default=1.0, help="log hazard ratio per SD of the projection on the direction")
    d.add_argument("--baseline", choices=("weibull", "exponential"), default="weibull")
    d.add_argument("--shape", type=float, default=1.5, help="Weibull shape (default 1.5; exponential: 1)")
    d.add_argument("--scale", type=float, default=5.0, help="Weibull scale in time units (default 5)")
    d.add_argument("--censoring", type=float, default=0.3, help="target censored fraction in [0, 1) (default 0.3)")
    d.add_argument("--censoring-dist", choices=("uniform", "exponential"), default="uniform")
    i = p.add_argument_group("inversion")
    i.add_argument("--inversion", choices=("projection", "encoder"), default="projection")
    i.add_argument("--space", choices=("w", "wplus"), default="w", help="projection space (default w)")
    i.add_argument("--steps", type=int, default=600, help="projection steps (default 600)")
    i.add_argument("--encoder", default=None, metavar="PATH", help="e4e checkpoint for --inversion encoder")
    i.add_argument("--batch-size", type=int, default=400, help="images projected together (default 400)")
    i.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps; checked before anything runs")
    m = p.add_argument_group("survival model")
    m.add_argument("--model", choices=("coxnet", "coxph"), default="coxnet",
                   help="coxnet (default: l1_ratio 0.05, penalty by inner CV) or coxph (ridge alpha via --param)")
    m.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="model parameter, repeatable (e.g. alpha=10 for coxph, l1_ratio=0.5 for coxnet)")
    m.add_argument("--pca", default=None, help="PCA on the standardised latents: components (int) or variance (0-1)")
    m.add_argument("--folds", type=int, default=5)
    m.add_argument("--repeats", type=int, default=1, help="CV repeats (default 1)")
    w = p.add_argument_group("power curve")
    w.add_argument("--grid", default=None, help="cohort sizes, e.g. 100,200,400,800")
    w.add_argument("--replicates", type=int, default=5, help="replicates per size (default 5)")
    w.add_argument("--alpha", type=float, default=0.05, help="significance level of the power test")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from facefeat.devices import check_device
    from facefeat.errors import ConfigError
    from facefeat.simulate import design

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not (0 < args.alpha < 1):
        raise ConfigError(f"--alpha must be in (0, 1), got {args.alpha}")
    if args.inversion == "encoder" and not args.encoder:
        raise ConfigError("--inversion encoder needs --encoder PATH (an e4e checkpoint made for this generator)")
    pca = None
    if args.pca:
        try:
            pca = float(args.pca) if "." in args.pca else int(args.pca)
        except ValueError:
            raise ConfigError(f"--pca must be an integer or a fraction in (0, 1), not {args.pca!r}") from None
    grid = _ints(args.grid, "--grid") if args.grid else None
    design.check_design(n=args.n, effect=args.effect, censoring=args.censoring, baseline=args.baseline,
                        shape=args.shape, scale=args.scale, censoring_dist=args.censoring_dist,
                        truncation_psi=args.psi, folds=args.folds)
    for g in grid or []:
        design.check_design(n=g, censoring=args.censoring, folds=args.folds)
    if args.steps < 1:
        raise ConfigError(f"--steps must be a positive integer, got {args.steps}")
    device = check_device(args.device)
    out = Path(args.out)
    started = time.time()
    try:
        return _run(args, out=out, device=device, pca=pca, grid=grid)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(out, started, power=bool(grid))) from None


def _interrupted(out: Path, started: float, *, power: bool) -> str:
    """What an interrupted ``simulate`` leaves: it has no resume, so say what is lost."""
    def new(path: Path) -> bool:
        return path.is_file() and path.stat().st_mtime >= started

    if new(out / "summary.json"):  # write_study writes it last, whole: a finished study
        if not power or all(new(out / f) for f in ("power_replicates.csv", "power.csv", "power.png")):
            done = "the simulated study and the power curve are" if power else "the simulated study is"
            return f"{done} complete in {out}; nothing is lost"
        return (f"the simulated study is complete in {out} (summary.json) but the power curve was not finished: its "
                f"replicates are lost; simulate does not resume: re-run the command for the power curve (the study "
                f"is recomputed too)")
    written = out.is_dir() and any(p.stat().st_mtime >= started for p in out.rglob("*"))
    where = (f"{out} holds an incomplete study (summary.json, written last, is missing)" if written
             else f"nothing was written to {out}")
    return (f"simulate does not resume: the renders, the inversion and the model fits done so far are lost and "
            f"{where}; re-run the command to start over")


def _run(args: argparse.Namespace, *, out: Path, device: str, pca, grid) -> int:
    from facefeat.simulate import pipeline

    _stage(f"loading the generator ({args.generator or 'the bundled tiny test generator'}) on {device}")
    G, info = pipeline.load_simulation_generator(args.generator, device=device, calibrate=args.calibrate_output,
                                                 truncation_psi=args.psi)
    common = dict(direction=args.direction, effect=args.effect, baseline=args.baseline, shape=args.shape,
                  scale=args.scale, censoring=args.censoring, censoring_dist=args.censoring_dist,
                  truncation_psi=args.psi, render_noise=args.render_noise, inversion=args.inversion, space=args.space,
                  steps=args.steps, encoder=args.encoder, model=args.model, model_params=_params(args.param), pca=pca,
                  folds=args.folds, device=device, batch_size=args.batch_size, G=G, generator_info=info)
    how = f"{args.inversion}, {args.steps} steps" if args.inversion == "projection" else args.inversion
    _stage(f"rendering {args.n} faces and inverting them ({how}), then cross-validating the model; "
           f"nothing is written to {out} until the study is complete")
    result = pipeline.simulate(n=args.n, seed=args.seed, repeats=args.repeats, out=out, **common)
    print(f"simulated study of {args.n} subjects written to {out}\n")
    print(result.table())
    if grid:
        _stage(f"power curve over N = {', '.join(map(str, grid))}, {args.replicates} replicates each")
        # the study's cohort is the pool when it is large enough (power_curve renders its own otherwise)
        _, per_n = pipeline.power_curve(grid, replicates=args.replicates, alpha=args.alpha, seed=args.seed,
                                        pool=result.cohort, out=out, progress=lambda s: print("  " + s, flush=True), **common)
        cols = ["n", "replicates", "power", "oracle_power", "c_index_mean", "oracle_c_index_mean", "cosine_mean",
                "oracle_cosine_mean"]
        from facefeat.survival.validation import markdown_table

        print("\npower curve (power: out-of-fold risk score, Wald p < %g)\n" % args.alpha)
        print(markdown_table(per_n[cols]))
        print(f"wrote {out / 'power.csv'}, {out / 'power.png'}")
    return 0


def _stage(text: str) -> None:
    """One line on stderr when a long stage starts (stdout keeps the results)."""
    print(f"simulate: {text} ...", file=sys.stderr, flush=True)
