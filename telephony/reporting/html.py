"""The report as one self-contained HTML file: every figure with its formula, bar charts as inline SVG (nothing
to load, prints the same to PDF). Every text that reaches the page — category, reason, site, anything a caller,
an agent or a peer wrote — goes through `escape`; nothing is inserted raw."""

from __future__ import annotations

from html import escape

from telephony.reporting.figures import Figure

BAR_WIDTH = 360
STYLE = """body{font-family:"WenQuanYi Micro Hei",sans-serif;margin:2em;max-width:60em}
code{background:#f3f3f3;padding:.1em .3em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}
section{page-break-inside:avoid;margin-bottom:1.5em}.rate{font-size:1.4em}"""


def render(title: str, subtitle: str, figures: list[Figure]) -> str:
    body = "\n".join(_figure(f) for f in figures)
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p>{escape(subtitle)}</p>\n{body}"
            "</body></html>\n")


def _figure(f: Figure) -> str:
    parts = [f'<section id="{escape(f.key)}"><h2>{escape(f.title)}</h2>',
             f'<p class="formula">公式：<code>{escape(f.formula)}</code></p>']
    if f.rate is not None:
        parts.append(f'<p class="rate">{escape(str(f.rate))}</p>')
    numeric = [(label, v) for label, v in f.rows if isinstance(v, int | float)]
    if f.chart and numeric:
        parts.append(_bars(numeric))
    if f.rows:
        parts.append("<table>" + "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>"
                                         for k, v in f.rows) + "</table>")
    if f.columns and f.table:
        head = "".join(f"<th>{escape(c)}</th>" for c in f.columns)
        parts.append(f'<table class="grid"><tr>{head}</tr>' + "".join(
            "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in f.table) + "</table>")
    if not f.rows and not f.table and f.rate is None:
        parts.append("<p>本期无数据</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _bars(rows: list[tuple[str, int | float]]) -> str:
    top = max(v for _, v in rows) or 1
    height = 22 * len(rows) + 4
    bars = []
    for i, (label, value) in enumerate(rows):
        y = 22 * i + 2
        w = max(1.0, BAR_WIDTH * value / top)
        bars.append(f'<text x="0" y="{y + 15}" font-size="13">{escape(label[:40])}</text>'
                    f'<rect x="260" y="{y}" width="{w:.1f}" height="18" fill="#3b6fb6"/>'
                    f'<text x="{265 + w:.1f}" y="{y + 15}" font-size="13">{escape(str(value))}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{300 + BAR_WIDTH + 60}" height="{height}" '
            f'role="img">{"".join(bars)}</svg>')
