"""HTML building blocks of the study report: escaping, tables, embedded images, sections.

Everything here returns strings of HTML. Every piece of text that reaches the page goes
through :func:`esc` (subject ids, column names and file paths come from users), and images are
embedded as ``data:image/png;base64`` URIs, so the page is one self-contained file that works
offline. The page carries a Content-Security-Policy that forbids loading anything from
outside, so a mistake that slips in an external reference shows up as a broken element
instead of a silent network request.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: No network access: images only as data: URIs, styles only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --bg: #ffffff; --band: #f4f6f9;
        --accent: #2b5ea7; --warn-bg: #fff4e0; --warn-line: #e0a030; --note-bg: #eef3fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: var(--bg); }
header.top { background: var(--fg); color: #fff; padding: 18px 32px; }
header.top h1 { margin: 0 0 4px; font-size: 24px; }
header.top p { margin: 0; color: #c9d1e0; font-size: 13px; }
nav.toc { padding: 10px 32px; background: var(--band); border-bottom: 1px solid var(--line); font-size: 14px; }
nav.toc a { color: var(--accent); text-decoration: none; margin-right: 16px; white-space: nowrap; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 48px; }
section { border-bottom: 1px solid var(--line); padding: 12px 0 20px; }
h2 { font-size: 20px; margin: 12px 0 8px; color: var(--accent); }
h3 { font-size: 16px; margin: 16px 0 6px; }
p { margin: 6px 0; }
.muted { color: var(--muted); font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 13px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; vertical-align: top; text-align: left; }
th { background: var(--band); font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv { min-width: 680px; max-width: 100%; }
table.kv th { white-space: nowrap; }
table.kv th.sub { font-weight: 400; padding-left: 28px; }
td code, p code, li code { font-size: 12px; word-break: break-all; }
.note { border-left: 4px solid var(--accent); background: var(--note-bg); padding: 8px 12px; margin: 8px 0; }
.note.warning { border-color: var(--warn-line); background: var(--warn-bg); }
.note.absent { border-color: var(--warn-line); background: var(--warn-bg); font-weight: 500; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); display: block; }
figure img.pixelated { image-rendering: pixelated; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; max-width: 560px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 140px; background: var(--band); }
.card .v { font-size: 22px; font-weight: 600; }
.card .k { font-size: 12px; color: var(--muted); }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--band); border: 1px solid var(--line); padding: 8px; font-size: 12px; overflow-x: auto;
      white-space: pre-wrap; word-break: break-all; }
@media print { nav.toc { display: none; } section { page-break-inside: avoid; } }
"""


def esc(value: Any) -> str:
    """``value`` as text safe to put in HTML element content or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_number(value: Any, digits: int = 3) -> str:
    """A number for a table cell: integers as is, floats to ``digits`` decimals (below that in
    scientific notation, never a misleading 0.000), NaN empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"):
        return str(int(value))
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(f):
        return ""
    if abs(f) >= 1e6:
        return f"{f:.{digits}g}"
    if f != 0 and abs(f) < 0.5 * 10 ** -digits:  # would print as 0.000: a p-value of 3e-17 is not 0
        return f"{f:.2g}"
    text = f"{f:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.000"


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf"


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes (checked to be a PNG)."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not PNG data (missing the PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image(png: bytes, *, alt: str, caption: str | None = None, width: int | None = None, pixelated: bool = False) -> str:
    """A ``<figure>`` with the PNG embedded and an optional (escaped) caption."""
    attrs = f' width="{int(width)}"' if width else ""
    cls = ' class="pixelated"' if pixelated else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(png)}" alt="{esc(alt)}"{attrs}{cls}>{cap}</figure>'


def table(
    rows: Iterable[Mapping[str, Any]] | Any,
    columns: Sequence[str] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    caption: str | None = None,
    digits: int | Mapping[str, int] = 3,
    css_class: str = "",
) -> str:
    """An HTML table of records (dicts) or a pandas DataFrame; every cell escaped.

    Numbers are right-aligned and rounded to ``digits`` (per column with a mapping).
    """
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        columns = list(columns or [str(c) for c in rows.columns])
        rows = rows.to_dict(orient="records")
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
    headers = headers or {}
    out = [f'<table class="{esc(css_class)}">' if css_class else "<table>"]
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(headers.get(c, c))}</th>" for c in columns) + "</tr></thead><tbody>")
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            if _is_number(v):
                d = digits.get(c, 3) if isinstance(digits, Mapping) else digits
                cells.append(f'<td class="num">{esc(fmt_number(v, d))}</td>')
            else:
                cells.append(f"<td>{esc('' if v is None else v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv_table(items: Iterable[tuple[str, Any]], *, caption: str | None = None, code: bool = False) -> str:
    """A two-column key/value table (values escaped; ``code`` sets them in monospace; a key
    starting with two spaces is shown indented, as a sub-row of the one above)."""
    out = ['<table class="kv">']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    for k, v in items:
        text = esc(fmt_number(v) if _is_number(v) else ("" if v is None else v))
        sub = ' class="sub"' if k.startswith("  ") else ""  # indented key: a sub-row of the one above
        out.append(f"<tr><th{sub}>{esc(k.strip())}</th><td>{f'<code>{text}</code>' if code else text}</td></tr>")
    out.append("</table>")
    return "".join(out)


def note(text: str, *, kind: str = "info") -> str:
    """A highlighted paragraph; ``kind`` is ``info``, ``warning`` or ``absent`` (a part that
    could not be made, with the reason)."""
    return f'<div class="note {esc(kind)}">{esc(text)}</div>'


def cards(items: Iterable[tuple[str, Any]]) -> str:
    """Large key numbers, side by side."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{esc(fmt_number(v, 3) if _is_number(v) else v)}</div>'
        f'<div class="k">{esc(k)}</div></div>'
        for k, v in items
    ) + "</div>"


def para(text: str, *, muted: bool = False) -> str:
    return f'<p class="muted">{esc(text)}</p>' if muted else f"<p>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def details(summary: str, body_html: str) -> str:
    return f"<details><summary>{esc(summary)}</summary>{body_html}</details>"


@dataclass
class Section:
    """One ``<section id=...>`` of the report: its id, heading and body HTML."""

    id: str
    title: str
    body: str

    def render(self) -> str:
        return f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2>{self.body}</section>'


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole HTML document: inline CSS, a table of contents, the sections."""
    toc = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'
        f'<nav class="toc">{toc}</nav><main>'
        + "\n".join(s.render() for s in sections)
        + "</main></body></html>\n"
    )
