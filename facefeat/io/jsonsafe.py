"""One rule for writing Python values as JSON (run summaries, reports, provenance, logs, model files).

JSON has no NaN or infinity: ``json.dumps`` writes the non-standard tokens ``NaN`` and
``Infinity`` by default, which R's jsonlite, DuckDB, JavaScript and strict parsers reject. The
rule here, used by every writer in facefeat:

- a float that is NaN, +inf or -inf becomes ``null`` (read back as a missing value by pandas,
  R and DuckDB); finite floats are written exactly (``repr`` round-trip);
- numpy / torch scalars and arrays become Python numbers and (nested) lists, through the same
  rule (a NaN inside an array is ``null`` too);
- mappings become objects with string keys; tuples, lists and sets become arrays (sets sorted
  when their items sort, so the output is stable);
- ``datetime`` / ``date`` become ISO 8601 strings, paths their string, pandas ``NA``/``NaT``
  ``null``; any other object its ``str()``.

A value that carries a missing number therefore never makes an invalid file, and the same input
always gives the same text (hashes of configs stay stable).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from typing import Any, Mapping


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None) by the module's rule.

    Parameters
    ----------
    value : any
        Nested dicts, lists, tuples, sets, numpy/torch scalars and arrays, paths, dates, ...

    Returns
    -------
    The same structure in JSON types; NaN and infinities are ``None``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum or numpy-registered int subclass writes as its number
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas missing values, without importing pandas
        # (NaT is a datetime subclass: checked first)
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # numpy and torch scalars and arrays
    if callable(tolist) and not isinstance(value, type):
        try:
            return to_jsonable(tolist())
        except TypeError:  # e.g. a tolist that needs arguments
            pass
    if hasattr(value, "isoformat") and callable(value.isoformat):  # pandas Timestamp, numpy datetime64 via tolist
        return value.isoformat()
    return str(value)


def dumps_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps(to_jsonable(value), ...)``: strict JSON text by the module's rule.

    Keyword arguments go to :func:`json.dumps` (``indent``, ``sort_keys``, ``separators``);
    ``allow_nan`` is always False (nothing non-finite is left to write) and no ``default`` is
    needed (every object has been converted).
    """
    return json.dumps(to_jsonable(value), allow_nan=False, **kwargs)
