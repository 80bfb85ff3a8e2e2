"""Render the example study's synthetic cohort (SYNTHETIC DATA: no real person, no real patient).

A planted-signal cohort (docs/simulate.md): the bundled tiny test generator renders one 32 px
"photo" per subject from a random latent w; survival times follow a Cox model whose log relative
hazard is

    eta = face_effect * s(w) + age_effect * (age - 60) / 10 + sex_effect * [sex == "male"]

with s(w) the standardised projection of w on a random direction of the latent space. So the
faces carry prognostic information beyond age and sex, by construction, and the study's
comparison has a known answer: the arm with face features must beat the clinical arm. With
``--face-effect 0`` it must not (the benchmark benchmarks/bench_study.py counts how often it does).

    python examples/study/make_cohort.py                  # writes examples/study/cohort/
    facefeat study run examples/study/study.yaml

Writes ``cohort/photos/S0001.png ...``, ``cohort/clinical.csv`` (subject_id, time in years,
event, age in years, sex), ``cohort/generator.safetensors`` (+ .json; the generator the
photos were rendered with, its output range calibrated) and ``cohort/truth.json`` (the true
effects and the direction).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
#: True log hazard ratios of the example (per SD of the face score, per 10 years of age, male vs female).
FACE_EFFECT = 1.0
AGE_EFFECT = 0.4
SEX_EFFECT = 0.5


def make_cohort(out: Path, *, n: int = 240, seed: int = 7, face_effect: float = FACE_EFFECT,
                age_effect: float = AGE_EFFECT, sex_effect: float = SEX_EFFECT, censoring: float = 0.3,
                clinical_seed: int | None = None, photos: bool = True, G=None,
                generator_info: dict | None = None) -> dict:
    """Write the synthetic cohort into ``out``; returns the truth record.

    ``clinical_seed``: draw age, sex and the survival times from this seed instead of ``seed``
    (same photos, a new clinical table: replicate studies of one cohort of faces).
    ``photos=False``: write only ``clinical.csv`` and ``truth.json`` (the photos of another
    call with the same ``seed`` are the same).
    ``G`` / ``generator_info``: a generator already loaded by
    :func:`facefeat.simulate.load_simulation_generator` (replicate studies reuse it).
    """
    from facefeat.io.atomic import write_bytes_atomic
    from facefeat.models.checkpoints import save_checkpoint
    from facefeat.report.figures import array_png
    from facefeat.simulate import design, load_simulation_generator
    from facefeat.simulate.pipeline import render

    out = Path(out)
    if G is None:
        G, generator_info = load_simulation_generator(None)  # the bundled tiny generator, output calibrated
    ss = np.random.SeedSequence(seed).spawn(5)
    if clinical_seed is not None:
        ss[3], ss[4] = np.random.SeedSequence([seed, clinical_seed]).spawn(2)
    direction = design.random_direction(G.w_dim, seed=ss[0])
    moments = design.population_moments(G, direction)
    _, w = design.sample_latents(G, n, seed=ss[1])
    images = render(G, w, seed=int(ss[2].generate_state(1)[0]))
    rng = np.random.default_rng(ss[3])
    age = np.round(rng.normal(60.0, 10.0, n), 1)
    sex = np.where(rng.random(n) < 0.5, "male", "female")
    face = design.standardized_projection(w, direction, moments)
    eta = face_effect * face + age_effect * (age - 60.0) / 10.0 + sex_effect * (sex == "male")
    times = design.simulate_times(eta, seed=ss[4], baseline="weibull", shape=1.5, scale=5.0, censoring=censoring)
    ids = [f"S{i + 1:04d}" for i in range(n)]
    out.mkdir(parents=True, exist_ok=True)
    for sid, img in zip(ids, images) if photos else ():
        write_bytes_atomic(out / "photos" / f"{sid}.png", array_png(img))
    clinical = pd.DataFrame({"subject_id": ids, "time": np.round(times["time"], 4),
                             "event": times["event"].astype(int), "age": age, "sex": sex})
    clinical.to_csv(out / "clinical.csv", index=False)
    if photos:
        save_checkpoint(out / "generator", {"G_ema": G}, overwrite=True, provenance={
            "made_by": "examples/study/make_cohort.py: the bundled tiny test generator, output range calibrated",
            "source_sha256": (generator_info or {}).get("sha256"),
            "calibration": (generator_info or {}).get("calibration")})
    truth = {"synthetic": True, "n": n, "seed": seed, "clinical_seed": clinical_seed, "events": int(times["event"].sum()),
             "log_hr": {"face_per_sd": face_effect, "age_per_10_years": age_effect, "male_vs_female": sex_effect},
             "censoring_achieved": times["censoring_achieved"], "time_unit": "years",
             "direction": direction.tolist(), "generator": "bundled tiny test generator (32 px, w_dim 64)"}
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--out", default=str(HERE / "cohort"), help="output folder (default examples/study/cohort)")
    p.add_argument("--n", type=int, default=240, help="subjects (default 240)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--face-effect", type=float, default=FACE_EFFECT, help="log HR per SD of the face score (default 1)")
    args = p.parse_args()
    truth = make_cohort(Path(args.out), n=args.n, seed=args.seed, face_effect=args.face_effect)
    print(f"SYNTHETIC cohort: {truth['n']} subjects, {truth['events']} events -> {args.out}")


if __name__ == "__main__":
    main()
