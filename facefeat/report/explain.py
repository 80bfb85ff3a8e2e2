"""The report's interpretation sections: health-attribute edit grids and where the edits change
the image (face vs background), built with :mod:`facefeat.explain`.

Both need a *linear* Cox model (coxph / coxnet) fitted on StyleGAN latents and the generator
that the latents came from. When any of that is missing the sections are still there, with a
visible note saying why they could not be made and what would make them.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from facefeat.errors import DataError, FacefeatError, InputError
from facefeat.report import html as h
from facefeat.report.figures import array_png, figure_png
from facefeat.report.study import Study

__all__ = ["ExplainParts", "absent_reason", "check_generator", "check_subjects", "default_subjects",
           "explain_parts", "latent_columns"]

log = logging.getLogger("facefeat.report")

LINEAR = ("coxph", "coxnet")
EDITS_ID, EDITS_TITLE = "edits", "Health-attribute edits"
REGIONS_ID, REGIONS_TITLE = "regions", "Where the edits change the image"


@dataclass
class ExplainParts:
    edits: h.Section
    regions: h.Section


def _absent(reason: str) -> ExplainParts:
    return ExplainParts(h.Section(EDITS_ID, EDITS_TITLE, h.note(f"Not shown: {reason}", kind="absent")),
                        h.Section(REGIONS_ID, REGIONS_TITLE, h.note(f"Not shown: {reason}", kind="absent")))


def latent_columns(study: Study) -> list[str]:
    """Latent embedding columns (``<extractor>__latent``) among the model's feature tables."""
    out = []
    for ft in (study.meta.get("schema") or {}).get("feature_tables") or []:
        for col, spec in (ft.get("columns") or {}).items():
            if spec.get("type") == "embedding" and col.endswith("__latent"):
                out.append(col)
    return out


def absent_reason(study: Study) -> str | None:
    """Why the model cannot give a latent direction, in words (None when it can)."""
    cols = latent_columns(study)
    if not cols:
        tables = [ft.get("file") for ft in (study.meta.get("schema") or {}).get("feature_tables") or []]
        return (f"the model was fitted on features without StyleGAN latents (tables: {', '.join(map(str, tables)) or 'none'}; "
                "latents are the stylegan2 or e4e extractors' '<extractor>__latent' columns). Edits move a photo's latent "
                "along the model's direction, so they need a model fitted on latents: extract with -e stylegan2 and fit on it.")
    params = study.meta.get("params") or {}
    model = params.get("model")
    kinds = sorted(set(model.values())) if isinstance(model, dict) else [model]
    kinds = [str(k) for k in kinds]
    nonlinear = [k for k in kinds if k not in LINEAR and k in ("rsf", "gbsa", "deepsurv")]
    if nonlinear:
        return (f"the model is {', '.join(nonlinear)}, which is not linear: a single health direction in latent space "
                "exists only for a linear Cox model (coxph or coxnet). For a non-linear model, "
                "facefeat.explain.direction.gradient_direction gives a local direction around one subject; refit with "
                "--model coxph or coxnet to get this section.")
    return None


def check_subjects(study: Study, subjects: Sequence[str]) -> None:
    """Refuse subject ids that are not analysed subjects (the message lists them and examples)."""
    have = set(map(str, study.dataset.X.index))
    unknown = [s for s in subjects if s not in have]
    if unknown:
        example = ", ".join(list(map(str, study.dataset.X.index[:5])))
        raise DataError(f"--subjects: {unknown[:10]} {'is' if len(unknown) == 1 else 'are'} not among the analysed "
                        f"subjects (those with a usable photo and a clinical row, e.g. {example}); see the cohort "
                        "section or 'facefeat inspect RUN_DIR' for the ids")


def default_subjects(oof: Any, candidates: Sequence[str], n: int) -> list[str]:
    """``n`` subjects spread over the out-of-fold risk: lowest, middle, highest, ..."""
    cand = set(map(str, candidates))
    if "id" in oof.columns:
        d = oof[oof["id"].astype(str).isin(cand)].sort_values("risk")
        ids = d["id"].astype(str).tolist()
    else:
        ids = sorted(cand)
    if not ids:
        return []
    if n >= len(ids):
        return ids
    picks = np.unique(np.rint(np.linspace(0, len(ids) - 1, n)).astype(int))
    return [ids[i] for i in picks]


def _checkpoint_found(path: str | None) -> bool:
    """A generator checkpoint that exists here: a file, or a model registry entry resolving to one."""
    if path and Path(path).is_file():
        return True
    try:
        from facefeat.models.registry import resolve_model

        return Path(resolve_model(str(path))).is_file()
    except FacefeatError:
        return False


def check_generator(generator: str | None) -> None:
    """An explicitly given generator must exist (a file, or a registry name)."""
    if generator is None or _checkpoint_found(generator):
        return
    raise InputError(f"--generator {generator}: no such checkpoint file or model registry entry; pass the StyleGAN2 "
                     "checkpoint the latents were extracted with (see 'facefeat models list')")


def _generator_available(spec: dict) -> str | None:
    path = spec.get("checkpoint")
    if _checkpoint_found(path):
        return None
    return (f"the generator checkpoint {path} recorded in the latent table's provenance is not available on this "
            "machine; pass it with --generator")


def explain_parts(study: Study, val: Any, *, subjects: Sequence[str] | None, steps: Sequence[float],
                  generator: str | None, n_subjects: int, device: str, n_region_subjects: int = 20) -> ExplainParts:
    """Both interpretation sections (or the reason they are absent)."""
    reason = absent_reason(study)
    if reason:
        return _absent(reason)
    try:
        edit = importlib.import_module("facefeat.explain.edit")
    except ModuleNotFoundError:
        return _absent("facefeat.explain.edit is not part of this installation of facefeat.")
    covs = list(study.settings.get("covariates_used") or [])
    try:
        # the study's modelling table is the one the edits need: not read (and warned about) again
        ctx = edit.load_edit_context((study.estimator, study.meta), study.run_dir,
                                     clinical=study.clinical_path if covs else None, X=study.dataset.X)
        direction = ctx.direction()
    except FacefeatError as exc:
        return _absent(f"no health direction could be derived from the model: {exc}")
    try:
        spec = ctx.generator_spec(generator)
    except FacefeatError as exc:
        return _absent(str(exc))
    missing = None if generator else _generator_available(spec)
    if missing:
        return _absent(missing)
    G = edit.load_edit_generator(spec, device=device)
    chosen = list(subjects) if subjects else default_subjects(val.oof, list(map(str, study.dataset.X.index)),
                                                              n_subjects)
    results, failed = [], []
    log.info("rendering edits of %d subject(s) with %s", len(chosen), spec.get("checkpoint"))
    for s in chosen:
        try:
            results.append(edit.edit_subject(ctx, s, direction, steps, G=G))
        except FacefeatError as exc:
            failed.append((s, str(exc)))
    edits = _edits_section(direction, spec, results, failed, chosen_by_default=not subjects, G=G)
    regions = _regions_section(study, ctx, direction, val, steps, G, n_region_subjects)
    return ExplainParts(edits, regions)


def _direction_rows(direction: Any, spec: dict, G: Any) -> list[tuple[str, Any]]:
    d = direction.describe()
    prov = direction.provenance or {}
    shape = prov.get("latent_shape") or list(direction.vector.shape)
    return [("latent column", f"{prov.get('latent_column', '')} (shape {list(shape)}; "
                              f"{'W: the same step on every W+ row' if direction.space == 'w' else 'W+: one step per row'})"),
            ("units", d.get("units")), ("length of one unit step", direction.norm),
            ("gradient norm |g|", prov.get("gradient_norm")),
            ("model", f"{prov.get('model', '')} ({prov.get('fusion', '')} fusion, block {prov.get('block', '')})"),
            ("generator", f"{spec.get('checkpoint')} ({spec.get('network', 'G_ema')}; {G.img_resolution} px, "
                          f"{G.num_ws} W+ rows)")]


def _monotonic(values: np.ndarray) -> bool:
    d = np.diff(np.asarray(values, float))
    return bool(np.all(d >= -1e-9) or np.all(d <= 1e-9))


def _risk_table(table: Any) -> str:
    """The model's prediction per frame, one column per step (compact under the grid)."""
    rows = []
    for key, label in (("log_hazard", "predicted log-hazard"), ("delta_log_hazard", "change from the photo"),
                       ("relative_hazard", "hazard relative to the photo")):
        row = {"": label}
        row.update({f"{s:+g}": float(v) for s, v in zip(table["step"], table[key])})
        rows.append(row)
    return h.table(rows, [""] + [f"{s:+g}" for s in table["step"]], headers={"": "step"}, digits=2)


def _edits_section(direction: Any, spec: dict, results: list, failed: list, *, chosen_by_default: bool,
                   G: Any) -> h.Section:
    body = [h.para("The model's coefficients, mapped back into the generator's latent space (scaling and PCA undone), "
                   "give a 'health attribute' direction. Each row moves one subject's projected latent along it and "
                   "renders the result: negative steps look healthier to the model, positive steps sicker. The text "
                   "under each frame is the model's own prediction for that frame (log-hazard, and hazard relative to "
                   "the unedited photo), not an extrapolation."),
            h.kv_table(_direction_rows(direction, spec, G), caption="Health direction")]
    if chosen_by_default and results:
        body.append(h.para("Subjects shown: spread over the out-of-fold risk (lowest, middle, highest); choose others "
                           "with --subjects.", muted=True))
    for res in results:
        png = array_png(res.grid(min_size=128))
        table = res.table()
        mono = _monotonic(table["log_hazard"].to_numpy())
        body.append(f"<h3>Subject {h.esc(res.subject_id)}</h3>")
        body.append(h.image(png, alt=f"edit grid of subject {res.subject_id}",
                            caption=f"photo {res.image_id[:12]}..., steps {', '.join(f'{s:+g}' for s in res.steps)}"))
        body.append(_risk_table(table))
        if not mono:
            body.append(h.note("The predicted risk does not change monotonically along this path; check the model "
                               "(e.g. the latent block is not the only input that moves).", kind="warning"))
    for s, msg in failed:
        body.append(h.note(f"Subject {s}: no edit ({msg})", kind="warning"))
    if not results and not failed:
        body.append(h.note("No subject to edit: no analysed subject has a latent.", kind="absent"))
    return h.Section(EDITS_ID, EDITS_TITLE, "".join(body))


def _regions_section(study: Study, ctx: Any, direction: Any, val: Any, steps: Sequence[float], G: Any,
                     n_subjects: int) -> h.Section:
    try:
        regions = importlib.import_module("facefeat.explain.regions")
    except ModuleNotFoundError:
        return h.Section(REGIONS_ID, REGIONS_TITLE, h.note(
            "Not shown: facefeat.explain.regions is not part of this installation of facefeat.", kind="absent"))
    from facefeat.explain.mask import REGIONS

    edit_steps = sorted({min(steps), 0.0, max(steps)})
    subjects = default_subjects(val.oof, list(map(str, study.dataset.X.index)), n_subjects)
    log.info("measuring where the edits change the image for %d subject(s)", len(subjects))
    try:
        table = regions.cohort_regions(ctx, subjects, direction, edit_steps, G=G)
    except FacefeatError as exc:
        return h.Section(REGIONS_ID, REGIONS_TITLE, h.note(f"Not shown: {exc}", kind="absent"))
    summary = regions.summarize_regions(table)
    layers = regions.layer_table(direction, G.num_ws)
    counts = summary.attrs.get("status_counts", {})
    n_ok = int(counts.get("ok", 0))
    body = [h.para(
        "Each subject's reconstruction is edited to the outermost steps "
        f"({', '.join(f'{s:+g}' for s in edit_steps if s)}); the 68 landmarks are found on the reconstruction, the "
        "aligned frame is split into face, below the chin (neck, clothing), hair and background, and the pixel-change "
        "energy of the edits is shared between them. A model that relies on the face puts most of the change inside "
        "the face: compare each region's share of the change with its share of the image area (enrichment > 1: more "
        "change than its size)."),
        h.para(f"{len(subjects)} subjects spread over the out-of-fold risk; status: "
               + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".", muted=True)]
    if n_ok == 0:
        reason = next((m for m in table.get("message", []) if isinstance(m, str) and m), "")
        body.append(h.note(
            f"No subject could be measured: {reason or 'no face was found on any reconstruction'}. The shares below "
            "are therefore empty; with a generator of 128 px or more, faces are found on the reconstructions.",
            kind="absent"))
    cols = ["region", "n_subjects", "mean_share", "median_share", "sd_share", "mean_area_share", "enrichment"]
    body.append(h.table(summary, cols, caption="Share of the edits' pixel-change energy per region (subjects with "
                        "status ok; each subject's edited frames pooled)",
                        headers={"n_subjects": "subjects", "mean_share": "mean share of change",
                                 "median_share": "median share", "sd_share": "SD", "mean_area_share": "share of area",
                                 "enrichment": "enrichment (share / area)"}))
    fig = regions.plot_regions(summary, layers)
    body.append(h.image(figure_png(fig), alt="energy share per region and direction norm per layer", width=760,
                        caption="Left: share of the change per region against its area. Right: share of the "
                                "direction's squared norm on each W+ layer (coarse / middle / fine)."))
    if direction.space == "w":
        body.append(h.para("The model was fitted on W: the same step is added to every W+ layer, so the layer shares "
                           "are equal by construction.", muted=True))
    else:
        cols = [str(int(i)) for i in layers["layer"]]
        rows = [{"": "resolution (px)", **dict(zip(cols, (int(r) for r in layers["resolution"])))},
                {"": "group", **dict(zip(cols, layers["group"]))},
                {"": "share of |direction|^2", **dict(zip(cols, (float(v) for v in layers["norm_share"])))}]
        body.append(h.table(rows, [""] + cols, headers={"": "W+ layer"}, digits=3,
                            caption="The direction's squared norm per W+ layer"))
    per_subject = table[["subject_id", "step", "status", *[f"share_{r}" for r in REGIONS], "delta_log_hazard",
                         "message"]].copy()
    body.append(h.details(f"Per subject and step ({len(per_subject)} rows)", h.table(per_subject, digits=3)))
    return h.Section(REGIONS_ID, REGIONS_TITLE, "".join(body))
