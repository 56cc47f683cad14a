"""A small SVG writer for the deploy picture: standard library only (no plotting package).

``deploy_chart(path, ...)`` draws two panels over one time axis:

- requests per second answered OK, stacked by series (e.g. ``v1``, ``v1 via clone``, ``v2``),
  with failures per second in red on top of them;
- the number of UP servers of the backend, one step line per load balancer, with the
  capacity the deploy must keep (app hosts x instances per host) as a dashed line;

and vertical lines at each host's step marks, labelled, across both panels.
"""
import math
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 1100, 680
LEFT, RIGHT = 70, 200          # the right margin holds the legend
TOP_RATE, BOTTOM_RATE = 150, 430
TOP_UP, BOTTOM_UP = 480, 620
LABEL_STEP = 11                # px between two rotated labels, so they never overlap
FONT = "font-family='DejaVu Sans, Arial, sans-serif'"

PALETTE = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22"]
FAIL_COLOR = "#d62728"
HOST_COLORS = ["#444444", "#7b3294", "#008837", "#c2a5cf", "#a6611a", "#018571"]


def nice_ticks(low, high, count=6):
    """Round tick values covering [low, high], about ``count`` of them."""
    if high <= low:
        high = low + 1
    raw = (high - low) / float(max(1, count))
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _fmt(value):
    return ("%d" % value) if float(value).is_integer() else ("%g" % value)


def lighten(color, amount=0.5):
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    mix = [int(c + (255 - c) * amount) for c in (red, green, blue)]
    return "#%02x%02x%02x" % tuple(mix)


class Canvas:
    def __init__(self, width=WIDTH, height=HEIGHT):
        self.width, self.height = width, height
        self.parts = []

    def add(self, element):
        self.parts.append(element)

    def text(self, x, y, content, size=12, anchor="start", color="#222", rotate=None, bold=False):
        transform = " transform='rotate(%d %.1f %.1f)'" % (rotate, x, y) if rotate else ""
        weight = " font-weight='bold'" if bold else ""
        self.add("<text x='%.1f' y='%.1f' font-size='%d' text-anchor='%s' fill='%s' %s%s%s>"
                 "%s</text>" % (x, y, size, anchor, color, FONT, weight, transform,
                                escape(str(content))))

    def line(self, x1, y1, x2, y2, color="#000", width=1, dash=None, opacity=1.0):
        dashed = " stroke-dasharray='%s'" % dash if dash else ""
        self.add("<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-width='%g'"
                 " stroke-opacity='%g'%s/>" % (x1, y1, x2, y2, color, width, opacity, dashed))

    def rect(self, x, y, w, h, fill, opacity=1.0, stroke=None):
        outline = " stroke='%s'" % stroke if stroke else ""
        self.add("<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='%s'"
                 " fill-opacity='%g'%s/>"
                 % (x, y, max(0.0, w), max(0.0, h), fill, opacity, outline))

    def polyline(self, points, color, width=1.5, fill="none", opacity=1.0):
        coords = " ".join("%.1f,%.1f" % p for p in points)
        self.add("<polyline points='%s' fill='%s' fill-opacity='%g' stroke='%s' stroke-width='%g'/>"
                 % (coords, fill, opacity, color, width))

    def polygon(self, points, fill, opacity=0.85):
        coords = " ".join("%.1f,%.1f" % p for p in points)
        self.add("<polygon points='%s' fill='%s' fill-opacity='%g' stroke='none'/>"
                 % (coords, fill, opacity))

    def svg(self):
        head = ("<?xml version='1.0' encoding='UTF-8'?>\n"
                "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d'"
                " viewBox='0 0 %d %d'>\n"
                "<rect x='0' y='0' width='%d' height='%d' fill='white'/>\n"
                % (self.width, self.height, self.width, self.height, self.width, self.height))
        return head + "\n".join(self.parts) + "\n</svg>\n"


class Axis:
    """Maps data values to pixels along one dimension."""

    def __init__(self, low, high, pixel_low, pixel_high):
        self.low, self.high = low, (high if high > low else low + 1)
        self.pixel_low, self.pixel_high = pixel_low, pixel_high

    def __call__(self, value):
        share = (value - self.low) / float(self.high - self.low)
        return self.pixel_low + share * (self.pixel_high - self.pixel_low)


def _frame(canvas, x_axis, y_axis, top, bottom, y_label, y_ticks):
    canvas.rect(LEFT, top, WIDTH - LEFT - RIGHT, bottom - top, "#fafafa", stroke="#999")
    for tick in y_ticks:
        y = y_axis(tick)
        canvas.line(LEFT, y, WIDTH - RIGHT, y, "#ddd")
        canvas.text(LEFT - 6, y + 4, _fmt(tick), size=11, anchor="end")
    canvas.text(18, (top + bottom) / 2.0, y_label, size=12, anchor="middle", rotate=-90)
    for tick in nice_ticks(x_axis.low, x_axis.high, 12):
        x = x_axis(tick)
        canvas.line(x, bottom, x, bottom + 4, "#666")
        canvas.text(x, bottom + 16, _fmt(tick), size=11, anchor="middle")


def _stacked(canvas, x_axis, y_axis, bin_s, stacks, colors):
    """Stacked step areas; ``stacks`` is [(name, {bin start: value})], bottom first."""
    bins = sorted({b for _name, values in stacks for b in values})
    base = {b: 0.0 for b in bins}
    for name, values in stacks:
        upper = {b: base[b] + values.get(b, 0.0) for b in bins}
        for start in bins:
            if upper[start] <= base[start]:
                continue
            x1, x2 = x_axis(start), x_axis(start + bin_s)
            # Half a pixel wider, so anti-aliasing leaves no white seams between bins.
            canvas.rect(x1, y_axis(upper[start]), x2 - x1 + 0.5,
                        y_axis(base[start]) - y_axis(upper[start]),
                        colors[name], opacity=0.85)
        base = upper
    return base


def _legend(canvas, entries, top):
    x = WIDTH - RIGHT + 15
    y = top + 10
    for label, color, kind in entries:
        if kind == "box":
            canvas.rect(x, y - 9, 14, 10, color)
        elif kind == "dash":
            canvas.line(x, y - 4, x + 14, y - 4, color, 2, dash="4,3")
        else:
            canvas.line(x, y - 4, x + 14, y - 4, color, 2)
        canvas.text(x + 20, y, label, size=11)
        y += 16
    return y


def deploy_chart(path, title, subtitle, bin_s, rate_stacks, failures, up_lines, expected_up,
                 marks, window, x_range):
    """Write the deploy picture as SVG.

    ``rate_stacks``: [(name, {bin start s: requests/s})], drawn bottom first.
    ``failures``: {bin start s: failed requests/s}.
    ``up_lines``: [(name, [(t s, UP servers)])].
    ``expected_up``: capacity line (app hosts x instances per host), or None.
    ``marks``: [(t s, label, host)] vertical lines; the host picks the colour.
    ``window``: (start s, end s) of the deploy, shaded; ``x_range``: (low s, high s).
    """
    canvas = Canvas()
    x_axis = Axis(x_range[0], x_range[1], LEFT, WIDTH - RIGHT)
    canvas.text(LEFT, 24, title, size=16, bold=True)
    canvas.text(LEFT, 42, subtitle, size=12, color="#555")

    colors = {name: PALETTE[i % len(PALETTE)] for i, (name, _values) in enumerate(rate_stacks)}
    for name in colors:
        # "v1 via clone" gets a lighter shade of v1's colour.
        if name.endswith(" via clone") and name[:-len(" via clone")] in colors:
            colors[name] = lighten(colors[name[:-len(" via clone")]], 0.5)

    totals = {}
    for _name, values in rate_stacks:
        for start, value in values.items():
            totals[start] = totals.get(start, 0.0) + value
    for start, value in failures.items():
        totals[start] = totals.get(start, 0.0) + value
    rate_top = max(list(totals.values()) + [1.0]) * 1.1
    rate_ticks = nice_ticks(0, rate_top, 5)
    rate_axis = Axis(0, max(rate_top, rate_ticks[-1]), BOTTOM_RATE, TOP_RATE)

    up_top = max([expected_up or 0] + [c for _name, pts in up_lines for _t, c in pts] + [1]) + 1
    up_axis = Axis(0, up_top, BOTTOM_UP, TOP_UP)

    _frame(canvas, x_axis, rate_axis, TOP_RATE, BOTTOM_RATE, "requests / s (%.1f s bins)" % bin_s,
           rate_ticks)
    _frame(canvas, x_axis, up_axis, TOP_UP, BOTTOM_UP, "UP servers", range(0, int(up_top) + 1))
    for top, bottom in ((TOP_RATE, BOTTOM_RATE), (TOP_UP, BOTTOM_UP)):
        canvas.rect(x_axis(window[0]), top, x_axis(window[1]) - x_axis(window[0]), bottom - top,
                    "#fff3c4", opacity=0.35)
    canvas.text((LEFT + WIDTH - RIGHT) / 2.0, BOTTOM_UP + 34,
                "seconds since the playbook started (shaded: the deploy)", size=12, anchor="middle")

    base = _stacked(canvas, x_axis, rate_axis, bin_s, rate_stacks, colors)
    for start, value in sorted(failures.items()):
        if value > 0:
            bottom = base.get(start, 0.0)
            x1, x2 = x_axis(start), x_axis(start + bin_s)
            canvas.rect(x1, rate_axis(bottom + value), max(2.0, x2 - x1),
                        rate_axis(bottom) - rate_axis(bottom + value), FAIL_COLOR)

    up_colors = ["#333333", "#1f77b4", "#ff7f0e", "#2ca02c"]
    for i, (name, points) in enumerate(up_lines):
        steps = []
        for j, (t, count) in enumerate(points):
            if j:
                steps.append((x_axis(t), up_axis(points[j - 1][1])))
            steps.append((x_axis(t), up_axis(count)))
        if steps:
            canvas.polyline(steps, up_colors[i % len(up_colors)], 2)
    if expected_up is not None:
        # Over the UP lines: where they touch it, capacity is exactly the app's servers.
        y = up_axis(expected_up)
        canvas.line(LEFT, y, WIDTH - RIGHT, y, FAIL_COLOR, 1.5, dash="6,4")

    hosts = sorted({host for _t, _label, host in marks})
    host_colors = {h: HOST_COLORS[i % len(HOST_COLORS)] for i, h in enumerate(hosts)}
    next_free = -1e9
    for t, label, host in sorted(marks):
        x = x_axis(t)
        color = host_colors[host]
        canvas.line(x, TOP_RATE, x, BOTTOM_UP, color, 1, dash="3,3", opacity=0.8)
        # Labels are rotated; one that would overlap the previous one moves right, with a leader.
        label_x = max(x, next_free)
        next_free = label_x + LABEL_STEP
        if label_x != x:
            canvas.line(x, TOP_RATE, label_x, TOP_RATE - 6, color, 0.8)
        canvas.text(label_x + 3, TOP_RATE - 8, label, size=10, color=color, rotate=-60)

    entries = [(name, colors[name], "box") for name, _values in rate_stacks]
    entries.append(("failed", FAIL_COLOR, "box"))
    entries += [("steps of " + h, host_colors[h], "dash") for h in hosts]
    _legend(canvas, entries, TOP_RATE)
    _legend(canvas, [(name, up_colors[i % len(up_colors)], "line")
                     for i, (name, _points) in enumerate(up_lines)]
            + ([("app servers (capacity)", FAIL_COLOR, "dash")] if expected_up is not None else []),
            TOP_UP)
    with open(path, "w") as handle:
        handle.write(canvas.svg())
    return path
