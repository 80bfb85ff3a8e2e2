"""``facefeat train encoder``: train an e4e encoder for a (fine-tuned) StyleGAN2 generator.

Joins the ``facefeat train`` group through :func:`add_train_commands` (listed in
``facefeat.training.cli.TRAIN_COMMAND_MODULES``). Nothing heavy is imported at module level;
the work is :func:`facefeat.training.encoder.train_encoder`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

_RAW = argparse.RawDescriptionHelpFormatter

ENCODER_EPILOG = """\
Examples:
  # an encoder for a cohort-fine-tuned 256 px generator, on its own samples and the cohort's crops
  facefeat train encoder --generator runs/ft256/generator-final.safetensors --synthetic 100000 \\
      --images runs/cohort --steps 20000 --device cuda --out runs/enc256
  # start from the official FFHQ e4e encoder (1024 px generators: 18 styles must match)
  facefeat train encoder --generator nvidia-ffhq-1024 --init-from e4e_ffhq_encode.pt --images crops/ \\
      --out runs/enc1024
  # with the perceptual loss (LPIPS-VGG from its two weight files)
  facefeat train encoder --generator G.pkl --synthetic 50000 --lpips-vgg16 vgg16-397923af.pth \\
      --lpips-lin lpips_vgg_v0.1.pth --out runs/enc
  # continue the newest snapshot after an interruption (same losses as an uninterrupted run), longer
  facefeat train encoder --resume --out runs/enc256 --steps 40000
  # CPU smoke run on a small generator
  facefeat train encoder --generator tiny32.safetensors --synthetic 1000 --steps 20 --batch-size 4 \\
      --out /tmp/enc-smoke

Writes OUT/encoder-final.pt (official e4e layout: encoder.*, decoder.* = the generator in
rosinality's layout when it has one, opts, latent_avg = the generator's mean w; loads with
load_e4e and the e4e extractor), OUT/encoder-snapshot-<step>.pt (resumable; the newest
--keep-snapshots are kept), OUT/metrics.jsonl (per-step losses and held-out evaluations:
reconstruction MSE vs the w_avg render, latent correlation), OUT/samples-<step>.png
(held-out inputs over their reconstructions) and OUT/training_options.json.
The generator's w_dim must be 512 (e4e's style width).
"""

#: CLI option -> EncoderTrainingConfig field.
_CONFIG_ARGS = {
    "steps": "steps", "batch_size": "batch_size", "lr": "lr", "lambda_pixel": "lambda_pixel",
    "lambda_lpips": "lambda_lpips", "lambda_latent": "lambda_latent", "lambda_delta": "lambda_delta",
    "synthetic": "synthetic", "synthetic_fraction": "synthetic_fraction", "mixing": "mixing_prob",
    "truncation": "truncation_psi", "input_size": "input_size", "progressive_every": "progressive_every",
    "holdout": "holdout", "n_eval": "n_eval", "eval_every": "eval_every", "sample_every": "sample_every",
    "save_every": "save_every", "keep_snapshots": "keep_snapshots", "seed": "seed",
}


def add_train_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``encoder`` to the ``facefeat train`` subcommands."""
    from facefeat.training.cli import INTERRUPT_NOTE

    p = sub.add_parser(
        "encoder",
        help="train an e4e encoder for a (fine-tuned) StyleGAN2 generator (resumable)",
        description="Train an e4e encoder (IR-SE-50 + feature pyramid, W+ codes as deltas on w0) for a\n"
                    "given generator, on its own samples (known latents: latent loss) and/or real aligned\n"
                    "crops. Losses: pixel L2, LPIPS (with --lpips-*), latent L2, e4e's delta regulariser.",
        formatter_class=_RAW,
        epilog=ENCODER_EPILOG,
    )
    g = p.add_argument_group("input and output")
    g.add_argument("--generator", metavar="CKPT",
                   help="the generator (NVIDIA .pkl, rosinality .pt, facefeat .safetensors or a registry name); "
                        "w_dim must be 512. On --resume: the run's own by default")
    g.add_argument("--images", metavar="DIR",
                   help="real aligned crops: a 'facefeat extract' run folder, a folder of square aligned crops, or "
                        "photos with --align")
    g.add_argument("--align", action="store_true", help="detect and FFHQ-align the faces in --images on the fly")
    g.add_argument("--synthetic", type=int, metavar="N",
                   help="train on a pool of N generator samples (true latents known); with --images, "
                        "--synthetic-fraction of each batch")
    g.add_argument("--out", required=True, metavar="DIR", help="output folder")
    g.add_argument("--resume", nargs="?", const=True, default=False, metavar="SNAPSHOT",
                   help="continue the newest encoder snapshot in --out (or the one given) exactly")
    g.add_argument("--init-from", metavar="E4E.pt",
                   help="start from an official e4e checkpoint (its style count must match the generator)")
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps; checked before training starts")
    g.add_argument("--no-decoder", action="store_true",
                   help="do not put the generator into the final checkpoint as decoder.*")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    h = p.add_argument_group("hyperparameters")
    h.add_argument("--steps", type=int, help="total optimiser steps (20000)")
    h.add_argument("--batch-size", type=int, help="images per step (8)")
    h.add_argument("--lr", type=float, help="Adam learning rate (1e-4)")
    h.add_argument("--lambda-pixel", type=float, help="pixel L2 weight (1.0)")
    h.add_argument("--lambda-lpips", type=float, help="LPIPS weight when --lpips-* are given (0.8)")
    h.add_argument("--lambda-latent", type=float, help="latent L2 weight on synthetic samples (1.0)")
    h.add_argument("--lambda-delta", type=float, help="e4e delta regularisation weight (2e-4)")
    h.add_argument("--synthetic-fraction", type=float, help="synthetic share of a batch with --images (0.5)")
    h.add_argument("--mixing", type=float, help="style-mixing probability of synthetic samples (0.5)")
    h.add_argument("--truncation", type=float, help="truncation psi of synthetic samples (1.0)")
    h.add_argument("--input-size", type=int,
                   help="encoder input side (default: 256 for >= 256 px generators, else the resolution, >= 32)")
    h.add_argument("--progressive-every", type=int,
                   help="e4e progressive training: one more style row every K steps (0: all rows from the start)")
    h.add_argument("--lpips-vgg16", metavar="FILE", help="torchvision vgg16-397923af.pth (enables LPIPS)")
    h.add_argument("--lpips-lin", metavar="FILE", help="lpips weights/v0.1/vgg.pth (enables LPIPS)")
    h.add_argument("--seed", type=int, help="random seed (0)")

    m = p.add_argument_group("logging, evaluation and snapshots")
    m.add_argument("--holdout", type=int, help="real images kept out for evaluation (8)")
    m.add_argument("--n-eval", type=int, help="held-out generator samples for evaluation (64)")
    m.add_argument("--eval-every", type=int, help="steps between held-out evaluations (500)")
    m.add_argument("--sample-every", type=int, help="steps between sample grids (500)")
    m.add_argument("--save-every", type=int, help="steps between resumable snapshots (1000)")
    m.add_argument("--keep-snapshots", type=int, help="newest snapshots to keep (2; 0 keeps all)")
    p.set_defaults(func=_cmd_encoder, on_interrupt=INTERRUPT_NOTE)


def _cmd_encoder(args: argparse.Namespace) -> int:
    from facefeat.devices import check_device
    from facefeat.errors import ConfigError
    from facefeat.training.encoder import EncoderTrainingConfig, format_eval, train_encoder

    if not args.resume:
        if args.generator is None:
            raise ConfigError("facefeat train encoder needs --generator (or --resume to continue a run)")
        if args.images is None and not args.synthetic:
            raise ConfigError("facefeat train encoder needs data: --images DIR (aligned crops) and/or "
                              "--synthetic N (generator samples)")
    if (args.lpips_vgg16 is None) != (args.lpips_lin is None):
        raise ConfigError("LPIPS needs both --lpips-vgg16 and --lpips-lin (or neither)")
    device = check_device(args.device)
    changes = {field: getattr(args, arg) for arg, field in _CONFIG_ARGS.items() if getattr(args, arg) is not None}
    config = EncoderTrainingConfig(**changes)
    lpips = (args.lpips_vgg16, args.lpips_lin) if args.lpips_vgg16 else None
    resume = args.resume if args.resume is True else (Path(args.resume) if args.resume else False)
    res = train_encoder(args.generator, out=args.out, images=args.images, config=config, init_from=args.init_from,
                        lpips=lpips, device=device, resume=resume, progress=not args.no_progress,
                        include_decoder=not args.no_decoder, align=args.align)
    print(f"trained {res.step} steps ({res.sec_per_step:.3f} s/step); e4e checkpoint: {res.final}")
    if res.snapshots:
        print(f"last snapshot (resumable): {res.snapshots[-1]}")
    if res.last_eval:
        print(format_eval(res.last_eval))
    print(f"log: {res.out / 'metrics.jsonl'}")
    return 0
