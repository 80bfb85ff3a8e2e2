"""Writing cross-validation results in the one layout every reader uses.

``facefeat evaluate``, ``facefeat simulate`` and the study write a cross-validation as a folder
with ``results.json`` (mode, model, the specification fingerprint, summary, folds, AUC curve,
calibration, settings, notes), ``results.md`` and ``oof_predictions.csv``; the report reads it
back (:mod:`facefeat.report.validation`) only when its ``spec_sha256`` equals the saved model's
(:func:`facefeat.survival.persist.spec_fingerprint`), so a stored cross-validation is never shown
under another model's heading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facefeat.io.atomic import atomic_output, write_bytes_atomic
from facefeat.io.jsonsafe import dumps_json

RESULTS_FILE = "results.json"
OOF_FILE = "oof_predictions.csv"


def write_results(out: str | Path, data: dict, markdown: str) -> None:
    """``results.json`` (``data`` as strict JSON, :mod:`facefeat.io.jsonsafe`) and ``results.md``, atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / RESULTS_FILE, dumps_json(data, indent=2).encode())
    write_bytes_atomic(out / "results.md", markdown.encode())


def write_cv_results(out: str | Path, res: Any, *, model: Any, fusion: str | None, spec_sha256: str,
                     title: str, extra: dict | None = None, extra_markdown: str = "") -> Path:
    """Write a :class:`~facefeat.survival.validation.CVResult` as a cross-validation folder.

    Parameters
    ----------
    out : path
        The folder (created).
    res : CVResult
    model, fusion : the model's name (or description) and fusion, shown by readers
    spec_sha256 : str
        :func:`facefeat.survival.persist.spec_fingerprint` of the cross-validated specification.
    title : str
        Heading of ``results.md``.
    extra : dict, optional
        More entries for ``results.json`` (data report, log-rank p, ...).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / OOF_FILE) as tmp:
        res.oof.to_csv(tmp, index=False)
    data = {"mode": "cross-validation", "model": model, "fusion": fusion, "spec_sha256": spec_sha256,
            **(extra or {}), **res.to_dict()}
    write_results(out, data, f"# {title}\n\n" + res.to_markdown() + extra_markdown)
    return out
