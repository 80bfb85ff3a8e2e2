"""Time-to-quality of projection at 256 px: NVIDIA's 1000-step projector against facefeat.

What is measured
----------------
For every target image the reference is NVIDIA's own ``projector.project`` (stylegan2-ada-pytorch,
from a checkout given by ``--nvidia-root``; nothing of theirs is in this repository) with its
defaults: space W, 1000 steps, its learning-rate and latent-noise schedules and noise-map
regulariser. Its loss is a VGG16 LPIPS-like distance whose weights it downloads; no network is
reachable here, so **both sides use MSE**: the VGG module is replaced by one whose "features"
make NVIDIA's ``dist`` exactly facefeat's ``loss="mse"`` (mean squared error on the [-1, 1]
scale). The PSNR of NVIDIA's final latent (rendered as its ``run_projection`` renders it, with
the generator's stored noise) is the photo's **bar**.

facefeat runs go through the product's entry point: :func:`facefeat.inversion.project` with the
``stylegan2`` extractor's settings (its config defaults, or a named preset), batch 1, the
per-image seed the extractor derives from the image id. A run's **time-to-quality** (TTQ) is the
CPU time until the image rendered at a step first reaches the bar (PSNR of that step's image, as
``ProjectionResult.mse_history`` defines it); a run stops there (``--stop-at-bar``) or runs out.

Clock: every run is a separate single-threaded process (``OMP_NUM_THREADS=1``,
``torch.set_num_threads(1)``), timed by its **CPU time** (``time.process_time``), which on an idle
core equals the wall time; on a shared machine it is far steadier than the wall clock. Both are
recorded, with the load average.

Generators (``--generator``): ``tiny``, the repository's 32 px NVIDIA fixture
(tests/data/stylegan2), cheap enough for NVIDIA's 1000-step reference on every target of a 2-core
shared machine; and ``paper256``: a 256 px StyleGAN2 of the paper's ``paper256`` configuration (channel_base 16384,
channel_max 512, 8 mapping layers, conv_clamp 256; float32 everywhere: NVIDIA's fp16 layers are
GPU-only) built by NVIDIA's code with **random weights** (seed ``--seed``): no trained 256 px
checkpoint exists on this machine (``facefeat models list``: nothing cached, no network). Its
ToRGB layers are scaled so that rendered images have a pixel std of 0.5 (a random generator's
raw images are mostly outside [-1, 1]); the same file is used by both sides. On a random
generator a photo's PSNR says little about faces: the script therefore also fits **renders**
of held-out latents (``--renders``), targets the generator can represent exactly.

Targets: real photos (``examples/faces`` and ``tests/data/faces``, the largest face of each
photo), FFHQ-aligned at 256 px by the product's own preprocessing
(:class:`facefeat.engine.preprocess.Preprocessor`); one per source photo, sorted by name.

Results go to a JSON-lines file (``--results``), one record per (run, target), keyed by the
generator's and the target's sha256 and the run's settings; a rerun skips what is there, so the
table can be filled over several invocations (``--runs``, ``--targets``) and printed alone
(``--table``). ``--baseline`` runs the ``today`` row with the code of another facefeat checkout
(e.g. ``git worktree add /tmp/ff-main main``), so "today's default" is today's code as well as
today's settings.

``--speed K`` measures instead the CPU seconds per optimisation step of each run on the first
target (the coarse and the full-resolution steps of a coarse-to-fine schedule separately), the
256 px figures of docs/features/stylegan2.md.

    git --git-dir=<mirror of NVlabs/stylegan2-ada-pytorch> archive HEAD | tar -x -C /tmp/nvidia-sg2ada
    git worktree add --detach /tmp/ff-main <commit before the presets>
    python benchmarks/bench_time_to_quality.py --generator tiny --nvidia-root /tmp/nvidia-sg2ada \\
        --baseline /tmp/ff-main --photos 8 --renders 2 --runs nvidia,today,preset:fast --jobs 2
    python benchmarks/bench_time_to_quality.py --generator paper256 --nvidia-root /tmp/nvidia-sg2ada \\
        --baseline /tmp/ff-main --speed 4 --runs nvidia,today,preset:fast,lever:coarse64-half
    python benchmarks/bench_time_to_quality.py --generator tiny --table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"
GENERATORS = ("paper256", "tiny")
PHOTO_DIRS = (ROOT / "examples" / "faces", ROOT / "tests" / "data" / "faces")
#: Runs: "nvidia" (their projector), "today" (the extractor's defaults, with the code of
#: --baseline when given), "preset:<name>" (a stylegan2 preset), "lever:<name>" (LEVERS).


# --------------------------------------------------------------------------------------------
# Levers: each changes one thing against the extractor's defaults (measured on its own)
# --------------------------------------------------------------------------------------------

LEVERS: dict[str, dict] = {
    # (preset, config overrides): each row changes one thing against its preset
    "ref-no-latent-noise": ("reference", {"initial_noise_factor": 0.0}),
    "ref-fast-mode": ("reference", {"batch_invariant": False}),
    "ref-w": ("reference", {"space": "w"}),
    "steps50": ("fast", {"steps": 50}),
    "steps200": ("fast", {"steps": 200}),
    "lr0.05": ("fast", {"initial_learning_rate": 0.05}),
    "lr0.1": ("fast", {"initial_learning_rate": 0.1}),
    "latent-noise": ("fast", {"initial_noise_factor": 0.05}),
    "space-w": ("fast", {"space": "w"}),
    "no-noise-maps": ("fast", {"optimize_noise": False}),
    "early-stop": ("fast", {"early_stop_patience": 10}),
    "coarse64-half": ("fast", {"coarse_resolution": 64, "coarse_fraction": 0.5}),
    "coarse16-half": ("fast", {"coarse_resolution": 16, "coarse_fraction": 0.5}),
    "coarse32-half": ("fast", {"coarse_resolution": 32, "coarse_fraction": 0.5}),
}


# --------------------------------------------------------------------------------------------
# Setup: generator and targets (main process)
# --------------------------------------------------------------------------------------------

def _nvidia_imports(nvidia_root: Path) -> None:
    """Put NVIDIA's checkout on the path. Their ``dnnlib`` imports ``requests`` (URL downloads) and
    ``projector.py`` ``imageio`` (writing videos), neither used here; where they are not installed
    an empty stand-in module satisfies the import."""
    import importlib.util
    import types

    if not (nvidia_root / "projector.py").exists():
        sys.exit(f"--nvidia-root {nvidia_root}: no projector.py there (a checkout of NVlabs/stylegan2-ada-pytorch)")
    for name in ("requests", "imageio"):
        if importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, types.ModuleType(name))
    sys.path.insert(0, str(nvidia_root))


def build_generator(kind: str, nvidia_root: Path, out: Path, seed: int) -> dict:
    """The benchmark's generator, by NVIDIA's code, ToRGB scaled to pixel std 0.5, pickled as a
    network snapshot; returns its description. ``paper256``: the paper's 256 px configuration with
    random weights (seed ``seed``); ``tiny``: the repository's 32 px NVIDIA fixture
    (tests/data/stylegan2, a "simulated training", see its README)."""
    import pickle

    import torch

    _nvidia_imports(nvidia_root)
    if kind == "paper256":
        from training.networks import Generator

        torch.manual_seed(seed)
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                      mapping_kwargs={"num_layers": 8},
                      synthesis_kwargs={"channel_base": 16384, "channel_max": 512, "num_fp16_res": 0,
                                        "conv_clamp": 256}).eval().requires_grad_(False)
        what = "NVIDIA paper256 config (channel_base 16384, channel_max 512, conv_clamp 256, fp32), random weights"
    else:
        with open(TINY, "rb") as fh:
            G = pickle.load(fh)["G_ema"].eval().requires_grad_(False)
        what = f"{TINY.relative_to(ROOT)} (32 px, w_dim 64)"
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(seed).randn(16, G.z_dim).astype(np.float32))
        std = float(G(z, None, noise_mode="const").std())
        scale = 0.5 / std
        for res in G.synthesis.block_resolutions:
            torgb = getattr(G.synthesis, f"b{res}").torgb
            torgb.weight.mul_(scale)
            torgb.bias.mul_(scale)
    with open(out, "wb") as fh:
        pickle.dump({"G": G, "G_ema": G, "D": None, "augment_pipe": None, "training_set_kwargs": None}, fh)
    return {"kind": kind, "what": what, "resolution": G.img_resolution, "seed": seed, "torgb_scale": scale,
            "raw_pixel_std": std, "sha256": _sha256(out.read_bytes())}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def aligned_photos(limit: int, size: int) -> list[tuple[str, np.ndarray]]:
    """``(id, uint8 (size, size, 3))`` for the largest face of each photo, by the product's own
    detection + FFHQ alignment; one per source photo (the same file in two folders counts once)."""
    from facefeat.engine.config import resolve_run_config
    from facefeat.engine.preprocess import Preprocessor
    from facefeat.io.manifest import load_inputs

    cfg = resolve_run_config({"input": "-", "out": "-"})
    pre = Preprocessor(cfg["face"], cfg["align"], aligned_sizes=(size,))
    seen, out = set(), []
    records = [r for d in PHOTO_DIRS if d.exists() for r in load_inputs(d, recursive=True).records]
    for rec in sorted(records, key=lambda r: Path(r.path).name):
        name = Path(rec.path).stem
        if name in seen:
            continue
        seen.add(name)
        p = pre.process(rec)
        if p.status == "ok":
            out.append((f"photo:{name}", p.face.aligned[size]))
        if len(out) == limit:
            break
    return out


def renders(gen_path: Path, n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """Held-out latents (z from ``RandomState(seed + 10000 + i)``, not the w statistics' stream)
    rendered with the stored noise, 8-bit: targets the generator can represent exactly (in W)."""
    import torch

    from facefeat.inversion.metrics import synth_to_uint8
    from facefeat.models.checkpoints import load_generator

    G = load_generator(gen_path)
    out = []
    with torch.no_grad():
        for i in range(n):
            s = seed + 10000 + i
            z = torch.from_numpy(np.random.RandomState(s).randn(1, G.z_dim).astype(np.float32))
            out.append((f"render:{s}", synth_to_uint8(G.synthesis(G.mapping(z), noise_mode="const"))[0]))
    return out


# --------------------------------------------------------------------------------------------
# Workers (one process per run and target)
# --------------------------------------------------------------------------------------------

def _psnr(synth, target_u8) -> float:
    from facefeat.inversion.metrics import image_mse

    return float(-10.0 * math.log10(float(image_mse(synth.detach(), target_u8)[0])))


class _ReachedBar(Exception):
    pass


def worker_nvidia(spec: dict) -> dict:
    """NVIDIA's ``projector.project`` (its defaults), MSE in place of the VGG distance."""
    import pickle

    import torch

    _nvidia_imports(Path(spec["nvidia_root"]))
    import projector  # NVIDIA's

    with open(spec["generator"], "rb") as fh:
        G = pickle.load(fh)["G_ema"]
    target = torch.from_numpy(np.load(spec["target_file"])).permute(2, 0, 1).float()

    class MSEFeatures(torch.nn.Module):
        """Their ``vgg16(img, resize_images=False, return_lpips=True)`` call, returning features
        whose squared distance summed is the [-1, 1]-scale MSE (facefeat's ``loss="mse"``)."""

        def forward(self, img, resize_images=False, return_lpips=True):
            x = img / 127.5 - 1.0
            return x.flatten(1) / math.sqrt(x[0].numel())

    stamps = []
    projector.print = lambda *a: stamps.append((time.process_time(), time.perf_counter()))  # their verbose log
    jit_load, open_url = torch.jit.load, projector.dnnlib.util.open_url

    class _NoURL:
        def __enter__(self):
            return None

        def __exit__(self, *a):
            return False

    torch.jit.load = lambda f: MSEFeatures()
    projector.dnnlib.util.open_url = lambda url, *a, **k: _NoURL()
    c0, w0 = time.process_time(), time.perf_counter()
    try:
        ws = projector.project(G, target=target, num_steps=spec["steps"], device=torch.device("cpu"), verbose=True)
    finally:
        torch.jit.load, projector.dnnlib.util.open_url = jit_load, open_url
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    step_stamps = stamps[-spec["steps"]:]  # one line per step after the setup lines
    t_u8 = target[None]
    curve = []
    with torch.no_grad():
        for k in sorted(set(list(range(spec["every"] - 1, spec["steps"], spec["every"])) + [spec["steps"] - 1])):
            img = G.synthesis(ws[k:k + 1], noise_mode="const")
            curve.append([k + 1, step_stamps[k][0] - c0, step_stamps[k][1] - w0, _psnr(img, t_u8)])
    return {"cpu_s": cpu, "wall_s": wall, "steps": spec["steps"], "final_psnr": curve[-1][3], "curve": curve,
            "step_cpu": [c - c0 for c, _w in step_stamps],
            "settings": {"code": "NVlabs/stylegan2-ada-pytorch projector.project defaults", "num_steps": spec["steps"],
                         "loss": "mse (VGG16 distance replaced)", "final render": "w_out[-1], stored noise"}}


def facefeat_settings(run: str, resolution: int) -> dict:
    """project() keyword arguments of a facefeat run: the stylegan2 extractor's config (its
    defaults; a preset; a lever's preset and changes), mapped as the extractor maps it."""
    from facefeat_builtins import stylegan2 as plugin

    props = plugin.CONFIG_SCHEMA["properties"]
    config = {k: v["default"] for k, v in props.items() if "default" in v}
    kind, _, name = run.partition(":")
    if kind == "preset":
        config["preset"] = name
    elif kind == "lever":
        preset, changes = LEVERS[name]
        config.update(preset=preset, **changes)
    if hasattr(plugin, "projection_kwargs"):
        return plugin.projection_kwargs(config, resolution=resolution)
    kw = {k: config[k] for k in plugin._PROJECT_KEYS}  # code before presets: what its extract() passed
    kw["num_steps"] = config["steps"]
    return kw


def worker_facefeat(spec: dict) -> dict:
    import torch

    from facefeat.inversion import project, w_stats
    from facefeat.models.checkpoints import load_generator
    from facefeat_builtins.stylegan2 import image_seed

    G = load_generator(spec["generator"])
    target = torch.from_numpy(np.load(spec["target_file"])).permute(2, 0, 1).float()[None]
    kw = facefeat_settings(spec["run"], G.img_resolution)
    bar = spec.get("bar")
    images = []
    G.synthesis.register_forward_hook(lambda m, i, o: images.append(o.detach()))
    curve = []
    c0, w0 = time.process_time(), time.perf_counter()

    def on_step(step, num_steps, active):
        c, w = time.process_time() - c0, time.perf_counter() - w0
        img = images[-1]
        # a coarse-to-fine step renders below full resolution: it cannot count as reaching the bar
        p = _psnr(img, target) if img.shape[-1] == target.shape[-1] else None
        images.clear()
        curve.append([step + 1, c, w, p])
        if bar is not None and spec["stop_at_bar"] and p is not None and p >= bar:
            raise _ReachedBar

    stats = w_stats(G, kw.get("w_avg_samples", 10000), seed=kw.get("w_avg_seed", 123))
    c_stats = time.process_time() - c0
    final = None
    try:
        r = project(G, target, seed=[image_seed(0, spec["target"])], w_stats_cache=stats, callback=on_step, **kw)
        final = float(r.psnr[0])
    except _ReachedBar:
        pass
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"cpu_s": cpu, "wall_s": wall, "w_stats_cpu_s": c_stats, "steps": len(curve), "final_psnr": final,
            "curve": curve, "stopped_at_bar": final is None,
            "settings": {k: v for k, v in kw.items() if isinstance(v, (int, float, str, bool, type(None), list))}}


def worker_speed(spec: dict) -> dict:
    """CPU seconds per optimisation step (median of the steps after the first) of a run's settings;
    for a coarse-to-fine schedule the coarse and the full-resolution steps separately."""
    import torch

    k = spec["speed_steps"]
    target = torch.from_numpy(np.load(spec["target_file"])).permute(2, 0, 1).float()

    def median_gap(stamps):
        return statistics.median(np.diff(stamps).tolist())

    if spec["run"] == "nvidia":
        rec = worker_nvidia(dict(spec, steps=k, every=k))
        return {"full_step_s": median_gap(rec["step_cpu"]), "cpu_s": rec["cpu_s"], "steps": k, "final_psnr": None,
                "curve": [], "settings": rec["settings"]}
    from facefeat.inversion import project, w_stats
    from facefeat.models.checkpoints import load_generator

    G = load_generator(spec["generator"])
    kw = facefeat_settings(spec["run"], G.img_resolution)
    stats = w_stats(G, 1000)
    out = {"settings": {k2: v for k2, v in kw.items() if isinstance(v, (int, float, str, bool, type(None)))}}
    phases = {"full_step_s": {}}
    if kw.get("coarse_resolution"):
        phases = {"full_step_s": {"coarse_fraction": 0.0}, "coarse_step_s": {"coarse_fraction": 1.0}}
    c0 = time.process_time()
    for key, change in phases.items():
        stamps = []
        project(G, target[None], **dict(kw, num_steps=k, early_stop_patience=None, w_stats_cache=stats, **change),
                callback=lambda *a: stamps.append(time.process_time()))
        out[key] = median_gap(stamps)
    out.update(cpu_s=time.process_time() - c0, steps=k, final_psnr=None, curve=[])
    return out


def worker_main(spec_file: str) -> None:
    import torch

    torch.set_num_threads(1)
    spec = json.loads(Path(spec_file).read_text())
    load0 = os.getloadavg()[0]
    if spec.get("speed_steps"):
        rec = worker_speed(spec)
    else:
        rec = worker_nvidia(spec) if spec["run"] == "nvidia" else worker_facefeat(spec)
    rec.update({k: spec[k] for k in ("run", "target", "target_sha256", "generator_sha256", "bar")})
    rec.update({"load_start": load0, "load_end": os.getloadavg()[0], "code": spec.get("code", "this tree"),
                "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
    Path(spec["out"]).write_text(json.dumps(rec))


# --------------------------------------------------------------------------------------------
# Orchestration and table
# --------------------------------------------------------------------------------------------

def load_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ttq(rec: dict, bar: float) -> tuple[float | None, int | None]:
    """CPU seconds and steps until the run's image first reached ``bar`` (None: never)."""
    for step, cpu, _wall, p in rec["curve"]:
        if p is not None and p >= bar - 1e-9:
            return cpu, step
    return None, None


def print_table(results: list[dict]) -> None:
    from machine import machine  # benchmarks/machine.py

    order = ["nvidia", "today", "preset:nvidia", "preset:reference", "preset:fast"]
    runs = order + sorted({r["run"] for r in results} - set(order))
    print(f"\nmachine: {machine()}")
    ref = {r["target"]: r for r in results if r["run"] == "nvidia"}
    targets = sorted(ref)
    if not targets:
        print("no NVIDIA reference run yet: nothing to compare against")
        return
    print("\nPer target: PSNR bar = NVIDIA's final PSNR (dB); TTQ = CPU s until the bar; "
          "final = PSNR at the run's end (- = stopped at the bar)")
    print(f"{'target':28} {'run':26} {'bar dB':>7} {'final':>7} {'steps':>6} {'CPU s':>8} {'TTQ s':>8} "
          f"{'TTQ/ref':>8} {'load':>9}")
    per_run: dict[str, list] = {}
    for t in targets:
        bar = ref[t]["final_psnr"]
        for run in runs:
            rec = next((r for r in results if r["run"] == run and r["target"] == t), None)
            if rec is None:
                continue
            tq, k = (rec["cpu_s"], rec["steps"]) if run == "nvidia" else ttq(rec, bar)
            ratio = tq / ref[t]["cpu_s"] if tq is not None else None
            per_run.setdefault(run, []).append((t, tq, ratio, rec, k))
            fin = "-" if rec.get("final_psnr") is None else f"{rec['final_psnr']:.2f}"
            print(f"{t:28} {run:26} {bar:7.2f} {fin:>7} {rec['steps']:6d} {rec['cpu_s']:8.1f} "
                  f"{'n/a' if tq is None else f'{tq:.1f}':>8} {'not reached' if ratio is None else f'{ratio:.3f}':>8} "
                  f"{rec['load_start']:4.1f}/{rec['load_end']:<4.1f}")
    for kind in ("photo", "render"):
        print(f"\nMedian over {kind}s (targets with an NVIDIA reference; TTQ of a run that never reached "
              f"the bar counts as +inf)")
        print(f"{'run':26} {'n':>3} {'reached':>8} {'median TTQ s':>13} {'steps to bar':>12} {'median ratio':>13} "
              f"{'median PSNR gain dB':>20}")
        for run, rows in per_run.items():
            rows = [x for x in rows if x[0].startswith(kind)]
            if not rows:
                continue
            tqs = [math.inf if x[1] is None else x[1] for x in rows]
            ratios = [math.inf if x[2] is None else x[2] for x in rows]
            gains = [x[3]["final_psnr"] - ref[x[0]]["final_psnr"] for x in rows if x[3].get("final_psnr") is not None]
            gain = f"{statistics.median(gains):+.2f}" if gains else "-"
            steps = statistics.median([math.inf if x[4] is None else x[4] for x in rows])
            print(f"{run:26} {len(rows):3d} {sum(x[1] is not None for x in rows):8d} "
                  f"{statistics.median(tqs):13.2f} {steps:12.1f} {statistics.median(ratios):13.3f} {gain:>20}")
    print("\nTimes are CPU seconds of single-threaded processes (= wall time on an idle core; the machine is "
          "shared, 'load' = 1-min load average at the start/end of each run). Loss: MSE on both sides.")


def print_speed(results: list[dict]) -> None:
    """CPU s per step and what a run's whole schedule costs per image (steps x s/step, the coarse
    steps at their own price; early stopping not counted: an upper bound for runs that use it)."""
    from machine import machine  # benchmarks/machine.py

    print(f"\nmachine: {machine()}")
    print("\nCPU seconds per optimisation step, batch 1 (median of the steps after the first)")
    print(f"{'run':26} {'code':34} {'full s/step':>11} {'coarse s/step':>13} {'steps':>6} {'s/image':>8} "
          f"{'vs nvidia':>9} {'load':>9}")
    ref = next((r for r in results if r["run"] == "nvidia"), None)
    ref_cost = ref["full_step_s"] * 1000 if ref else None
    for r in results:
        st = r["settings"]
        n = 1000 if r["run"] == "nvidia" else st.get("num_steps", 0)
        n_coarse = math.ceil(st.get("coarse_fraction", 0) * n) if r.get("coarse_step_s") else 0
        cost = n_coarse * r.get("coarse_step_s", 0.0) + (n - n_coarse) * r["full_step_s"]
        coarse = f"{r['coarse_step_s']:.3f}" if r.get("coarse_step_s") else "-"
        rel = f"{cost / ref_cost:.3f}" if ref_cost else "-"
        print(f"{r['run']:26} {r['code'][-34:]:34} {r['full_step_s']:11.3f} {coarse:>13} {n:6d} {cost:8.1f} {rel:>9} "
              f"{r['load_start']:4.1f}/{r['load_end']:<4.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--nvidia-root", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch (builds the "
                    "generator; runs the reference)")
    ap.add_argument("--generator", choices=GENERATORS, default="paper256",
                    help="paper256 (random weights, 256 px) or tiny (the 32 px test fixture)")
    ap.add_argument("--work", type=Path, default=None, help="generator, targets and results "
                    "(default runs/ttq-<generator>)")
    ap.add_argument("--photos", type=int, default=8, help="real photos (default 8)")
    ap.add_argument("--renders", type=int, default=2, help="renders of held-out latents (default 2)")
    ap.add_argument("--targets", default=None, help="comma-separated target ids or indices to run (default all)")
    ap.add_argument("--runs", default="nvidia,today,preset:fast", help="comma-separated: nvidia, today, "
                    f"preset:<fast|reference|nvidia>, lever:<name> ({', '.join(LEVERS)})")
    ap.add_argument("--nvidia-steps", type=int, default=1000)
    ap.add_argument("--every", type=int, default=10, help="NVIDIA curve: PSNR every this many steps")
    ap.add_argument("--stop-at-bar", action="store_true", help="stop a facefeat run once it reaches the bar "
                    "(saves CPU; its final PSNR is then not measured)")
    ap.add_argument("--baseline", type=Path, help="facefeat checkout whose code runs the 'today' row")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes at once (each single-threaded)")
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--table", action="store_true", help="only print the table from --work/results.jsonl")
    ap.add_argument("--speed", type=int, default=0, metavar="K", help="instead of time-to-quality: CPU seconds per "
                    "step of each run (median of K steps after the first) on the first target, into speed.jsonl")
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    runs = [r for r in args.runs.split(",") if r]
    if "today" in runs and args.baseline is None and not args.table:
        sys.exit("the 'today' row runs today's code: give --baseline (a checkout of facefeat before the presets, "
                 "e.g. git worktree add --detach /tmp/ff-main main), or use preset:reference (today's settings on "
                 "this code)")
    work = args.work or ROOT / "runs" / f"ttq-{args.generator}"
    results_path = work / ("speed.jsonl" if args.speed else "results.jsonl")
    if args.table:
        print_table(load_results(results_path))
        if (work / "speed.jsonl").exists():
            print_speed(load_results(work / "speed.jsonl"))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    gen_path, gen_info = work / "generator.pkl", work / "generator.json"
    if not gen_path.exists():
        if args.nvidia_root is None:
            sys.exit("--nvidia-root is needed to build the generator (and to run the reference)")
        gen_info.write_text(json.dumps(build_generator(args.generator, args.nvidia_root, gen_path, args.seed),
                                       indent=1))
    info = json.loads(gen_info.read_text())
    print(f"generator: {info}")
    tdir = work / "targets"
    tdir.mkdir(exist_ok=True)
    targets = aligned_photos(args.photos, info["resolution"]) + renders(gen_path, args.renders, args.seed)
    tfiles = {}
    for tid, img in targets:
        f = tdir / (tid.replace(":", "_") + ".npy")
        np.save(f, img)
        tfiles[tid] = (f, _sha256(img.tobytes()))
    print(f"targets: {', '.join(tfiles)}")
    if args.targets:
        pick = args.targets.split(",")
        ids = list(tfiles)
        sel = [ids[int(p)] if p.isdigit() else p for p in pick]
        tfiles = {t: tfiles[t] for t in sel}
    if args.speed:
        tfiles = dict(list(tfiles.items())[:1])
    done = {(r["run"], r["target"]) for r in load_results(results_path)}
    pending = [(run, t) for run in runs for t in tfiles if (run, t) not in done]
    procs: list[tuple[subprocess.Popen, Path]] = []

    def reap(block: bool) -> None:
        while procs and (block or len(procs) >= args.jobs):
            for p, out in list(procs):
                if p.poll() is not None:
                    procs.remove((p, out))
                    if p.returncode == 0 and out.exists():
                        rec = json.loads(out.read_text())
                        with results_path.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                        print(f"done {rec['run']} {rec['target']}: {rec['steps']} steps, {rec['cpu_s']:.0f} CPU s, "
                              f"final PSNR {rec['final_psnr']}", flush=True)
                    else:
                        print(f"worker failed (exit {p.returncode}); see {out.with_suffix('.log')}", flush=True)
            if procs and (block or len(procs) >= args.jobs):
                time.sleep(2)

    # the references first (every other run needs its target's bar), then the rest
    for run, t in sorted(pending, key=lambda rt: rt[0] != "nvidia"):
        if run != "nvidia" and any(True for _ in procs) and not getattr(reap, "refs_done", False):
            reap(block=True)
            reap.refs_done = True
        bars = {r["target"]: r["final_psnr"] for r in load_results(results_path) if r["run"] == "nvidia"}
        if run != "nvidia" and t not in bars and not args.speed:
            print(f"skip {run} {t}: no NVIDIA reference for it yet")
            continue
        stem = f"{run.replace(':', '_')}__{t.replace(':', '_')}"
        out = work / ("speed-records" if args.speed else "records") / f"{stem}.json"
        out.parent.mkdir(exist_ok=True)
        spec = {"run": run, "target": t, "target_file": str(tfiles[t][0]), "target_sha256": tfiles[t][1],
                "generator": str(gen_path), "generator_sha256": info["sha256"], "bar": bars.get(t),
                "nvidia_root": str(args.nvidia_root) if args.nvidia_root else None, "steps": args.nvidia_steps,
                "every": args.every, "stop_at_bar": args.stop_at_bar, "speed_steps": args.speed, "out": str(out)}
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        if run == "today" and args.baseline:
            env["PYTHONPATH"] = f"{args.baseline}:{args.baseline / 'plugins'}"
            spec["code"] = f"{args.baseline} @ {_git_head(args.baseline)}"
        else:
            env["PYTHONPATH"] = f"{ROOT}:{ROOT / 'plugins'}"
            spec["code"] = f"{ROOT} @ {_git_head(ROOT)}"
        spec_file = out.with_suffix(".spec.json")
        spec_file.write_text(json.dumps(spec))
        log = out.with_suffix(".log").open("w")
        procs.append((subprocess.Popen([sys.executable, __file__, "--worker", str(spec_file)], env=env, stdout=log,
                                       stderr=subprocess.STDOUT), out))
        print(f"started {run} {t}", flush=True)
        reap(block=False)
    reap(block=True)
    if args.speed:
        print_speed(load_results(results_path))
    else:
        print_table(load_results(results_path))
    return 0


def _git_head(path: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
