"""Keep only features whose reliability reaches a threshold: the radiomics rule before modelling.

:func:`filter_features` reads a robustness table written by ``facefeat robustness`` and splits
a modelling table's feature columns into kept and dropped ones; embedding dimensions are
judged one by one. The returned record goes into the model's provenance so that a reader can
see (and repeat) exactly which filter was applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from facefeat.errors import ConfigError, DataError, InputError

#: File names of the robustness table inside an output folder.
TABLE_PARQUET = "robustness.parquet"
TABLE_CSV = "robustness.csv"

#: Pseudo-perturbation of :func:`filter_features`: the lowest ICC over every single condition.
WORST = "worst"



def table_file(path: str | Path) -> Path:
    """The robustness table of an output folder (Parquet preferred) or the file given.

    Raises
    ------
    InputError
        Nothing there.
    """
    path = Path(path)
    if path.is_dir():
        for name in (TABLE_PARQUET, TABLE_CSV):
            if (path / name).is_file():
                return path / name
        raise InputError(f"{path}: no {TABLE_PARQUET} or {TABLE_CSV}; run 'facefeat robustness ... -o {path}' first")
    if not path.is_file():
        raise InputError(f"robustness table {path} does not exist (give the folder written by 'facefeat robustness' "
                         f"or its {TABLE_PARQUET})")
    return path


def read_table(path: str | Path):
    """Read a robustness table (folder, ``.parquet`` or ``.csv``) into a DataFrame."""
    import pandas as pd

    file = table_file(path)
    try:
        df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file, keep_default_na=True)
    except Exception as exc:
        raise InputError(f"{file}: cannot read the robustness table: {exc}") from None
    need = ("extractor", "column", "feature", "perturbation", "status", "icc", "icc_form")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"{file}: not a robustness table (lacks column(s) {', '.join(missing)}); "
                        "make one with 'facefeat robustness'")
    return df


def filter_features(
    columns: Sequence[str],
    table_path: str | Path,
    *,
    min_icc: float,
    form: str | None = None,
    perturbation: str | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """Split feature columns into those whose ICC reaches ``min_icc`` and the rest.

    Parameters
    ----------
    columns : sequence of str
        Feature columns of a modelling table: scalars ``<extractor>__<feature>`` and flattened
        embedding dimensions (:func:`facefeat.io.features.flat_column` names).
    table_path : path
        Folder written by ``facefeat robustness``, or its ``robustness.parquet`` / ``.csv``.
    min_icc : float
        Threshold in (-1, 1]; a column is kept when its ICC estimate is >= ``min_icc``
        (0.75 and 0.9 are the usual radiomics choices, Koo & Li 2016).
    form : str, optional
        ICC form, e.g. ``"ICC(3,1)"``; default the table's own (``icc_form``, ICC(2,1) unless
        changed when it was made).
    perturbation : str, optional
        Which rows judge a feature: ``"all"`` (every perturbation pooled), a family
        (``"jpeg"``), one condition (``"jpeg_q50"``), ``"seeds"``, ``"repeat"``, or
        ``"worst"`` (the lowest ICC over every single condition and the seed rows). Default:
        ``"all"`` when the table has it, otherwise ``"worst"`` (e.g. a table of seeds only).

    Returns
    -------
    kept : list of str
        The columns kept, in input order. Columns of extractors the table does not cover are
        kept (counted as ``not_assessed``).
    record : dict
        What was done, for provenance: ``table``, ``table_sha256``, ``min_icc``, ``form``,
        ``perturbation``, ``n_columns``, ``kept``, ``dropped``, ``dropped_below``,
        ``dropped_undefined``, ``not_assessed``, ``not_assessed_extractors``,
        ``dropped_columns``.

    Raises
    ------
    ConfigError
        Threshold out of range, unknown form or perturbation.
    DataError
        A column of an extractor the table covers has no row (table made with another config).
    """
    from facefeat.io.features import split_flat_column
    from facefeat.io.hashing import sha256_file
    from facefeat.robustness.icc import check_form, column_name

    try:
        min_icc = float(min_icc)
    except (TypeError, ValueError):
        raise ConfigError(f"min_icc must be a number in (-1, 1], not {min_icc!r}") from None
    if not -1 < min_icc <= 1:
        raise ConfigError(f"min_icc = {min_icc} is out of range; an ICC threshold lies in (-1, 1] (usual: 0.75 or 0.9)")
    file = table_file(table_path)
    df = read_table(file)
    form = check_form(form) if form else str(df["icc_form"].iloc[0]) if len(df) else "ICC(2,1)"
    if perturbation is None:
        perturbation = "all" if (df["perturbation"] == "all").any() else WORST
    value_col = "icc" if form == str(df["icc_form"].iloc[0]) else column_name(form)
    if value_col not in df.columns:
        raise DataError(f"{file}: has no column {value_col} for {form}")
    if perturbation == WORST:
        rows = df[df["scope"].isin(("condition", "seeds"))] if "scope" in df.columns else df
        rows = rows.assign(_v=rows[value_col].where(rows["status"] == "ok"))
        # a feature undefined under any condition counts as undefined (NaN propagates through min)
        rows = rows.groupby("feature", sort=False).agg(_v=("_v", lambda s: s.min(skipna=False)),
                                                        status=("status", lambda s: "ok" if (s == "ok").all()
                                                                else next(x for x in s if x != "ok")),
                                                        extractor=("extractor", "first"), column=("column", "first"),
                                                        index=("index", "first")).reset_index()
    else:
        rows = df[df["perturbation"] == perturbation]
        if rows.empty:
            have = ", ".join(sorted(df["perturbation"].astype(str).unique()))
            raise ConfigError(f"{file}: no rows for perturbation {perturbation!r}; it has: {have} (or use {WORST!r})")
        rows = rows.assign(_v=rows[value_col])
    extractors = set(rows["extractor"].astype(str))
    by_feature = dict(zip(rows["feature"].astype(str), range(len(rows))))
    by_dim = {}
    if "index" in rows.columns:
        import pandas as pd

        for i, (col, idx) in enumerate(zip(rows["column"].astype(str), rows["index"])):
            if not pd.isna(idx):  # scalars have no index
                by_dim[(col, int(idx))] = i
    values = rows["_v"].to_numpy(float)
    status = rows["status"].astype(str).to_numpy()
    kept, dropped, not_assessed, unmatched = [], [], [], []
    n_below = n_undefined = 0
    assessed_extractors = set()
    for c in columns:
        ext = c.split("__", 1)[0] if "__" in c else None
        if ext not in extractors:
            kept.append(c)
            not_assessed.append(c)
            continue
        i = by_feature.get(c)
        if i is None:  # a flattened dimension named otherwise than in the table: match (column, index)
            dim = split_flat_column(c)
            i = by_dim.get(dim) if dim else None
        if i is None:
            unmatched.append(c)
            continue
        assessed_extractors.add(ext)
        v = values[i]
        if status[i] != "ok" or v != v:
            n_undefined += 1
            dropped.append(c)
        elif v >= min_icc:
            kept.append(c)
        else:
            n_below += 1
            dropped.append(c)
    if unmatched:
        raise DataError(
            f"{file} has no row for {len(unmatched)} column(s) of extractor(s) it covers "
            f"(first: {', '.join(unmatched[:5])}); was it made from tables with another extractor config? "
            "Re-run 'facefeat robustness' with the same extractors and settings as the features"
        )
    record = {
        "table": str(file), "table_sha256": sha256_file(file), "min_icc": min_icc, "form": form,
        "perturbation": perturbation, "n_columns": len(columns), "kept": len(kept), "dropped": len(dropped),
        "dropped_below": n_below, "dropped_undefined": n_undefined, "not_assessed": len(not_assessed),
        "not_assessed_extractors": sorted({c.split("__", 1)[0] for c in not_assessed if "__" in c}),
        "dropped_columns": dropped,
    }
    return kept, record
