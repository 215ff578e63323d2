"""The report's charts as inline SVG, drawn from ReportData by hand (no JS, no library).

Each function returns one ``<svg>`` element as text, without an ``xmlns`` attribute: in
HTML5 inline SVG needs none, and the report must not contain any URL. ``with_namespace``
adds it back for consumers that parse SVG as XML (the PDF).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date, datetime, timedelta
from html import escape

from warehouse.report.data import AlertOfDay, RegionDay, RegionHour

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
FONT = "font-family='Helvetica, Arial, sans-serif'"
RULE_COLOURS = {"heat": "#c0392b", "cold": "#2e86c1", "change": "#d68910", "silence": "#7f8c8d"}
OTHER_COLOURS = ("#8e44ad", "#16a085", "#2c3e50", "#a04000", "#1abc9c")
BAND = "#f5b7b1"
LINE = "#922b21"
AXIS = "#555"
GRID = "#ddd"


def with_namespace(svg: str) -> str:
    """The same SVG as a standalone XML document (for parsers that need the namespace)."""
    return svg.replace("<svg ", f"<svg xmlns='{SVG_NAMESPACE}' ", 1)


def _n(value: float) -> str:
    return f"{value:.1f}"


def _text(
    x: float,
    y: float,
    content: str,
    *,
    size: int = 10,
    anchor: str = "start",
    fill: str = AXIS,
    weight: str = "normal",
) -> str:
    return (
        f"<text x='{_n(x)}' y='{_n(y)}' {FONT} font-size='{size}' text-anchor='{anchor}' "
        f"fill='{fill}' font-weight='{weight}'>{escape(content)}</text>"
    )


def _line(
    x1: float,
    y1: float,
    x2: float,
    y2: float,
    *,
    stroke: str = AXIS,
    width: float = 1.0,
    dash: str | None = None,
) -> str:
    dashed = f" stroke-dasharray='{dash}'" if dash else ""
    return (
        f"<line x1='{_n(x1)}' y1='{_n(y1)}' x2='{_n(x2)}' y2='{_n(y2)}' "
        f"stroke='{stroke}' stroke-width='{width}'{dashed}/>"
    )


def _svg(width: float, height: float, label: str, body: list[str]) -> str:
    return (
        f"<svg width='{_n(width)}' height='{_n(height)}' viewBox='0 0 {_n(width)} {_n(height)}' "
        f"role='img' aria-label='{escape(label)}'><title>{escape(label)}</title>"
        + "".join(body)
        + "</svg>"
    )


def _empty(width: float, label: str, message: str) -> str:
    return _svg(width, 40, label, [_text(width / 2, 24, message, size=12, anchor="middle")])


def _nice_range(low: float, high: float, step: float = 5.0) -> tuple[float, float]:
    """Bounds rounded outwards to ``step`` (never a zero-height range)."""
    lo = math.floor((low - step / 10) / step) * step
    hi = math.ceil((high + step / 10) / step) * step
    if hi - lo < step:
        hi = lo + step
    return lo, hi


def _hour_of_day(moment: datetime, day: date) -> float:
    """Hours since the day's UTC midnight (may fall outside 0..24 for other days)."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=moment.tzinfo)
    return (moment - midnight) / timedelta(hours=1)


def _runs(hours: list[RegionHour], day: date) -> list[list[tuple[float, RegionHour]]]:
    """Consecutive hours (a gap of an hour or more starts a new run), x = hour centre."""
    runs: list[list[tuple[float, RegionHour]]] = []
    previous: float | None = None
    for hour in hours:
        x = _hour_of_day(hour.hour_start, day) + 0.5
        if previous is None or x - previous > 1.01:
            runs.append([])
        runs[-1].append((x, hour))
        previous = x
    return runs


def temperature_chart(
    regions: tuple[RegionDay, ...], hourly: tuple[RegionHour, ...], day: date
) -> str:
    """Small multiples, one per region: hourly mean line over the hourly min-max band.

    Every panel shares the same temperature scale, so regions compare at a glance.
    """
    label = "Temperature through the day per region (hourly mean, min-max band, °C, UTC)"
    names = [r.region for r in regions]
    by_region: dict[str, list[RegionHour]] = defaultdict(list)
    for hour in hourly:
        by_region[hour.region].append(hour)
        if hour.region not in names:
            names.append(hour.region)
    values = [v for h in hourly for v in (h.min_c, h.max_c, h.mean_c) if v is not None]
    if not names or not values:
        return _empty(900, label, "no hourly data for this day")
    lo, hi = _nice_range(min(values), max(values))
    columns = min(3, len(names))
    panel_w, panel_h = 300.0, 170.0
    left, right, top, bottom = 36.0, 12.0, 22.0, 22.0
    plot_w, plot_h = panel_w - left - right, panel_h - top - bottom
    rows = math.ceil(len(names) / columns)
    body: list[str] = []
    for index, name in enumerate(names):
        ox = (index % columns) * panel_w
        oy = (index // columns) * panel_h

        def px(hour: float, ox: float = ox) -> float:
            return ox + left + plot_w * hour / 24.0

        def py(value: float, oy: float = oy) -> float:
            return oy + top + plot_h * (hi - value) / (hi - lo)

        body.append(_text(ox + left, oy + 13, name, size=11, fill="#222", weight="bold"))
        for value in (lo, (lo + hi) / 2, hi):
            body.append(_line(px(0), py(value), px(24), py(value), stroke=GRID))
            body.append(_text(ox + left - 4, py(value) + 3, f"{value:g}", size=8, anchor="end"))
        for hour in (0, 6, 12, 18, 24):
            body.append(_text(px(hour), oy + panel_h - 6, f"{hour:02d}h", size=8, anchor="middle"))
        body.append(_line(px(0), py(lo), px(24), py(lo)))
        points = sorted(by_region.get(name, []), key=lambda h: h.hour_start)
        if not points:
            body.append(_text(px(12), py((lo + hi) / 2), "no reading", size=10, anchor="middle"))
            continue
        for run in _runs(points, day):
            band = [
                (x, h.min_c, h.max_c) for x, h in run if h.min_c is not None and h.max_c is not None
            ]
            if len(band) == 1:
                x, low, high = band[0]
                body.append(
                    f"<rect x='{_n(px(x - 0.3))}' y='{_n(py(high))}' "
                    f"width='{_n(px(0.6) - px(0))}' "
                    f"height='{_n(max(py(low) - py(high), 0.5))}' fill='{BAND}'/>"
                )
            elif band:
                outline = [(x, high) for x, _, high in band] + [
                    (x, low) for x, low, _ in reversed(band)
                ]
                points_text = " ".join(f"{_n(px(x))},{_n(py(v))}" for x, v in outline)
                body.append(f"<polygon points='{points_text}' fill='{BAND}' stroke='none'/>")
            means = [(x, h.mean_c) for x, h in run if h.mean_c is not None]
            if len(means) == 1:
                x, mean = means[0]
                body.append(f"<circle cx='{_n(px(x))}' cy='{_n(py(mean))}' r='2.5' fill='{LINE}'/>")
            elif means:
                line = " ".join(f"{_n(px(x))},{_n(py(mean))}" for x, mean in means)
                body.append(
                    f"<polyline points='{line}' fill='none' stroke='{LINE}' stroke-width='1.5'/>"
                )
    return _svg(columns * panel_w, rows * panel_h, label, body)


def anomaly_chart(regions: tuple[RegionDay, ...]) -> str:
    """Horizontal bars of each region's anomaly against its baseline (warm red, cold blue)."""
    label = "Anomaly of the daily mean against the baseline, by region (°C)"
    shown = [r for r in regions if not r.missing]
    if not shown:
        return _empty(900, label, "no region reported this day")
    width, row_h, top, name_w, value_w = 900.0, 24.0, 10.0, 150.0, 70.0
    height = top * 2 + row_h * len(shown) + 14
    scale = max([abs(r.anomaly_c) for r in shown if r.anomaly_c is not None] + [1.0])
    half = (width - name_w - 2 * value_w) / 2
    zero = name_w + value_w + half
    body = [_line(zero, top - 4, zero, top + row_h * len(shown) + 2)]
    for index, region in enumerate(shown):
        y = top + index * row_h
        body.append(_text(name_w - 6, y + row_h * 0.65, region.region, size=11, anchor="end"))
        if region.anomaly_c is None:
            body.append(_text(zero + 6, y + row_h * 0.65, "no baseline", size=10))
            continue
        length = half * abs(region.anomaly_c) / scale
        x = zero if region.anomaly_c >= 0 else zero - length
        colour = RULE_COLOURS["heat"] if region.anomaly_c >= 0 else RULE_COLOURS["cold"]
        body.append(
            f"<rect x='{_n(x)}' y='{_n(y + 4)}' width='{_n(max(length, 0.5))}' "
            f"height='{_n(row_h - 8)}' fill='{colour}'/>"
        )
        text_x = zero + length + 4 if region.anomaly_c >= 0 else zero - length - 4
        anchor = "start" if region.anomaly_c >= 0 else "end"
        body.append(
            _text(text_x, y + row_h * 0.65, f"{region.anomaly_c:+.2f} °C", size=10, anchor=anchor)
        )
    body.append(
        _text(
            zero, height - 4, "0 = baseline (climatology or trailing mean)", size=9, anchor="middle"
        )
    )
    return _svg(width, height, label, body)


def rule_colour(rule: str, rules: list[str]) -> str:
    """A stable colour per rule (known rules keep theirs)."""
    if rule in RULE_COLOURS:
        return RULE_COLOURS[rule]
    others = [r for r in rules if r not in RULE_COLOURS]
    return OTHER_COLOURS[others.index(rule) % len(OTHER_COLOURS)] if rule in others else AXIS


def alerts_chart(alerts: tuple[AlertOfDay, ...], day: date) -> str:
    """Alerts on a 24-hour timeline, a row per region: fired (dot) until resolved (bar end)."""
    label = "Alerts on a timeline (UTC): dot when the window started, bar until resolved"
    if not alerts:
        return _empty(900, label, "no alert fired this day")
    regions = sorted({a.region for a in alerts})
    rules = sorted({a.rule for a in alerts})
    lanes = {r: [a for a in alerts if a.region == r] for r in regions}
    width, name_w, right, top, lane_h, pad = 900.0, 130.0, 20.0, 24.0, 10.0, 7.0
    plot_w = width - name_w - right
    heights = {r: 2 * pad + lane_h * max(len(lanes[r]), 1) for r in regions}
    bottom = top + sum(heights.values())
    height = bottom + 34

    def px(hour: float) -> float:
        return name_w + plot_w * min(max(hour, 0.0), 24.0) / 24.0

    body: list[str] = []
    legend_x = name_w
    for rule in rules:
        colour = rule_colour(rule, rules)
        body.append(f"<circle cx='{_n(legend_x + 5)}' cy='10' r='4' fill='{colour}'/>")
        body.append(_text(legend_x + 13, 14, rule, size=10))
        legend_x += 20 + 7 * len(rule) + 10
    for hour in (0, 3, 6, 9, 12, 15, 18, 21, 24):
        body.append(_line(px(hour), top, px(hour), bottom, stroke=GRID))
        body.append(_text(px(hour), bottom + 14, f"{hour:02d}:00", size=9, anchor="middle"))
    row_top = top
    for region in regions:
        middle = row_top + heights[region] / 2
        body.append(_text(name_w - 6, middle + 4, region, size=11, anchor="end"))
        body.append(
            _line(px(0), row_top + heights[region], px(24), row_top + heights[region], stroke=GRID)
        )
        for lane, alert in enumerate(lanes[region]):
            y = row_top + pad + lane_h * (lane + 0.5)
            colour = rule_colour(alert.rule, rules)
            start = _hour_of_day(alert.window_start, day)
            if alert.resolved_at is not None:
                end, dash = _hour_of_day(alert.resolved_at, day), None
            else:
                end, dash = 24.0, "3,3"
            body.append(_line(px(start), y, px(end), y, stroke=colour, width=3.0, dash=dash))
            body.append(
                f"<circle cx='{_n(px(start))}' cy='{_n(y)}' r='4' fill='{colour}'>"
                f"<title>{escape(alert.rule)} {escape(alert.region)} "
                f"{alert.window_start:%H:%M}</title></circle>"
            )
        row_top += heights[region]
    body.append(
        _text(
            width / 2,
            height - 6,
            "dashed: not resolved by the end of the day",
            size=9,
            anchor="middle",
        )
    )
    return _svg(width, height, label, body)
