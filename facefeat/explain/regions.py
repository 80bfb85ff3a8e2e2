"""Where an edit changes the picture: face vs hair, background and below the chin, per layer.

For each subject of a cohort the reconstruction (step 0) and its edits along a direction are
rendered; the 68 landmarks of the *aligned frame* are detected on the reconstruction with dlib
(HOG detector, then the 68-point predictor, :mod:`facefeat.face`), the frame is split into
``face`` / ``below_chin`` / ``hair`` / ``background`` (:func:`facefeat.explain.mask.face_regions`)
and the pixel-change energy ``sum (edit - reconstruction)^2`` of every edited frame is shared
between them (:func:`facefeat.explain.mask.change_energy_shares`).

Why landmarks are detected on the reconstruction: the edits are rendered by the generator in
the aligned frame, so the region masks must be in that frame. The reconstruction is what is
edited and what the viewer sees; landmarks from the original photo mapped through the alignment
quad (:func:`facefeat.explain.mask.landmarks_to_aligned`) describe the photo, which a projection
reproduces only approximately. When the detector finds no face (a poor reconstruction, or the
32 px test generator, far below dlib's ~40 px minimum face) the subject's rows get
``status = "no_face"`` and NaN shares; they are counted in the summary, never dropped.
Landmarks can also be passed in (``landmarks=``) when they are known.

Alongside, each direction's per-layer share of its squared norm
(:meth:`LatentDirection.layer_shares`) says which synthesis resolutions carry it.

Outputs
-------
:func:`cohort_regions` -> long table, one row per subject x edited step: ``subject_id``,
``image_id``, ``step``, ``status`` (ok | no_face | no_latent | error), ``message``,
``share_<region>``, ``area_<region>``, ``energy_<region>``, ``total_energy``,
``delta_log_hazard``. :func:`summarize_regions` pools each subject's steps (energies summed)
and gives, per region, the mean / median / SD of the share over subjects with status ok, the
mean area share and the enrichment (mean share / mean area share), plus status counts.
:func:`layer_table` and :func:`plot_regions` (PNG: region shares vs area, and layer shares).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.io.atomic import atomic_output
from facefeat.errors import ConfigError, FacefeatError

__all__ = [
    "STATUSES",
    "cohort_regions",
    "detect_aligned_landmarks",
    "frame_region_shares",
    "layer_table",
    "plot_regions",
    "save_table",
    "summarize_regions",
]

#: Row statuses of the regions table.
STATUSES = ("ok", "no_face", "no_latent", "error")


@functools.lru_cache(maxsize=None)
def _dlib_tools(upsample: int):
    """One detector and predictor per process (the predictor file is ~100 MB, ~1 s to read)."""
    from facefeat.face.detect import FaceDetector
    from facefeat.face.landmarks import LandmarkPredictor

    return FaceDetector("hog", upsample=upsample), LandmarkPredictor()


def detect_aligned_landmarks(image: np.ndarray, *, detector=None, predictor=None, upsample: int = 1):
    """68 landmarks of the largest face in an aligned frame: ``(points or None, status, message)``.

    dlib's HOG detector, then its 68-point predictor (:mod:`facefeat.face`). ``status`` is
    ``"ok"`` or ``"no_face"`` (with the reason in ``message``).
    """
    from facefeat.face.detect import largest_face

    if detector is None or predictor is None:
        d, p = _dlib_tools(int(upsample))
        detector, predictor = detector or d, predictor or p
    img = np.ascontiguousarray(image, dtype=np.uint8)
    found = detector.detect(img)
    face = largest_face(found)
    if face is None:
        return None, "no_face", (f"no face detected on the {img.shape[1]} px reconstruction (dlib needs faces of "
                                 "about 40 px or more)")
    return predictor.predict(img, face.box), "ok", None


def frame_region_shares(images, steps, *, landmarks=None, reference: int | None = None, forehead: float = 0.0,
                        detector=None, predictor=None) -> list[dict[str, Any]]:
    """Energy shares per region of each edited frame against the reference frame.

    Parameters
    ----------
    images : uint8 array (n, H, W, 3)
        Frames of one subject (the reconstruction among them).
    steps : sequence of float
        Step of each frame.
    landmarks : array (68, 2), optional
        In the frames' pixel coordinates; default: detected on the reference frame.
    reference : int, optional
        Index of the reference frame; default the frame with step 0.
    forehead : float
        Brow lift of the face mask (IOD units, see :func:`facefeat.explain.mask.face_mask`).

    Returns
    -------
    list of dict
        One per non-reference frame: ``step``, ``status``, ``message``, ``share_<region>``,
        ``area_<region>``, ``energy_<region>``, ``total_energy``.
    """
    from facefeat.explain.mask import REGIONS, change_energy_shares, face_regions

    imgs = np.asarray(images)
    steps = np.asarray(steps, dtype=float)
    if imgs.ndim != 4 or len(imgs) != len(steps):
        raise ConfigError(f"need frames (n, H, W, 3) and one step each; got {list(imgs.shape)} and {len(steps)} steps")
    if reference is None:
        zero = np.flatnonzero(steps == 0)
        if not len(zero):
            raise ConfigError("no frame at step 0 to compare the edits with; include 0 in the steps")
        reference = int(zero[0])
    status, message = "ok", None
    if landmarks is None:
        landmarks, status, message = detect_aligned_landmarks(imgs[reference], detector=detector, predictor=predictor)
    rows = []
    regions = face_regions(landmarks, imgs.shape[1:3], forehead=forehead) if status == "ok" else None
    for k, s in enumerate(steps):
        if k == reference:
            continue
        row: dict[str, Any] = {"step": float(s), "status": status, "message": message}
        if regions is not None:
            es = change_energy_shares(imgs[reference], imgs[k], regions)
            row.update(es.as_dict())
            row.update({f"energy_{r}": v for r, v in es.energy.items()})
        else:
            row.update({f"{p}_{r}": np.nan for p in ("share", "area", "energy") for r in REGIONS})
            row["total_energy"] = float(((imgs[reference].astype(float) - imgs[k].astype(float)) ** 2).sum())
        rows.append(row)
    return rows


def cohort_regions(ctx, subjects: Sequence[str] | None = None, direction=None, steps=(-2.0, 0.0, 2.0), *,
                   layers=None, G=None, forehead: float = 0.0, landmarks: dict | None = None,
                   max_subjects: int | None = None, progress: bool = False):
    """Region shares of the edits of a cohort: one row per subject x edited step.

    Parameters
    ----------
    ctx : EditContext
        From :func:`facefeat.explain.edit.load_edit_context`.
    subjects : list of str, optional
        Default: every subject of the modelling table, in order (``max_subjects`` first ones).
    direction : LatentDirection, optional
        Default: the model's health direction.
    steps : sequence of float
        0 is added when missing (the reference frame).
    layers : see :func:`facefeat.explain.edit.layer_indices`
    G : Generator, optional
        Default: the generator recorded in the latent table's provenance.
    landmarks : dict subject -> (68, 2), optional
        Known aligned-frame landmarks (skips detection for those subjects).

    Returns
    -------
    pandas.DataFrame
        See the module notes. A subject without a latent or whose reconstruction has no
        detectable face is a row with its status (``no_latent`` / ``no_face``), not a gap.
    """
    import pandas as pd

    from facefeat.explain.edit import edit_subject, load_edit_generator

    direction = direction if direction is not None else ctx.direction()
    if G is None:
        G = load_edit_generator(ctx.generator_spec())
    steps = sorted(set(float(s) for s in steps) | {0.0})
    if subjects is None:
        subjects = list(ctx.X.index)
    subjects = [str(s) for s in subjects][: max_subjects or None]
    detector, predictor = _dlib_tools(1)
    out: list[dict[str, Any]] = []
    it = subjects
    if progress:
        from tqdm import tqdm

        it = tqdm(subjects, unit="subject", desc="regions")
    for subj in it:
        try:
            res = edit_subject(ctx, subj, direction, steps, layers=layers, G=G)
        except FacefeatError as exc:
            msg = str(exc)
            status = "no_latent" if ("no latent" in msg or "not in feature table" in msg) else "error"
            out.append({"subject_id": subj, "image_id": None, "step": np.nan, "status": status, "message": msg})
            continue
        rows = frame_region_shares(res.images, res.steps, landmarks=(landmarks or {}).get(subj), forehead=forehead,
                                   detector=detector, predictor=predictor)
        dlh = dict(zip(res.steps.tolist(), (res.log_hazard - res.base_log_hazard).tolist()))
        for r in rows:
            out.append({"subject_id": subj, "image_id": res.image_id, **r, "delta_log_hazard": dlh[r["step"]]})
    table = pd.DataFrame(out)
    from facefeat.explain.mask import REGIONS

    for col in [f"{p}_{r}" for p in ("share", "area", "energy") for r in REGIONS] + ["total_energy", "delta_log_hazard"]:
        if col not in table.columns:
            table[col] = np.nan
    table.attrs["direction"] = direction.describe()
    table.attrs["layers"] = "all" if layers is None else str(layers)
    return table


def summarize_regions(table):
    """Per region: subjects, mean / median / SD share, mean area share and enrichment.

    Each subject's edited frames are pooled (energies summed) before the shares are taken, so
    every subject with status ok counts once. ``summary.attrs["status_counts"]`` holds the
    subjects per status.
    """
    import pandas as pd

    from facefeat.explain.mask import REGIONS

    subj_status = table.groupby("subject_id", sort=False)["status"].agg(
        lambda s: "ok" if (s == "ok").all() else s[s != "ok"].iloc[0])
    counts = subj_status.value_counts().to_dict()
    ok = table[table["subject_id"].isin(subj_status[subj_status == "ok"].index) & (table["status"] == "ok")]
    rows = []
    if len(ok):
        energy = ok.groupby("subject_id")[[f"energy_{r}" for r in REGIONS] + ["total_energy"]].sum()
        area = ok.groupby("subject_id")[[f"area_{r}" for r in REGIONS]].first()
        for r in REGIONS:
            share = energy[f"energy_{r}"] / energy["total_energy"].where(energy["total_energy"] > 0)
            a = area[f"area_{r}"]
            rows.append({"region": r, "n_subjects": int(share.notna().sum()), "mean_share": share.mean(),
                         "median_share": share.median(), "sd_share": share.std(ddof=1) if len(share) > 1 else np.nan,
                         "mean_area_share": a.mean(),
                         "enrichment": share.mean() / a.mean() if a.mean() > 0 else np.nan})
    else:
        rows = [{"region": r, "n_subjects": 0, "mean_share": np.nan, "median_share": np.nan, "sd_share": np.nan,
                 "mean_area_share": np.nan, "enrichment": np.nan} for r in REGIONS]
    summary = pd.DataFrame(rows)
    summary.attrs["status_counts"] = {str(k): int(v) for k, v in counts.items()}
    return summary


def layer_table(direction, num_ws: int | None = None):
    """Per W+ row: its synthesis resolution, layer group and share of the direction's squared norm."""
    import pandas as pd

    from facefeat.explain.edit import LAYER_GROUPS, layer_resolution

    n = int(num_ws or direction.num_ws)
    shares = direction.layer_shares(n)
    res = [layer_resolution(i) for i in range(n)]
    group = [next(g for g, (lo, hi) in LAYER_GROUPS.items() if lo <= r <= hi) for r in res]
    return pd.DataFrame({"layer": np.arange(n), "resolution": res, "group": group, "norm_share": shares})


def save_table(table, path: str | os.PathLike) -> Path:
    """Write a table as CSV or Parquet (by the suffix), atomically."""

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{path.name}: tables are written as .csv or .parquet")
    plain = table.copy()
    plain.attrs = {}
    with atomic_output(path, suffix=suffix) as tmp:
        if suffix == ".csv":
            plain.to_csv(tmp, index=False)
        else:
            plain.to_parquet(tmp, index=False)
    return path


def plot_regions(summary, layers=None, path: str | os.PathLike | None = None, *, title: str | None = None):
    """Bar charts: mean energy share per region against its area share, and the direction's
    norm share per W+ layer. Returns the figure (written as PNG when ``path`` is given)."""
    from matplotlib.figure import Figure  # no pyplot global state (safe in threads and servers)

    n_panels = 2 if layers is not None else 1
    fig = Figure(figsize=(5.2 * n_panels, 3.6))
    axes = fig.subplots(1, n_panels, squeeze=False)
    ax = axes[0, 0]
    x = np.arange(len(summary))
    share = summary["mean_share"].to_numpy(dtype=float)
    area = summary["mean_area_share"].to_numpy(dtype=float)
    ax.bar(x - 0.2, np.nan_to_num(share), 0.4, label="change energy",
           yerr=np.nan_to_num(summary["sd_share"].to_numpy(dtype=float)), capsize=3, color="tab:red")
    ax.bar(x + 0.2, np.nan_to_num(area), 0.4, label="area", color="tab:gray")
    ax.set_xticks(x, summary["region"].tolist())
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    counts = summary.attrs.get("status_counts", {})
    n_ok = int(summary["n_subjects"].max()) if len(summary) else 0
    ax.set_title(f"where the edit changes the image (n={n_ok})" + ("" if set(counts) <= {"ok"} else
                 "\n" + ", ".join(f"{k}: {v}" for k, v in counts.items())), fontsize=9)
    if n_ok == 0:
        ax.text(0.5, 0.5, "no subject with a detected face", ha="center", va="center", transform=ax.transAxes)
    ax.legend(fontsize=8)
    if layers is not None:
        ax2 = axes[0, 1]
        colors = {"coarse": "tab:blue", "middle": "tab:orange", "fine": "tab:green"}
        ax2.bar(layers["layer"], layers["norm_share"], color=[colors[g] for g in layers["group"]])
        ax2.set_xlabel("W+ layer (colour: coarse / middle / fine)")
        ax2.set_ylabel("share of |direction|^2")
        ax2.set_title("direction norm per layer", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
