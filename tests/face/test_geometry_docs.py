"""The feature dictionaries in docs/features/ match what the extractors produce.

Each dictionary has a summary table (``| `column` | unit | expected range | type |``) and one
``### `column` `` section per column. Both must list exactly the columns of the extractor's
output schema (every optional column switched on), and the table's unit and range must match
the ``unit`` / ``range`` metadata of the schema's fields.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from facefeat_builtins.face_descriptor import FaceDescriptorExtractor
from facefeat_builtins.landmarks import LandmarksExtractor

DOCS = Path(__file__).resolve().parents[2] / "docs" / "features"

EXTRACTORS = {
    "landmarks": LandmarksExtractor({"pose": True, "include_points": True}),
    "face_descriptor": FaceDescriptorExtractor({}),
}

_ROW = re.compile(r"^\|\s*`(?P<col>[a-z0-9_]+)`\s*\|\s*(?P<unit>[^|]+?)\s*\|\s*(?P<range>[^|]+?)\s*\|\s*(?P<type>[^|]+?)\s*\|\s*$")
_HEADING = re.compile(r"^###\s+`(?P<col>[a-z0-9_]+)`\s*$")


_UNIT = re.compile(r"^- Unit:\s*(?P<v>.+?)\s*$")
_RANGE = re.compile(r"^- Expected range:\s*(?P<v>.+?)\s*$")


def parse_dictionary(text: str) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Summary-table rows (column -> (unit, range)) and section headings, in order."""
    table, headings, _ = parse_sections(text)
    return table, headings


def parse_sections(text: str):
    """Summary table, section headings, and each section's ``- Unit:`` / ``- Expected range:``."""
    table: dict[str, tuple[str, str]] = {}
    headings: list[str] = []
    sections: dict[str, dict[str, str]] = {}
    current: str | None = None  # the column whose section we are in
    for line in text.splitlines():
        if m := _ROW.match(line):
            if "__" in m["col"]:
                assert m["col"] not in table, f"{m['col']} listed twice in the summary table"
                table[m["col"]] = (m["unit"], m["range"])
        elif m := _HEADING.match(line):
            current = m["col"]
            headings.append(current)
            sections[current] = {}
        elif line.startswith("#"):
            current = None  # any other heading ends the column's section
        elif current and (m := _UNIT.match(line)):
            sections[current].setdefault("unit", m["v"])
        elif current and (m := _RANGE.match(line)):
            sections[current].setdefault("range", m["v"])
    return table, headings, sections


def _range(text: str) -> list[float] | None:
    if text.strip() in {"—", "-"}:
        return None
    lo, hi = (float(v) for v in text.strip("[]() ").split(","))
    return [lo, hi]


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_feature_dictionary_matches_output_schema(name):
    path = DOCS / f"{name}.md"
    assert path.is_file(), f"{path} is missing: every extractor needs a feature dictionary"
    table, headings = parse_dictionary(path.read_text(encoding="utf-8"))
    schema = EXTRACTORS[name].output_schema()
    produced = [f.name for f in schema]

    assert len(headings) == len(set(headings)), "a column has two sections"
    missing = [c for c in produced if c not in headings]
    extra = [c for c in headings if c not in produced]
    assert not missing, f"{path.name}: produced but not documented: {missing}"
    assert not extra, f"{path.name}: documented but not produced: {extra}"
    assert sorted(table) == sorted(produced), (
        f"{path.name} summary table: missing {sorted(set(produced) - set(table))}, "
        f"extra {sorted(set(table) - set(produced))}"
    )

    for field in schema:
        unit, rng = table[field.name]
        meta = field.metadata or {}
        if b"unit" in meta:
            assert unit == meta[b"unit"].decode(), field.name
        if b"range" in meta:
            assert _range(rng) == json.loads(meta[b"range"]), field.name
        else:
            assert _range(rng) is None, field.name


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_sections_state_the_same_unit_and_range_as_the_summary(name):
    table, headings, sections = parse_sections((DOCS / f"{name}.md").read_text(encoding="utf-8"))
    for col in headings:
        unit, rng = table[col]
        assert sections[col].get("unit") == unit, col
        assert _range(sections[col].get("range", "")) == _range(rng), col


def test_documented_ranges_are_well_formed():
    table, _ = parse_dictionary((DOCS / "landmarks.md").read_text(encoding="utf-8"))
    for col, (_, rng) in table.items():
        r = _range(rng)
        if r is not None:
            assert r[0] < r[1] and not math.isnan(r[0]), col


def test_parser_sees_a_missing_entry():
    text = "| `landmarks__a` | IOD | [0, 1] | float64 |\n\n### `landmarks__a`\n\n### `landmarks__b`\n"
    table, headings = parse_dictionary(text)
    assert list(table) == ["landmarks__a"] and headings == ["landmarks__a", "landmarks__b"]
