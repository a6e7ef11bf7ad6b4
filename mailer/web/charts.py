"""A small inline SVG bar chart, built as text (no JavaScript, no external library)."""

from __future__ import annotations

from datetime import datetime

from markupsafe import Markup, escape

from mailer.store.queries import Bucket

WIDTH = 720
HEIGHT = 200
_LEFT, _BOTTOM, _TOP = 40, 28, 10


def _nice_max(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^n at or above ``value``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= value:
                return factor * magnitude
        magnitude *= 10


def _label(moment: datetime, unit: str) -> str:
    return moment.strftime("%d %b %H:00") if unit == "hour" else moment.strftime("%d %b")


def bar_chart(buckets: list[Bucket], unit: str, *, title: str) -> Markup:
    """An accessible SVG of ``buckets`` (UTC hours or days): one bar each, a y axis, up to 6 x labels.

    Each bar has a ``<title>`` tooltip with its time and count. Empty input gives an empty string.
    """
    if not buckets:
        return Markup("")
    top = _nice_max(max(bucket.count for bucket in buckets) or 1)
    plot_w, plot_h = WIDTH - _LEFT - 8, HEIGHT - _BOTTOM - _TOP
    slot = plot_w / len(buckets)
    bar_w = max(slot * 0.8, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = _TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{int(top * fraction)}</text>'
        )
    every = max(1, len(buckets) // 6)
    for index, bucket in enumerate(buckets):
        height = plot_h * bucket.count / top
        x = _LEFT + index * slot + (slot - bar_w) / 2
        y = _TOP + plot_h - height
        label = escape(f"{_label(bucket.start, unit)} UTC: {bucket.count} sent")
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{height:.1f}" class="bar">'
            f"<title>{label}</title></rect>"
        )
        if index % every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">'
                f"{escape(_label(bucket.start, unit))}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


__all__ = ["bar_chart"]
