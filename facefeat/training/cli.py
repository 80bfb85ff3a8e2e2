"""``facefeat train generator``: StyleGAN2 fine-tuning on the command line (``train encoder``: encoder_cli).

``add_commands`` adds the ``train`` command group; its subcommands come from
``add_train_commands(train_subparsers)`` functions: this module's (``generator``) and those of
the modules in :data:`TRAIN_COMMAND_MODULES` (skipped while they do not exist), so another
trainer (``facefeat train encoder``) joins the group by providing such a function in one of
those modules, without touching this file's wiring. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_RAW = argparse.RawDescriptionHelpFormatter

#: Modules that add subcommands under ``facefeat train`` through ``add_train_commands(sub)``.
TRAIN_COMMAND_MODULES = ("facefeat.training.encoder_cli",)

#: What Ctrl-C keeps of a training run (printed by ``facefeat.cli.main``): both trainers resume exactly.
INTERRUPT_NOTE = ("snapshots written so far are kept in --out; add --resume to the same command to continue from "
                  "the newest (training since that snapshot is lost)")

TRAIN_EPILOG = """\
Examples:
  facefeat train generator --init nvidia-ffhq-256 --images runs/cohort --kimg 200 --out runs/ft256
  facefeat train generator --resume --out runs/ft256 --kimg 400     # continue, and train longer
"""

GENERATOR_EPILOG = """\
Examples:
  # align the cohort once with the engine (keeps 256 px FFHQ crops in RUN/.cache/aligned) ...
  facefeat extract photos/ --out runs/cohort -s align.sizes=[256]
  # ... then fine-tune NVIDIA's FFHQ 256 generator on them with ADA and x-flips
  facefeat train generator --init nvidia-ffhq-256 --images runs/cohort --mirror \\
      --kimg 200 --device cuda --out runs/ft256
  # a folder of raw photos, aligned on the fly; FreezeD on the first 4 D layers
  facefeat train generator --init ffhq-256 --images photos/ --align --freezed 4 --out runs/ft
  # resume the newest snapshot after an interruption (same losses as an uninterrupted run)
  facefeat train generator --resume --out runs/ft256
  # tiny CPU smoke run from scratch
  facefeat train generator --init scratch --resolution 32 --channel-base 1024 --images crops/ \\
      --kimg 0.5 --batch 8 --metrics none --out /tmp/smoke

Writes OUT/network-snapshot-<nimg>.{safetensors,json,state.pt} (G_ema, G, D in facefeat's
format + the resumable state; load_generator(path) gives G_ema), OUT/generator-final.*
(G_ema only), OUT/metrics.jsonl (one line per tick, metric evaluation, snapshot),
OUT/reals.png and OUT/fakes-<nimg>.png (sample grids from fixed latents) and
OUT/training_options.json. KID/FID use dlib's face descriptor unless --metric-network names a
TorchScript feature network; the output names the network used. Weights fine-tuned from
NVIDIA's models stay under NVIDIA's non-commercial licence.
"""


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group and its subcommands."""
    train = subparsers.add_parser(
        "train",
        help="train networks: fine-tune a StyleGAN2 generator on a cohort's photos; train an e4e encoder for it",
        description="Training commands. 'generator' fine-tunes (or trains) a StyleGAN2 generator with\n"
                    "R1 / path-length regularisation, ADA and an EMA generator; 'encoder' trains an e4e\n"
                    "encoder for a (fine-tuned) generator on its samples and/or aligned photos. Runs resume exactly.",
        formatter_class=_RAW,
        epilog=TRAIN_EPILOG,
    )
    train.set_defaults(func=lambda args: _help(train))
    sub = train.add_subparsers(dest="train_command", metavar="SUBCOMMAND")
    add_train_commands(sub)
    from facefeat.cli import add_optional_commands

    add_optional_commands(sub, TRAIN_COMMAND_MODULES, "add_train_commands")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _metrics(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("", "none"):
        return ()
    items = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    bad = sorted(set(items) - {"kid", "fid", "proj"})
    if bad:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {bad}; use a comma list of kid, fid, proj, or none")
    return items


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``generator`` to the ``facefeat train`` subcommands."""
    p = sub.add_parser(
        "generator",
        help="fine-tune a StyleGAN2 generator on aligned faces (R1, path length, ADA, EMA; resumable)",
        description="Fine-tune (or train from scratch) a StyleGAN2 generator on FFHQ-aligned face crops,\n"
                    "as StyleGAN2-ADA does: non-saturating logistic loss, lazy R1 and path-length\n"
                    "regularisation, style mixing, G EMA, adaptive discriminator augmentation.\n"
                    "Defaults are the published ones ('auto' = stylegan2-ada-pytorch --cfg=auto).",
        formatter_class=_RAW,
        epilog=GENERATOR_EPILOG,
    )
    g = p.add_argument_group("input and output")
    g.add_argument("--init", metavar="CKPT",
                   help="starting weights: a checkpoint (NVIDIA .pkl, rosinality .pt, facefeat .safetensors), a "
                        "registry name (nvidia-ffhq-256; alias ffhq-256) or 'scratch'")
    g.add_argument("--images", metavar="DIR",
                   help="a 'facefeat extract' run folder (its aligned-crop cache), a folder of aligned crops, or "
                        "photos with --align")
    g.add_argument("--align", action="store_true", help="detect and FFHQ-align the faces in --images on the fly")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder (snapshots, logs, samples)")
    g.add_argument("--resume", nargs="?", const=True, default=False, metavar="SNAPSHOT",
                   help="continue the newest snapshot in --out (or the one given) exactly; --images defaults "
                        "to the run's own")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps; checked before training starts")
    g.add_argument("--kimg", type=float, default=None, help="total length in thousands of real images (default 200)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    h = p.add_argument_group("hyperparameters (default: auto / published)")
    h.add_argument("--batch", type=int, help="minibatch size (auto: min(4096 // res, 32))")
    h.add_argument("--glr", type=float, help="G learning rate (auto: 0.0025, 0.002 at >= 1024 px)")
    h.add_argument("--dlr", type=float, help="D learning rate (auto as --glr)")
    h.add_argument("--gamma", type=float, help="R1 weight (auto: 0.0002 * res^2 / batch; 0 disables)")
    h.add_argument("--r1-interval", type=int, help="lazy R1 interval (16)")
    h.add_argument("--pl-weight", type=float, help="path-length weight (2; 0 disables)")
    h.add_argument("--pl-interval", type=int, help="lazy path-length interval (4)")
    h.add_argument("--mixing", type=float, help="style-mixing probability (0.9)")
    h.add_argument("--ema-kimg", type=float, help="G EMA half-life in kimg (auto: batch * 10 / 32)")
    h.add_argument("--ema-rampup", type=float, help="EMA ramp-up (0.05; negative: none)")
    h.add_argument("--seed", type=int, help="random seed (0)")
    h.add_argument("--nan-policy", choices=("stop", "sanitize"), help="on a non-finite loss/gradient (stop)")

    a = p.add_argument_group("limited data")
    a.add_argument("--aug", choices=("ada", "fixed", "none"), help="augmentation mode (ada)")
    a.add_argument("--p", type=float, help="initial (ada) or fixed augmentation probability (0)")
    a.add_argument("--target", type=float, help="ADA target for r_t = E[sign(D(real))] (0.6)")
    a.add_argument("--ada-kimg", type=float, help="kimg for ADA to move p by 1 (500)")
    a.add_argument("--mirror", action="store_true", help="add x-flipped copies of the images")
    a.add_argument("--freezed", type=int, help="FreezeD: freeze the first K discriminator layers (0)")

    s = p.add_argument_group("from scratch")
    s.add_argument("--resolution", type=int, help="image size for --init scratch")
    s.add_argument("--cfg", default="auto", choices=("auto", "paper256", "stylegan2"), help="network shape (auto)")
    s.add_argument("--channel-base", type=int, help="override the channel base (small values for smoke tests)")

    m = p.add_argument_group("logging and metrics")
    m.add_argument("--tick", type=float, help="kimg between log lines (4)")
    m.add_argument("--snap", type=float, help="kimg between snapshots (50)")
    m.add_argument("--sample-every", type=float, help="kimg between sample grids (as --snap by default: 50)")
    m.add_argument("--metrics", type=_metrics, help="comma list of kid, fid, proj, or none (kid,fid,proj)")
    m.add_argument("--metrics-every", type=float, help="kimg between metric evaluations (0: at the end only)")
    m.add_argument("--metric-network", metavar="FILE",
                   help="TorchScript feature network for KID/FID (default: dlib's face descriptor)")
    m.add_argument("--metric-samples", type=int, help="generated images for KID/FID (default max(N, 500))")
    m.add_argument("--holdout", type=int, help="images kept out of training for the projection metric (8)")
    m.add_argument("--proj-steps", type=int, help="projection steps per held-out image (100)")
    p.set_defaults(func=_cmd_generator, on_interrupt=INTERRUPT_NOTE)


_CONFIG_ARGS = {
    "kimg": "kimg", "batch": "batch_size", "glr": "g_lr", "dlr": "d_lr", "gamma": "r1_gamma",
    "r1_interval": "r1_interval", "pl_weight": "pl_weight", "pl_interval": "pl_interval",
    "mixing": "style_mixing_prob", "ema_kimg": "ema_kimg", "ema_rampup": "ema_rampup", "seed": "seed",
    "nan_policy": "nan_policy", "aug": "augment", "p": "augment_p", "target": "ada_target",
    "ada_kimg": "ada_kimg", "freezed": "freeze_d", "tick": "tick_kimg", "snap": "snapshot_kimg",
    "sample_every": "sample_kimg", "metrics": "metrics", "metrics_every": "metrics_kimg",
    "metric_samples": "metric_samples", "holdout": "holdout", "proj_steps": "proj_steps",
}


def _cmd_generator(args: argparse.Namespace) -> int:
    from facefeat.devices import check_device
    from facefeat.errors import ConfigError
    from facefeat.training.config import TrainingConfig
    from facefeat.training.loop import format_metrics, train_generator

    if not args.resume and (args.init is None or args.images is None):
        raise ConfigError("facefeat train generator needs --init and --images (or --resume to continue a run)")
    device = check_device(args.device)
    changes = {field: getattr(args, arg) for arg, field in _CONFIG_ARGS.items() if getattr(args, arg) is not None}
    if changes.get("ema_rampup") is not None and changes["ema_rampup"] < 0:
        changes["ema_rampup"] = None
    if args.mirror:
        changes["mirror"] = True
    if "snapshot_kimg" in changes and "sample_kimg" not in changes:
        changes["sample_kimg"] = changes["snapshot_kimg"]
    config = TrainingConfig(**changes)
    resume = args.resume if args.resume is True else (Path(args.resume) if args.resume else False)
    result = train_generator(init=args.init, images=args.images, out=args.out, config=config, device=device,
                             resume=resume,
                             align=args.align, feature_network=args.metric_network, resolution=args.resolution,
                             scratch_cfg=args.cfg, channel_base=args.channel_base, progress=not args.no_progress)
    print(f"trained to {result.kimg:.3f} kimg ({result.step} steps); final G_ema: {result.final}")
    if result.snapshots:
        print(f"last snapshot (resumable, loads with load_generator): {result.snapshots[-1]}.safetensors")
    if result.metrics:
        print(format_metrics(result.metrics))
    print(f"log: {result.out / 'metrics.jsonl'}")
    return 0
