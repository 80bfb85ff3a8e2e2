"""Encoder vs projection vs hybrid inversion on a small generator: speed and quality.

Prints two tables, medians over ``--n`` held-out generator samples (pure-W latents from a seed
stream no training run uses; rendered with the generator's stored noise, 8-bit):

1. **Speed**: projection seconds per image at the ``stylegan2`` extractor's default settings
   (its default preset, batch 8, batch-invariant), e4e encoder images/s at batch 1 and
   16, and the ratio (how many images the encoder does in the time projection does one).
2. **Quality vs steps**: PSNR (dB) and MSE ([0, 1] scale) of the reconstructions at 0 % (the
   encoder alone), 10 %, 25 % and 100 % of the default steps, for projection started at the
   mean w (the extractor's ``init=w_avg``, NVIDIA's schedule) and at the encoder's codes
   (``init=encoder``, the hybrid schedule: learning rate 0.03, no latent noise); ratios are
   against w_avg at 100 %, measured in the same run.

The encoder must belong to the generator (same ``num_ws``, ``w_dim`` 512). Without
``--encoder`` the script trains one with ``facefeat.training.encoder.train_encoder`` on the
toy 32 px generator (``toy_generator()``, w_dim 512: the repository's tiny fixture generators
have w_dim 64, which e4e codes cannot drive); if that module is not there it says so and runs
the w_avg rows only. ``--simulated-start SIGMA`` adds rows started at the true latent plus
Gaussian noise (SIGMA x the w spread / sqrt(512) per element): what a given encoder error
buys, independent of any encoder.

    .venv/bin/python benchmarks/bench_hybrid.py --encoder runs/enc/encoder-final.pt
    .venv/bin/python benchmarks/bench_hybrid.py --train-steps 400 --threads 2
    .venv/bin/python benchmarks/bench_hybrid.py --encoder E.pt --generator G.pkl --n 16 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from facefeat.runtime import configure_runtime

configure_runtime()  # the product's settings, before torch loads (threads reset from --threads below)
import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _extractor_defaults() -> dict:
    """The stylegan2 extractor's projection settings (its config schema defaults)."""
    from facefeat_builtins.stylegan2 import CONFIG_SCHEMA, projection_kwargs

    props = CONFIG_SCHEMA["properties"]
    kw = projection_kwargs({k: v["default"] for k, v in props.items() if "default" in v})
    return {"steps": kw.pop("num_steps"), "batch_size": props["batch_size"]["default"],
            "encoder_learning_rate": props["encoder_learning_rate"]["default"],
            "encoder_noise_factor": props["encoder_noise_factor"]["default"], "project": kw}


def _train_encoder(args):
    """``(path or None, note, generator or None)``."""
    try:
        from facefeat.training.encoder import EncoderTrainingConfig, toy_generator, train_encoder
    except ImportError as exc:
        return None, (f"no --encoder given and the encoder trainer is not available ({exc}); "
                      f"train one with 'facefeat train encoder --generator G --synthetic N' and pass --encoder"), None
    out = Path(args.train_out or tempfile.mkdtemp(prefix="bench_hybrid_enc_"))
    cfg = EncoderTrainingConfig(steps=args.train_steps, synthetic=args.train_pool, batch_size=args.train_batch,
                                lr=args.train_lr, eval_every=0, sample_every=0, save_every=0)
    t0 = time.perf_counter()
    G = toy_generator(device=args.device)
    res = train_encoder(G, out=out, config=cfg, device=args.device, progress=False)
    return Path(res.final), (f"trained an encoder for toy_generator(): {args.train_steps} steps x batch "
                             f"{args.train_batch}, pool {args.train_pool}, lr {args.train_lr} in "
                             f"{time.perf_counter() - t0:.0f} s -> {res.final}"), G


def _generator(args, ck, trained_G, device):
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.registry import resolve_model

    if args.generator:
        return load_generator(resolve_model(args.generator), device=device), args.generator
    if trained_G is not None:
        return trained_G, "facefeat.training.encoder.toy_generator() (the encoder was trained for it here)"
    if ck is not None and ck.decoder is not None:
        return ck.decoder, f"{ck.path} [bundled decoder]"
    try:
        from facefeat.training.encoder import toy_generator
    except ImportError:
        sys.exit("no --generator and no encoder with a bundled decoder: pass --generator")
    return toy_generator(device=device), "facefeat.training.encoder.toy_generator()"


def _row(label, pct, steps, res_psnr, res_mse, steps_taken, secs, ref_psnr):
    p, m = float(np.median(res_psnr)), float(np.median(res_mse))
    st = "-" if steps_taken is None else f"{float(np.median(steps_taken)):.0f}"
    return (f"{label:<12} {pct:>5} {steps:>6} {st:>6} {p:>9.2f} {m:>10.5f} {secs:>8.3f} "
            f"{p - ref_psnr:>+9.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", help="e4e checkpoint for the generator (default: train one, see above)")
    ap.add_argument("--generator", help="generator checkpoint (default: the encoder's bundled decoder)")
    ap.add_argument("--n", type=int, default=16, help="held-out samples (default 16)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 1.0])
    ap.add_argument("--steps", type=int, default=None, help="100 %% of the steps (default: the extractor's, 500)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of the encoder (after a warm-up) and of "
                    "the projection speed run (one extractor batch of images at the default steps)")
    ap.add_argument("--seed", type=int, default=987654, help="seed of the held-out latents")
    ap.add_argument("--simulated-start", type=float, default=None, metavar="SIGMA")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--train-batch", type=int, default=8)
    ap.add_argument("--train-pool", type=int, default=20000)
    ap.add_argument("--train-lr", type=float, default=1e-4)
    ap.add_argument("--train-out", default=None)
    args = ap.parse_args(argv)
    # Subnormal floats are flushed in every intra-op thread by configure_runtime (on the toy
    # generator some targets drive the projection into subnormal values: 10-20x slower batches).
    runtime = configure_runtime(threads=args.threads) if args.threads else configure_runtime()
    device = torch.device(args.device)
    flush = runtime["flush_denormal"]

    from facefeat.inversion import project, w_stats
    from facefeat.inversion.metrics import image_mse, synth_to_uint8
    from facefeat.models.e4e import encode, load_e4e, read_e4e_header

    d = _extractor_defaults()
    steps_full = args.steps or d["steps"]
    note = trained_G = None
    enc_path = Path(args.encoder) if args.encoder else None
    if enc_path is None:
        enc_path, note, trained_G = _train_encoder(args)
    ck = None
    if enc_path is not None:
        bundled = read_e4e_header(enc_path).decoder is not None and not args.generator and trained_G is None
        ck = load_e4e(enc_path, device=device, decoder_loader="default" if bundled else None)
    G, gen_label = _generator(args, ck, trained_G, device)
    if ck is not None and ck.n_styles != G.num_ws:
        sys.exit(f"encoder {enc_path} has {ck.n_styles} styles, generator {gen_label} num_ws={G.num_ws}")
    print(f"generator: {gen_label} ({G.img_resolution} px, num_ws {G.num_ws}, w_dim {G.w_dim}); "
          f"device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"flush_denormal={bool(flush)}")
    if note:
        print(note)

    # held-out targets
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(args.n, G.z_dim, generator=g).to(device))
        crops = synth_to_uint8(G.synthesis(ws_true, noise_mode="const"))
    target = torch.from_numpy(crops).permute(0, 3, 1, 2).float().to(device)
    stats = w_stats(G, d["project"]["w_avg_samples"], seed=d["project"]["w_avg_seed"])
    base = dict(d["project"], batch_size=d["batch_size"], w_stats_cache=stats, seed=list(range(args.n)),
                device=device)
    base.pop("init", None)

    def run(init, steps, hybrid):
        kw = dict(base, num_steps=steps, init=init)
        if hybrid:
            kw.update(initial_learning_rate=d["encoder_learning_rate"], initial_noise_factor=d["encoder_noise_factor"])
        _sync(device)
        t = time.perf_counter()
        r = project(G, target, **kw)
        _sync(device)
        return r, (time.perf_counter() - t) / args.n

    # 1. speed: the median of --reps runs of one extractor batch, so a burst of foreign load on a
    # shared machine does not decide the ratio
    nb = min(args.n, d["batch_size"])
    proj_times = []
    for _ in range(args.reps):
        _sync(device)
        t = time.perf_counter()
        project(G, target[:nb], **dict(base, num_steps=steps_full, init="w_avg", seed=list(range(nb))))
        _sync(device)
        proj_times.append((time.perf_counter() - t) / nb)
    proj_s = statistics.median(proj_times)
    enc_rows = []
    codes = None
    if ck is not None:
        for bs in (1, 16):
            times = []
            for rep in range(args.reps + 1):
                _sync(device)
                t = time.perf_counter()
                codes = encode(ck.encoder, crops, latent_avg=ck.latent_avg, batch_size=bs, device=device)
                _sync(device)
                if rep:
                    times.append(time.perf_counter() - t)
            enc_rows.append((bs, args.n / statistics.median(times)))
    print(f"\nSpeed (projection: the stylegan2 extractor's defaults, {steps_full} steps, batch {nb}, "
          f"batch_invariant={d['project']['batch_invariant']}, early stopping patience "
          f"{d['project']['early_stop_patience']}; median of {args.reps} runs: "
          f"{', '.join(f'{x:.2f}' for x in proj_times)} s/image; encoder: {args.n} images, median of {args.reps})")
    print(f"{'method':<30} {'images/s':>9} {'s/image':>9} {'vs projection':>14}")
    print(f"{'projection (w_avg init)':<30} {1 / proj_s:>9.3f} {proj_s:>9.3f} {1.0:>13.1f}x")
    for bs, ips in enc_rows:
        print(f"{'e4e encoder, batch ' + str(bs):<30} {ips:>9.2f} {1 / ips:>9.4f} {ips * proj_s:>13.0f}x")
    if ck is None:
        print("(no encoder: encoder rows skipped)")

    # 2. quality vs steps
    full, full_s = run("w_avg", steps_full, False)
    ref_psnr = float(np.median(full.psnr.numpy()))
    print(f"\nQuality vs steps (medians over {args.n} held-out samples; dPSNR = PSNR minus w_avg at 100 %; "
          f"s/img = wall time per image of that one run; taken = median steps after early stopping)")
    print(f"{'init':<12} {'%':>5} {'steps':>6} {'taken':>6} {'PSNR dB':>9} {'MSE':>10} {'s/img':>8} {'dPSNR':>9}")
    starts = {"w_avg": None}
    if codes is not None:
        starts["encoder"] = codes.to(device)
    if args.simulated_start is not None:
        noise = torch.randn(ws_true.shape, generator=torch.Generator().manual_seed(1)).to(device)
        starts[f"true+{args.simulated_start:g}"] = ws_true + args.simulated_start * stats[1] / G.w_dim ** 0.5 * noise
    for label, init in starts.items():
        if init is not None:
            with torch.no_grad():
                mse0 = image_mse(G.synthesis(init, noise_mode="const"), target).double().cpu().numpy()
            print(_row(label, "0", 0, -10 * np.log10(mse0), mse0, None, 0.0, ref_psnr))
        for frac in args.fractions:
            steps = max(1, int(round(frac * steps_full)))
            if label == "w_avg" and steps == steps_full:
                r, secs = full, full_s
            else:
                r, secs = run("w_avg" if init is None else init, steps, init is not None)
            print(_row(label, f"{frac * 100:g}", steps, r.psnr.numpy(), r.mse.numpy(), r.steps.numpy(), secs,
                       ref_psnr))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
