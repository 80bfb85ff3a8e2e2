"""The data dictionary (README.md) written next to the robustness tables."""

from __future__ import annotations

from facefeat.robustness.icc import ICC_FORMS, column_name

#: robustness.parquet / .csv: column -> (type, meaning).
TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "extractor": ("string", "extractor (feature table) the feature comes from"),
    "column": ("string", "column of the feature table (an embedding column for its dimensions)"),
    "index": ("int, null", "embedding dimension (row-major over the embedding's shape); null for scalar features"),
    "feature": ("string", "feature name as modelling tables flatten it: the column, or <column>_<index> (facefeat.io.features.flat_column)"),
    "perturbation": ("string", "condition (e.g. jpeg_q50, downscale_0.5, rotate_-5, flip), family (jpeg: all its "
                               "strengths together), 'all' (every condition together), 'seeds' (projection seeds) or "
                               "'repeat' (several photos of one subject)"),
    "scope": ("string", "condition | family | all | seeds | repeat"),
    "family": ("string", "perturbation family (jpeg, downscale, brightness, contrast, rotate, crop, flip, seed, "
                         "repeat photos)"),
    "strength": ("string", "strength of a condition (JPEG quality, scale factor, degrees, crop fraction), the seeds, "
                           "or how repeat photos were chosen"),
    "n_subjects": ("int", "subjects of the ICC: source photos (perturbations, seeds) or persons (repeat) with a usable "
                          "value in every rater"),
    "n_raters": ("int", "raters k: the original plus each copy (or seed, or photo session)"),
    "n_excluded": ("int", "subjects left out: some rater had no usable row (no face found, error, another face than "
                          "the source's) or a null value"),
    "status": ("string", "ok | constant (same value everywhere: ICC is 0/0, undefined) | too_few (fewer subjects "
                         "than an interval needs)"),
    "note": ("string", "why a value is missing or how it was computed"),
    "icc_form": ("string", "ICC form copied to icc, icc_low, icc_high (default ICC(2,1), absolute agreement)"),
    "icc": ("float", "intraclass correlation of the chosen form (unitless, at most 1; may be negative)"),
    "icc_low": ("float", "lower end of its F-based confidence interval (95 % unless configured)"),
    "icc_high": ("float", "upper end of that interval"),
}
for _form, _what in ICC_FORMS.items():
    _stem = column_name(_form)
    TABLE_COLUMNS[_stem] = ("float", f"{_form} = {_what}")
    TABLE_COLUMNS[_stem + "_low"] = ("float", f"lower end of the interval of {_form}")
    TABLE_COLUMNS[_stem + "_high"] = ("float", f"upper end of the interval of {_form}")
TABLE_COLUMNS.update({
    "f_value": ("float", "F statistic of the chosen form's test of ICC = 0 (MSR/MSW one-way, MSR/MSE two-way)"),
    "p_value": ("float", "its p-value (one-sided)"),
    "ccc": ("float", "Lin's concordance correlation with the original (k = 2); overall CCC of Barnhart et al. (2002) "
                     "for k > 2"),
    "ccc_low": ("float", "lower end of Lin's interval (Fisher z, k = 2 only)"),
    "ccc_high": ("float", "upper end of Lin's interval"),
    "wsd": ("float", "within-subject standard deviation sqrt(MSW), in the feature's own unit"),
    "cv": ("float", "within-subject coefficient of variation wsd / |mean| (null unless every value has one sign: a CV needs a ratio-scale quantity)"),
    "mean": ("float", "mean of the feature over all ratings used, in the feature's unit"),
})

SUMMARY_COLUMNS: dict[str, tuple[str, str]] = {
    "extractor": ("string", "extractor"),
    "column": ("string", "feature-table column ('*': every feature of the extractor)"),
    "perturbation": ("string", "as in robustness.parquet"),
    "scope": ("string", "as in robustness.parquet"),
    "n_features": ("int", "features (embedding dimensions counted one by one)"),
    "n_defined": ("int", "features with a defined ICC (status ok): the denominator of the shares"),
    "n_undefined": ("int", "features without (constant, too few subjects)"),
    "icc_form": ("string", "ICC form"),
    "median_icc": ("float", "median ICC of the defined features"),
    "min_icc": ("float", "lowest ICC"),
    "share_ge_075": ("float", "share of defined features with ICC >= 0.75 ('good', Koo & Li 2016)"),
    "share_ge_090": ("float", "share with ICC >= 0.90 ('excellent')"),
    "n_subjects": ("int", "subjects of the ICC"),
}


def data_dictionary() -> str:
    """Markdown describing every file and column of a robustness folder."""
    def block(cols):
        return "\n".join(f"| `{k}` | {t} | {d} |" for k, (t, d) in cols.items())

    return f"""# Feature robustness tables (facefeat robustness)

Each source photo is a *subject* of the intraclass correlation; the original photo and each of
its perturbed copies (or projection seeds, or the photos of one person taken on different days)
are the *raters*. A feature is robust when the differences between photos are much larger than
the differences a perturbation makes: ICC near 1. Intervals are F-based (Shrout & Fleiss 1979;
McGraw & Wong 1996). See docs/robustness.md for the method and defaults.

Files:

- `robustness.parquet`, `robustness.csv`: one row per feature and perturbation (columns below).
- `summary.parquet`, `summary.csv`: per extractor, column and perturbation, the shares of
  features with ICC >= 0.75 and >= 0.9 (columns below).
- `conditions.csv`: per extractor and condition, photos (`n_photos`), rows with status ok
  (`ok`), copies whose face is another face than the source's (`n_other_face`: in a group
  photo the engine kept another face once the original one was lost; not used) and the other
  statuses (`n_<status>`), e.g. faces no longer found after downscaling.
- `manifest.csv`: every photo the engine read: originals (`perturbation` = none) and copies
  with their source (`source_image_id`, `source_path`), `family` and `strength`.
- `copies/`: the perturbed copies; `run/`: the engine run; `seeds/seed-<s>/`: runs of
  stochastic extractors with other seeds.
- `robustness.json`: settings, counts, timings (seconds) and the input's provenance.

## robustness.parquet

| column | type | meaning |
| --- | --- | --- |
{block(TABLE_COLUMNS)}

## summary.parquet

| column | type | meaning |
| --- | --- | --- |
{block(SUMMARY_COLUMNS)}
"""
