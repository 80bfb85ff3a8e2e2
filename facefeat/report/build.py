"""``build_report`` and ``write_report``: the study report as one self-contained HTML file."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from facefeat.io.atomic import atomic_output
from facefeat.errors import ConfigError

log = logging.getLogger("facefeat.report")

DEFAULT_EDIT_STEPS = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


def parse_steps(text: str | Sequence[float] | None) -> tuple[float, ...]:
    """Edit steps as ``facefeat explain edit`` reads them (:func:`facefeat.explain.edit.parse_steps`:
    ``"-3..3"``, ``"-2..2:0.5"``, ``"-2,0,2"`` or numbers), at most 15."""
    if text is None:
        return DEFAULT_EDIT_STEPS
    from facefeat.explain.edit import parse_steps as explain_steps

    try:
        steps = tuple(float(s) for s in explain_steps(text))
    except ConfigError as exc:
        raise ConfigError(f"--edit-steps: {exc} (write --edit-steps=-3..3 so the minus is not read as an option)") from None
    if len(steps) > 15:
        raise ConfigError(f"--edit-steps {text!r}: {len(steps)} steps; give at most 15 (e.g. -3..3)")
    return steps


def parse_subjects(text: str | Sequence[str] | None) -> list[str] | None:
    """Subject ids from ``"P1,P2"`` or a sequence; None keeps the default choice."""
    if text is None:
        return None
    ids = [s.strip() for s in text.split(",")] if isinstance(text, str) else [str(s) for s in text]
    ids = [s for s in ids if s]
    if not ids:
        raise ConfigError("--subjects is empty; give comma-separated subject ids, e.g. --subjects P001,P017")
    return ids


def _columns(text: str | Sequence[str] | None) -> list[str] | None:
    """Column names from ``"sex,stage"`` or a sequence; None or empty keeps the default."""
    if text is None:
        return None
    cols = [c.strip() for c in text.split(",")] if isinstance(text, str) else [str(c) for c in text]
    return [c for c in cols if c] or None


def build_report(
    run_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    *,
    clinical: str | os.PathLike | None = None,
    subjects: str | Sequence[str] | None = None,
    edit_steps: str | Sequence[float] | None = None,
    generator: str | os.PathLike | None = None,
    n_edit_subjects: int = 3,
    n_region_subjects: int = 20,
    cv_folds: int = 5,
    cv_repeats: int = 5,
    risk_groups: int = 3,
    seed: int = 0,
    trust: bool = False,
    subgroups: str | Sequence[str] | None = None,
    n_jobs: int = 1,
    device: str = "cpu",
    title: str | None = None,
    command: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
) -> str:
    """The study report of an extraction run and a fitted model, as one HTML string.

    Parameters
    ----------
    run_dir : path
        Output folder of ``facefeat extract`` (one Parquet table per extractor).
    model_dir : path
        Output folder of ``facefeat fit``. When it holds a cross-validation written by
        ``facefeat evaluate --out MODEL_DIR/cv`` (``results.json`` + ``oof_predictions.csv``),
        the report uses it; otherwise it cross-validates the model's specification now.
    clinical : path, optional
        Clinical table; default the one recorded in ``model.json``.
    subjects : str or sequence of str, optional
        Subjects whose photos are edited along the health direction (``"P1,P2"``); default
        ``n_edit_subjects`` subjects of low, middle and high out-of-fold risk.
    edit_steps : str or sequence of float, optional
        Steps along the direction (``"-3..3"``); one unit raises the predicted log-hazard by 1.
    generator : path, optional
        StyleGAN2 checkpoint that renders the edits; default the one recorded in the latent
        table's provenance.
    n_edit_subjects, n_region_subjects : int
        Subjects edited by default, and subjects whose edits are measured by region (both
        spread over the out-of-fold risk).
    trust : bool, default False
        Allow an old pickle model file (see :func:`facefeat.survival.persist.load_model`).
    subgroups : str or sequence of str, optional
        Clinical columns whose subgroups are audited (``"sex,stage"``); default the model's
        clinical covariates (numeric ones in tertiles).
    cv_folds, cv_repeats, risk_groups, seed, n_jobs :
        Cross-validation when none is stored (risk groups: tertiles by default).
    device : str
        Device of the generator.
    title, command : str, optional
        Page title; the command line to record in the provenance section.

    Returns
    -------
    str
        A complete HTML document: CSS inline, images as base64 PNG data URIs, no external
        resources.

    Raises
    ------
    FacefeatError
        Bad inputs (see :func:`facefeat.report.study.load_study`), bad options.
    """
    from facefeat import __version__
    from facefeat.report import explain as ex
    from facefeat.report import html as h
    from facefeat.report import sections as sec
    from facefeat.report import statistics as stat
    from facefeat.report.study import load_study
    from facefeat.report.validation import compute_cv, find_stored_cv, load_stored_cv, stored_cv_mismatch
    from facefeat.survival.persist import spec_fingerprint

    steps = parse_steps(edit_steps)
    wanted = parse_subjects(subjects)
    if risk_groups < 2:
        raise ConfigError(f"risk_groups must be 2 or more, not {risk_groups}")
    ex.check_generator(None if generator is None else str(generator))
    study = load_study(run_dir, model_dir, clinical=clinical, sep=sep, decimal=decimal, trust=trust)
    if wanted:
        ex.check_subjects(study, wanted)
    stored = find_stored_cv(study.model_dir)
    val, why = None, None
    if stored is not None:
        # a stored cross-validation is shown only when it is of this model's specification
        val = load_stored_cv(stored, risk_groups=risk_groups)
        spec = spec_fingerprint(study.estimator, study.meta.get("schema") or {}, study.meta.get("settings") or {})
        why = stored_cv_mismatch(val, spec, len(study.dataset.y), int(study.dataset.y["event"].sum()))
        if why is not None:
            log.warning("%s; cross-validating the saved model's specification instead", why)
            val = None
    if val is None:
        log.info("cross-validating the model specification (%d x %d folds)", cv_repeats, cv_folds)
        val = compute_cv(study.estimator, study.dataset.X, study.dataset.y, n_splits=cv_folds, n_repeats=cv_repeats,
                         risk_groups=risk_groups, random_state=seed, n_jobs=n_jobs, why=why)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info = {"created": created, "facefeat_version": __version__,
            "command": command if command is not None else " ".join(sys.argv)}
    explain = ex.explain_parts(study, val, subjects=wanted, steps=steps,
                               generator=None if generator is None else str(generator),
                               n_subjects=n_edit_subjects, n_region_subjects=n_region_subjects, device=device)
    sections = [
        sec.cohort_section(study),
        sec.features_section(study),
        sec.validation_section(study, val),
        sec.km_section(val, sec.time_unit(study)),
        sec.calibration_section(val, sec.time_unit(study)),
        stat.hazard_section(study),
        stat.subgroup_section(study, val, _columns(subgroups)),
        *([part] if (part := stat.robustness_part(study)) is not None else []),
        explain.edits,
        explain.regions,
        sec.provenance_section(study, val, info),
    ]
    n, ev = len(study.dataset.y), int(study.dataset.y["event"].sum())
    subtitle = (f"{n} subjects, {ev} events; model {study.meta.get('estimator')} "
                f"({(study.meta.get('params') or {}).get('model')}); RUN_DIR {study.run_dir}, MODEL_DIR "
                f"{study.model_dir}; facefeat {__version__}; {created}")
    return h.page(title or "facefeat study report", subtitle, sections)


def write_report(run_dir: str | os.PathLike, model_dir: str | os.PathLike, out: str | os.PathLike,
                 **kwargs: Any) -> Path:
    """:func:`build_report` written to ``out`` atomically (temporary file, then rename)."""
    text = build_report(run_dir, model_dir, **kwargs)
    out = Path(out)
    with atomic_output(out, umask_mode=True) as tmp:  # a report is for sharing: not mkstemp's 0600
        tmp.write_text(text, encoding="utf-8")
    return out
