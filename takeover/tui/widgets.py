"""Widgets of the operator's terminal: mini-map, mode banner, charts (the camera: camera.py).

They draw what they are given (`show(...)`), never reach into the control core themselves.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from takeover.types import Command, FieldState, FieldStatus, HelpReason, HelpStatus, Mode, Pose2D

# --- braille canvas ---------------------------------------------------------------------

_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))


class BrailleCanvas:
    """Dots on a (width*2, height*4) grid; each layer has a colour, later layers win a cell."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = max(1, width), max(1, height)
        self.bits = np.zeros((self.height, self.width), dtype=np.uint8)
        self.colour = np.zeros((self.height, self.width), dtype=np.int16)
        self.styles: list[Style] = [Style()]

    def layer(self, style: Style) -> int:
        self.styles.append(style)
        return len(self.styles) - 1

    def dots(self, px: npt.NDArray[np.float64], py: npt.NDArray[np.float64], layer: int) -> None:
        """Dots at pixel coordinates (x right, y down); those off the canvas are dropped."""
        xi, yi = np.floor(px).astype(np.intp), np.floor(py).astype(np.intp)
        ok = (xi >= 0) & (xi < self.width * 2) & (yi >= 0) & (yi < self.height * 4)
        xi, yi = xi[ok], yi[ok]
        if xi.size == 0:
            return
        cx, cy = xi // 2, yi // 4
        table = np.array(_BRAILLE_BITS, dtype=np.uint8)
        np.bitwise_or.at(self.bits, (cy, cx), table[yi % 4, xi % 2])
        self.colour[cy, cx] = layer

    def line(self, x0: float, y0: float, x1: float, y1: float, layer: int) -> None:
        n = max(2, int(max(abs(x1 - x0), abs(y1 - y0))) + 1)
        t = np.linspace(0.0, 1.0, n)
        self.dots(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, layer)

    def strips(self) -> list[Strip]:
        out = []
        for row in range(self.height):
            segments = []
            for col in range(self.width):
                b = int(self.bits[row, col])
                if b:
                    segments.append(Segment(chr(0x2800 + b), self.styles[int(self.colour[row, col])]))
                else:
                    segments.append(Segment(" "))
            out.append(Strip(Segment.simplify(segments), self.width))
        return out


def rollout(pose: Pose2D, commands: Sequence[Command], dt_s: float) -> list[tuple[float, float]]:
    """Positions reached by executing `commands` from `pose` (unicycle model)."""
    x, y, th = pose.x_m, pose.y_m, pose.yaw_rad
    points = [(x, y)]
    for c in commands:
        th += c.w_radps * dt_s
        x += c.v_mps * math.cos(th) * dt_s
        y += c.v_mps * math.sin(th) * dt_s
        points.append((x, y))
    return points


#: How the protective field's state is drawn (mini-map arc, banner line).
FIELD_STYLE = {FieldState.CLEAR: "green", FieldState.WARNING: "yellow",
               FieldState.LIMITED: "dark_orange", FieldState.STOPPED: "red",
               FieldState.BLIND: "red", FieldState.CORRIDOR: "cyan"}
FIELD_LABEL = {FieldState.WARNING: "FIELD WARNING", FieldState.LIMITED: "FIELD: SLOWED",
               FieldState.STOPPED: "PROTECTIVE STOP", FieldState.BLIND: "FIELD BLIND: STOPPED",
               FieldState.CORRIDOR: "DOCKING CORRIDOR"}


def field_path(pose: Pose2D, command: Command, clearance_m: float, steps: int = 24
               ) -> list[tuple[float, float]]:
    """Points along the arc of `command` from `pose` for `clearance_m` metres: the free path
    the protective field found (nothing when the command does not travel)."""
    if command.v_mps == 0.0 or not math.isfinite(clearance_m) or clearance_m <= 0.0:
        return []
    ds = clearance_m / steps
    k = command.w_radps / command.v_mps
    sign = 1.0 if command.v_mps > 0 else -1.0
    x, y, th = pose.x_m, pose.y_m, pose.yaw_rad
    points = [(x, y)]
    for _ in range(steps):
        th += k * ds * sign
        x += sign * ds * math.cos(th)
        y += sign * ds * math.sin(th)
        points.append((x, y))
    return points


class MiniMap(Widget):
    """Top-down view centred on the robot, north up: trail, LiDAR points, the policy's plan,
    the robot, (simulator) the dock, and the protective field: the free path it found along
    the command, and its ring (footprint plus protective distance) in the field's colour."""

    DEFAULT_CSS = """
    MiniMap { height: 1fr; width: 1fr; }
    """

    def __init__(self, *, span_m: float = 5.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.span_m = span_m
        self._strips: list[Strip] = []
        self._data: tuple[object, ...] | None = None

    def show(self, pose: Pose2D | None, trail: Sequence[tuple[float, float]],
             scan_m: npt.NDArray[np.float32] | None, plan: Sequence[tuple[float, float]],
             dock: Pose2D | None, field: FieldStatus | None = None,
             field_ring_m: float = 0.32, free_path: Sequence[tuple[float, float]] = ()) -> None:
        """field: the protective field's verdict; field_ring_m: footprint radius plus the
        protective distance; free_path: `field_path` of the command sent."""
        self._data = (pose, trail, scan_m, plan, dock, field, field_ring_m, free_path)
        self._strips = []
        self.refresh()

    def _draw(self) -> list[Strip]:
        width, height = self.size.width, self.size.height
        canvas = BrailleCanvas(width, height)
        if self._data is None or width < 4 or height < 2:
            return canvas.strips()
        pose, trail, scan, plan, dock, field, ring_m, free_path = self._data
        assert pose is None or isinstance(pose, Pose2D)
        if pose is None:
            return canvas.strips()
        px_w, px_h = canvas.width * 2, canvas.height * 4
        # A braille dot is about as wide as it is tall on most fonts (2x4 dots in a 1x2 cell).
        m_per_px = self.span_m / min(px_w, px_h)

        def to_px(xy: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
            return (px_w / 2 + (xy[:, 0] - pose.x_m) / m_per_px,
                    px_h / 2 - (xy[:, 1] - pose.y_m) / m_per_px)

        scan_layer = canvas.layer(Style(color="grey50"))
        trail_layer = canvas.layer(Style(color="dodger_blue1"))
        dock_layer = canvas.layer(Style(color="magenta", bold=True))
        plan_layer = canvas.layer(Style(color="yellow", bold=True))
        robot_layer = canvas.layer(Style(color="bright_green", bold=True))
        if isinstance(scan, np.ndarray) and scan.size:
            angles = pose.yaw_rad + np.linspace(0.0, 2 * math.pi, scan.size, endpoint=False)
            ok = np.isfinite(scan)
            r = scan[ok].astype(np.float64)
            pts = np.stack([pose.x_m + r * np.cos(angles[ok]), pose.y_m + r * np.sin(angles[ok])], 1)
            canvas.dots(*to_px(pts), scan_layer)
        if trail:
            canvas.dots(*to_px(np.asarray(trail, dtype=np.float64)), trail_layer)
        if isinstance(dock, Pose2D):
            d = np.array([[dock.x_m, dock.y_m]])
            dx, dy = to_px(d)
            hx = dx[0] + 3 * math.cos(dock.yaw_rad)
            hy = dy[0] - 3 * math.sin(dock.yaw_rad)
            canvas.line(dx[0], dy[0], hx, hy, dock_layer)
        if isinstance(field, FieldStatus) and field.state in FIELD_STYLE:
            style = Style(color=FIELD_STYLE[field.state], bold=field.acted)
            field_layer = canvas.layer(style)
            if free_path:
                path = np.asarray(free_path, dtype=np.float64)
                xs, ys = to_px(path)
                for i in range(len(xs) - 1):
                    canvas.line(xs[i], ys[i], xs[i + 1], ys[i + 1], field_layer)
            if field.state is not FieldState.CLEAR and isinstance(ring_m, float):
                a = np.linspace(0.0, 2 * math.pi, 48, endpoint=False)
                ring = np.stack([pose.x_m + ring_m * np.cos(a), pose.y_m + ring_m * np.sin(a)], 1)
                canvas.dots(*to_px(ring), field_layer)
        if plan:
            p = np.asarray(plan, dtype=np.float64)
            xs, ys = to_px(p)
            for i in range(len(xs) - 1):
                canvas.line(xs[i], ys[i], xs[i + 1], ys[i + 1], plan_layer)
        cx, cy = px_w / 2, px_h / 2
        canvas.line(cx, cy, cx + 4 * math.cos(pose.yaw_rad), cy - 4 * math.sin(pose.yaw_rad),
                    robot_layer)
        canvas.dots(np.array([cx - 1, cx, cx + 1, cx]), np.array([cy, cy - 1, cy, cy + 1]), robot_layer)
        return canvas.strips()

    def render_line(self, y: int) -> Strip:
        if len(self._strips) != self.size.height:
            self._strips = self._draw()
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width)


# --- banner, charts ---------------------------------------------------------------------

MODE_LABEL = {Mode.IDLE: "IDLE", Mode.MANUAL: "MANUAL", Mode.AUTO: "AUTO",
              Mode.TAKEOVER: "TAKEOVER", Mode.ESTOP: "E-STOP", Mode.LINK_LOST: "LINK LOST",
              Mode.RESET: "RESET"}


#: Banner words for a reason whose name alone does not say where to look.
HELP_WORDS = {HelpReason.MISALIGNED: "misaligned at the dock"}


def help_line(help: HelpStatus) -> str:
    """What the banner says while the robot asks for help: why, and the two answers.
    A novelty request names its score against the threshold in force."""
    why = "help" if help.reason is None else HELP_WORDS.get(help.reason,
                                                           help.reason.value.replace("_", " "))
    if math.isfinite(help.score) and math.isfinite(help.threshold):
        if help.reason is HelpReason.NOVELTY:
            why = f"novelty {help.score:.3g} > {help.threshold:.3g}"
        else:
            why += f" (novelty {help.score:.3g}, threshold {help.threshold:.3g})"
    return f"robot asks for help: {why} — take over (sticks) or hand back (h)"


class ModeBanner(Static):
    """The mode, large and in its colour, with the reason underneath."""

    def show(self, mode: Mode | None, reason: str, extra: str = "", alarm: str = "",
             field: FieldStatus | None = None, help: HelpStatus | None = None,
             robot: str = "") -> None:
        """field: the protective field's verdict; when it warns or acts, a line says so in its
        colour (a protective stop in red). help: the help monitor's status; while the robot
        asks, the banner turns to the asking colour and says why in place of the reason.
        robot: the robot's name when there are several (before the mode: whose mode it is)."""
        asking = help is not None and help.requested and not alarm
        for m in Mode:
            self.set_class(m is mode, f"mode-{m.value.lower()}")
        self.set_class(bool(alarm), "alarm")
        self.set_class(asking, "asking")
        label = "CONNECTING" if mode is None else MODE_LABEL[mode]
        text = Text(justify="center")
        if robot:
            text.append(f"{robot}  ·  ", style="bold")
        text.append(" ".join(label) + "\n", style="bold")
        if asking:
            assert help is not None
            text.append(help_line(help), style="bold")
        else:
            text.append(alarm or reason or " ", style="bold" if alarm else "")
        if field is not None and field.state in FIELD_LABEL:
            clear = (f" · {field.clearance_m:.2f} m clear" if math.isfinite(field.clearance_m)
                     else "")
            text.append(f"\n {FIELD_LABEL[field.state]}{clear} ",
                        style=f"bold white on {FIELD_STYLE[field.state]}" if field.acted
                        else f"bold {FIELD_STYLE[field.state]}")
        if extra:
            text.append(f"\n{extra}", style="italic")
        self.update(text)


def bar(value: float, limit: float, width: int = 16) -> str:
    """A centred bar for a signed value in [-limit, limit]."""
    half = width // 2
    if limit <= 0 or not math.isfinite(value):
        return "·" * width
    n = max(-half, min(half, round(value / limit * half)))
    cells = ["·"] * width
    if n > 0:
        for i in range(half, half + n):
            cells[i] = "█"
    elif n < 0:
        for i in range(half + n, half):
            cells[i] = "█"
    cells[half] = "│" if n == 0 else cells[half]
    return "".join(cells)


def line_chart(series: Sequence[Sequence[float | None]], width: int, height: int,
               styles: Sequence[str]) -> Text:
    """Braille line chart of a few series sharing one y axis (None gaps skipped)."""
    values = [v for s in series for v in s if v is not None and math.isfinite(v)]
    canvas = BrailleCanvas(width, height)
    if not values:
        return Text("(no data yet)", style="dim")
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        hi = lo + 1.0
    px_w, px_h = canvas.width * 2 - 1, canvas.height * 4 - 1
    for s, style in zip(series, styles, strict=False):
        layer = canvas.layer(Style.parse(style))
        pts = [(i, v) for i, v in enumerate(s) if v is not None and math.isfinite(v)]
        n = max(2, len(s))
        xy = [(i / (n - 1) * px_w, px_h - (v - lo) / (hi - lo) * px_h) for i, v in pts]
        for (x0, y0), (x1, y1) in itertools.pairwise(xy):
            canvas.line(x0, y0, x1, y1, layer)
        if len(xy) == 1:
            canvas.dots(np.array([xy[0][0]]), np.array([xy[0][1]]), layer)
    text = Text()
    for i, strip in enumerate(canvas.strips()):
        for seg in strip:
            text.append(seg.text, seg.style)
        label = f" {hi:.4g}" if i == 0 else (f" {lo:.4g}" if i == canvas.height - 1 else "")
        text.append(label + ("\n" if i < canvas.height - 1 else ""), style="dim")
    return text


def bar_chart(rows: Sequence[tuple[str, float | None]], width: int = 30, unit: str = "") -> Text:
    """Horizontal bars, one per labelled value."""
    top = max((v for _, v in rows if v is not None), default=0.0)
    text = Text()
    for i, (label, value) in enumerate(rows):
        text.append(f"{label} ", style="bold")
        if value is None:
            text.append("-", style="dim")
        else:
            n = 0 if top <= 0 else round(value / top * width)
            text.append("█" * n, style="orange1")
            text.append(f" {value:.2f}{unit}")
        if i < len(rows) - 1:
            text.append("\n")
    return text
