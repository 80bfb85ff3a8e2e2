"""The study report rendered from a real small study: sections, numbers, images, escaping,
self-containedness."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest

from tests.report.study import NASTY_ID

SECTIONS = ("cohort", "features", "validation", "km", "calibration", "edits", "regions", "provenance")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.sections: dict[str, list[str]] = {}
        self._current: str | None = None
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "section":
            self._current = a.get("id")
            self.sections[self._current] = []
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._current is not None:
            self.sections[self._current].append(data)


def _parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


def _section_text(text: str, sid: str) -> str:
    return " ".join(_parse(text).sections[sid])


def _section_html(text: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', text, re.S)
    assert m, sid
    return m.group(1)


def test_every_section_is_there_with_a_heading(report):
    text, _ = report
    for sid in SECTIONS:
        assert re.search(rf'<section id="{sid}"><h2>[^<]+</h2>', text), sid
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")


def test_cohort_counts_every_image_and_subject(report):
    text, _ = report
    s = _section_text(text, "cohort")
    html = _section_html(text, "cohort")
    # 90 images, 87 ok, one each of no_face / multiple_faces / unreadable, no truncated; 87 analysed,
    # 2 clinical-only (columns in io.images.STATUSES order)
    row = re.search(r"<tr><td>stylegan2</td>(.*?)</tr>", html).group(1)
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["90", "90", "87", "1", "1", "0", "1", "0", "0", "3"]
    assert re.search(r"exact duplicates \(same bytes, same subject\)</th><td>1</td>", html)
    assert "subjects analysed" in s and "87" in s
    assert "subjects in the clinical table" in s and "92" in s
    assert "without a usable photo (dropped)" in s
    assert "X900" in s and "X901" in s  # the clinical subjects without a photo are named
    assert "unreadable: simulated failure" in s  # failed images listed with their error


def test_features_section_names_blocks_tables_and_versions(report):
    s = _section_text(report[0], "features")
    assert "stylegan2__latent_0" in s and "stylegan2.parquet" in s
    assert "1.0.0" in s and "[1, 64]" in s and "coxph" in s


def test_validation_has_cv_table_with_intervals(report):
    html = _section_html(report[0], "validation")
    s = _section_text(report[0], "validation")
    assert "computed now" in s and "1 x 3-fold" in s
    for metric in ("Harrell's C-index", "Uno's C-index", "integrated Brier score"):
        row = re.search(rf"<tr><td>{re.escape(metric.replace(chr(39), '&#x27;'))}[^<]*</td>(.*?)</tr>", html)
        assert row, metric
        nums = [float(x) for x in re.findall(r'<td class="num">(-?[\d.]+)</td>', row.group(1))]
        mean, lo, hi = nums[:3]
        assert 0 < mean < 1 and lo <= mean <= hi
    c = float(re.search(r"<tr><td>Harrell&#x27;s C-index</td><td class=\"num\">([\d.]+)", html).group(1))
    assert c > 0.6  # survival was planted along a direction of W


def test_km_uses_out_of_fold_tertiles(report):
    s = _section_text(report[0], "km")
    assert "3 groups by the quantiles" in s and "out-of-fold" in s
    assert "log-rank p" in s
    for g in ("1 (low)", "2 (intermediate)", "3 (high)"):
        assert g in s


def test_images_are_embedded_decodable_pngs(report):
    from PIL import Image

    p = _parse(report[0])
    srcs = [a["src"] for t, a in p.tags if t == "img"]
    assert len(srcs) >= 5  # td-AUC, KM, calibration, two edit grids
    for src in srcs:
        assert src.startswith("data:image/png;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.size[0] > 50 and img.size[1] > 50
    for sid in ("validation", "km", "calibration", "edits"):
        assert "data:image/png;base64," in _section_html(report[0], sid), sid


def test_no_external_resources(report):
    text = report[0]
    assert "http://" not in text and "https://" not in text
    p = _parse(text)
    assert not [t for t, _ in p.tags if t in ("script", "link", "iframe", "object", "embed")]
    for t, a in p.tags:
        for attr in ("src", "href"):
            if attr in a:
                assert a[attr].startswith(("data:", "#")), (t, a[attr][:60])
    assert "Content-Security-Policy" in text and "<style>" in text


def test_subject_ids_are_escaped(report):
    text = report[0]
    assert NASTY_ID not in text and "<script>" not in text
    escaped = '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;P&#x27;1'
    assert f"<h3>Subject {escaped}</h3>" in _section_html(text, "edits")
    # and the parser sees it as text, not markup
    assert NASTY_ID in _section_text(text, "edits")


def test_edit_grids_with_monotone_risk(report):
    html = _section_html(report[0], "edits")
    s = _section_text(report[0], "edits")
    assert "one unit step changes the log_hazard by 1" in s
    assert "Subject P001" in s
    rows = re.findall(r"<tr><td>predicted log-hazard</td>(.*?)</tr>", html)
    assert len(rows) == 2
    for r in rows:
        v = [float(x) for x in re.findall(r'<td class="num">(-?[\d.]+)</td>', r)]
        assert len(v) == 5 and all(b > a for a, b in zip(v, v[1:]))  # steps -2..2, +1 log-hazard each
        assert [round(b - a, 1) for a, b in zip(v, v[1:])] == [1.0] * 4
    assert "not monotonically" not in s


def test_modelling_table_is_built_once(report, study):
    """The edits and regions use the study's modelling table (its data-handling notes logged once)."""
    assert "Subject P001" in _section_text(report[0], "edits")
    assert study["dataset_loads"] == 1


def test_regions_section_has_content_or_says_why(report):
    html = _section_html(report[0], "regions")
    assert "data:image/png;base64," in html or 'class="note absent"' in html
    assert len(_section_text(report[0], "regions").strip()) > 20


def test_provenance_lists_hashes_versions_and_commands(report, study):
    from facefeat.io.hashing import sha256_file

    s = _section_text(report[0], "provenance")
    assert sha256_file(study["model"] / "model.skops") in s
    assert sha256_file(study["run"] / "stylegan2.parquet") in s
    assert sha256_file(study["clinical"]) in s
    assert "settings fingerprint" in s and re.search(r"[0-9a-f]{64}", s)
    assert "facefeat report" in s and "--edit-steps=-2..2" in s  # this report's command line (given as '--edit-steps -2..2')
    assert "scikit-survival" in s  # library versions at fit
    assert "stylegan2 1.0.0" in s


def test_report_file_is_world_readable(report):
    import os
    import stat

    mode = os.stat(report[1]).st_mode
    assert mode & stat.S_IRUSR and mode & stat.S_IRGRP


def test_settings_fingerprint_is_stable_and_sensitive():
    from facefeat.report.sections import settings_fingerprint

    meta = {"estimator": "SurvivalEstimator", "params": {"model": "coxph"}, "schema": {"blocks": {"image": ["a"]}},
            "settings": {"time": "t"}, "provenance": {"created": "now"}}
    a = settings_fingerprint(meta)
    assert a == settings_fingerprint({**meta, "provenance": {"created": "later"}})
    assert a != settings_fingerprint({**meta, "params": {"model": "coxnet"}})


@pytest.mark.parametrize("text,expected", [("-3..3", (-3, -2, -1, 0, 1, 2, 3)), ("-1,0,2.5", (-1, 0, 2.5)),
                                           ("-1..1:0.5", (-1, -0.5, 0, 0.5, 1)), ("0..0", (0,)),
                                           (None, (-3, -2, -1, 0, 1, 2, 3))])
def test_parse_steps(text, expected):
    from facefeat.report.build import parse_steps

    assert parse_steps(text) == tuple(float(x) for x in expected)
