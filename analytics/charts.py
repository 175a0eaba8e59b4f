"""Charts of the stored reports (analytics/reports.py): answers per day as bars, accuracy as a
line on a second axis, drawn by matplotlib's Agg renderer into a 600×300 px PNG that an email
attaches inline (Content-ID) and the admin shows as a data: URI. docs/analytics.md, "Reports".

Speed: building a figure (axes, twin axes, bars, line, fonts) costs ten times more than
drawing one, and drawing text costs most of the rest; reports are drawn by the thousand. Each
thread keeps one figure per number of days, and each figure keeps a background with everything
that does not change while the day labels and title stay the same (they do across a week's
reports): a chart restores it and draws only its bars, line and left axis on it (blitting).
Every limit is set explicitly, so what a kept figure draws depends only on the arguments (a test
checks it against a new figure). No pyplot: its global state is not for worker threads.

Size: the drawing is reduced to a 64-colour palette (Pillow's fast octree) before it is
encoded: a third of the bytes of a full-colour PNG and faster to encode, with no visible change
(flat colours on white; only the anti-aliased edges share nearby colours). The PNG carries no
metadata (no software version, no date), so the same input gives the same bytes.
"""

from __future__ import annotations

import datetime
import io
import math
import threading

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, PercentFormatter
from PIL import Image

WIDTH, HEIGHT = 600, 300
_DPI = 100
_PALETTE_COLOURS = 64
_BAR_COLOUR = "#9ecae1"
_BAR_LABEL_COLOUR = "#3182bd"
_LINE_COLOUR = "#d95f02"
_TEXT_COLOUR = "#333333"
# Day names without the C library's locale (strftime's %a follows it).
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Figures kept per thread (one per number of days drawn).
_TEMPLATES_KEPT = 4

_local = threading.local()


def activity_chart_png(days: list[datetime.date], attempts: list[int],
                       accuracy: list[float | None], *, title: str) -> bytes:
    """A 600×300 px PNG: bars for the answers of each day (left axis), a line for the accuracy
    of each day in percent, 0–100 (right axis; None for a day without answers, which breaks
    the line). Deterministic: the same arguments give the same bytes."""
    n = len(days)
    if n == 0 or len(attempts) != n or len(accuracy) != n:
        raise ValueError("days, attempts and accuracy need the same, non-zero length.")
    if any(count < 0 for count in attempts):
        raise ValueError("attempts cannot be negative.")
    if any(value is not None and not 0 <= value <= 100 for value in accuracy):
        raise ValueError("accuracy is a percentage, 0–100 (or None).")
    return _template(n).draw(days, attempts, accuracy, title)


def day_label(day: datetime.date, *, short: bool = False) -> str:
    """How a day reads under its bar: "Mon\\n29 Dec", or "29\\nDec" when there are many."""
    if short:
        return f"{day.day}\n{_MONTHS[day.month - 1]}"
    return f"{_WEEKDAYS[day.weekday()]}\n{day.day} {_MONTHS[day.month - 1]}"


def _count_label(value: float, _position) -> str:
    """A tick label of at most five characters: 950, 2000, 15k, 150k."""
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _template(n: int) -> _ChartTemplate:
    templates = getattr(_local, "templates", None)
    if templates is None:
        templates = _local.templates = {}
    template = templates.pop(n, None) or _ChartTemplate(n)
    templates[n] = template  # most recently used last
    while len(templates) > _TEMPLATES_KEPT:
        del templates[next(iter(templates))]
    return template


def _forget_templates() -> None:
    """Drop this thread's figures (tests compare a reused figure with a new one)."""
    _local.templates = {}


class _ChartTemplate:
    """One figure for charts of n days, redrawn with new values each time.

    What changes from chart to chart (the bars, the line, the left axis with its grid, the
    "no answers" note) is marked animated, so the full draw leaves it out: the full draw makes a
    background of everything else (frame, right axis, day labels, title), kept while the day
    labels and title stay the same, which they do across a week's reports. Each chart restores
    that background and draws only the changing parts on it (matplotlib's blitting), in the
    order a full draw would: the left axis and grid, the bars, the bottom spine again, the
    line."""

    def __init__(self, n: int):
        self.n = n
        self.short_labels = n > 8
        figure = Figure(figsize=(WIDTH / _DPI, HEIGHT / _DPI), dpi=_DPI, facecolor="white")
        self.figure = figure
        self.canvas = FigureCanvasAgg(figure)
        figure.subplots_adjust(left=0.11, right=0.88, top=0.87, bottom=0.19)
        bars = figure.add_subplot()
        bars.set_xlim(-0.6, n - 0.4)
        bars.set_xticks(range(n))
        bars.tick_params(axis="x", labelsize=8 if self.short_labels else 9, length=0,
                         labelcolor=_TEXT_COLOUR)
        bars.tick_params(axis="y", labelsize=9, labelcolor=_BAR_LABEL_COLOUR)
        bars.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True, min_n_ticks=2))
        bars.yaxis.set_major_formatter(FuncFormatter(_count_label))
        bars.yaxis.set_animated(True)
        # The axis title as static text: the animated axis would redraw it every time.
        bars.text(-0.095, 0.5, "Answers", rotation=90, fontsize=9, color=_BAR_LABEL_COLOUR,
                  ha="center", va="center", transform=bars.transAxes)
        bars.grid(axis="y", color="#e5e5e5", linewidth=0.8)
        for side in ("top", "right"):
            bars.spines[side].set_visible(False)
        self.bars = bars.bar(range(n), [0] * n, width=0.7, color=_BAR_COLOUR, zorder=2)
        for bar in self.bars:
            bar.set_animated(True)
        line_axes = bars.twinx()
        line_axes.set_ylim(0, 105)
        line_axes.yaxis.set_major_locator(FixedLocator([0, 25, 50, 75, 100]))
        line_axes.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        line_axes.tick_params(axis="y", labelsize=9, labelcolor=_LINE_COLOUR)
        line_axes.set_ylabel("Accuracy", fontsize=9, color=_LINE_COLOUR)
        line_axes.yaxis.set_label_coords(1.1, 0.5)
        for side in ("top", "left"):
            line_axes.spines[side].set_visible(False)
        (self.line,) = line_axes.plot(range(n), [math.nan] * n, color=_LINE_COLOUR,
                                      linewidth=2, marker="o", markersize=5, zorder=3,
                                      animated=True)
        self.bar_axes = bars
        self.title = bars.set_title("", fontsize=11, color=_TEXT_COLOUR, pad=8)
        self.empty_note = bars.text(0.5, 0.5, "No answers in this period", fontsize=10,
                                    color="#888888", ha="center", va="center",
                                    transform=bars.transAxes, animated=True)
        self.background = None
        self.background_key = None

    def draw(self, days, attempts, accuracy, title) -> bytes:
        labels = [day_label(day, short=self.short_labels) for day in days]
        key = (tuple(labels), title)
        if key != self.background_key:
            self.bar_axes.set_xticklabels(labels)
            self.title.set_text(title)
            self.canvas.draw()
            self.background = self.canvas.copy_from_bbox(self.figure.bbox)
            self.background_key = key
        else:
            self.canvas.restore_region(self.background)
        for bar, count in zip(self.bars, attempts, strict=True):
            bar.set_height(count)
        highest = max(attempts)
        self.bar_axes.set_ylim(0, max(highest * 1.15, 4))
        self.line.set_ydata([math.nan if value is None else value for value in accuracy])
        renderer = self.canvas.get_renderer()
        self.bar_axes.yaxis.draw(renderer)
        for bar in self.bars:
            bar.draw(renderer)
        self.bar_axes.spines["bottom"].draw(renderer)
        self.line.draw(renderer)
        if highest == 0:
            self.empty_note.draw(renderer)
        image = Image.frombuffer("RGBA", self.canvas.get_width_height(),
                                 self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        palette = image.convert("RGB").quantize(_PALETTE_COLOURS,
                                                method=Image.Quantize.FASTOCTREE)
        out = io.BytesIO()
        palette.save(out, format="PNG", optimize=False)
        return out.getvalue()
