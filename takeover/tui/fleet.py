"""The fleet screen (several robots): a row per robot, ordered by need.

Robots asking for help come first, in Fleet-DAgger's C.U.R. order (a constraint before
uncertainty before risk; control/help_queue.py), then robots that are stopped (e-stopped, or
lost: their core or link is gone), then the rest. Enter focuses the selected robot (the gamepad
and the driving keys move it alone) and opens its drive screen; `e` e-stops the selected robot
alone (latched, as space does for every robot); `a` acknowledges its e-stop (it lands in IDLE).
The rows come from `Fleet.rows()` (session/fleet.py), handed over by the app each refresh.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from takeover.control.arbiter import OperatorEvent
from takeover.session.fleet import RobotRow
from takeover.tui.widgets import MODE_LABEL
from takeover.types import Mode

if TYPE_CHECKING:
    from takeover.tui.app import TakeoverApp

COLUMNS = ("robot", "mode", "attempt", "docked", "help", "link", "novelty")
MODE_STYLE = {Mode.IDLE: "", Mode.MANUAL: "bold blue", Mode.AUTO: "bold green",
              Mode.TAKEOVER: "bold dark_orange", Mode.ESTOP: "bold red",
              Mode.LINK_LOST: "bold magenta", Mode.RESET: "bold cyan"}
ASKING_STYLE = "bold black on #e0b000"  # the drive screen's asking banner colour (app.tcss)


def ask_line(row: RobotRow) -> str:
    """"robot2 asks: blocked (waiting 4 s)": who asks for help and why."""
    help_status = row.help
    why = "help" if help_status is None or help_status.reason is None else \
        help_status.reason.value.replace("_", " ")
    if row.novelty is not None and help_status is not None and \
            help_status.reason is not None and help_status.reason.value == "novelty":
        why += f" {row.novelty:.3g}"
    wait = f" (waiting {row.waiting_s:.0f} s)" if row.waiting_s is not None else ""
    return f"{row.name} asks: {why}{wait}"


def _link(row: RobotRow) -> Text:
    if row.lost:
        return Text("LOST", style="bold magenta")
    if not row.opened:
        return Text("connecting", style="dim")
    h = row.link
    age = "" if not math.isfinite(h.last_rx_age_ms) else f" {h.last_rx_age_ms:.0f} ms"
    return Text(f"up{age}", style="green")


def cells(row: RobotRow) -> list[Text]:
    """The table's cells for one robot (the asking colour across the row while it asks)."""
    asking = row.help is not None
    name = Text(("▶ " if row.focused else "  ") + row.name, style="bold" if row.focused else "")
    mode = Text(MODE_LABEL.get(row.mode, row.mode.value), style=MODE_STYLE.get(row.mode, ""))
    if row.lost and row.mode is not Mode.LINK_LOST:
        mode = Text("LOST", style="bold magenta")
    help_text = Text(ask_line(row).split(": ", 1)[1] if asking else "-",
                     style="bold" if asking else "dim")
    novelty = Text("-" if row.novelty is None else f"{row.novelty:.3g}")
    out = [name, mode, Text(str(row.attempt)), Text(str(row.successes)), help_text, _link(row),
           novelty]
    if asking:
        for cell in out:
            cell.stylize(ASKING_STYLE)
    return out


class FleetScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "drive", "Focus + drive", key_display="⏎"),
        Binding("e", "stop_selected", "E-stop this robot"),
        Binding("a", "acknowledge", "Ack its e-stop"),
    ]

    def __init__(self) -> None:
        self.ready = False
        super().__init__(id="fleet")
        self.shown: list[str] = []  # the robots in the table's order
        self._drawn: list[list[tuple[object, ...]]] = []

    @property
    def tapp(self) -> TakeoverApp:
        from takeover.tui.app import TakeoverApp

        assert isinstance(self.app, TakeoverApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static(id="fleet-banner")
        yield DataTable(id="fleet-table", cursor_type="row", zebra_stripes=False)
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.ready = True
        self._banner("")
        if self.tapp.rows:
            self.show(self.tapp.rows, self.tapp.fleet_alert)

    # --- telemetry -----------------------------------------------------------------------

    def show(self, rows: list[RobotRow], alert: str) -> None:
        """Redraw the rows (ordered by need), keeping the cursor on the robot it was on."""
        drawn: list[list[tuple[object, ...]]] = [
            [(c.plain, str(c.style), tuple(c.spans)) for c in cells(r)] for r in rows]
        if drawn == self._drawn:  # unchanged: rebuilding the table costs the UI thread
            self._banner(alert, rows)
            return
        self._drawn = drawn
        table = self.query_one(DataTable)
        selected = self.selected()
        table.clear()
        for row in rows:
            table.add_row(*cells(row), key=row.name)
        self.shown = [r.name for r in rows]
        if selected in self.shown:
            table.move_cursor(row=self.shown.index(selected), animate=False)
        self._banner(alert, rows)

    def _banner(self, alert: str, rows: list[RobotRow] | None = None) -> None:
        banner = self.query_one("#fleet-banner", Static)
        banner.set_class(bool(alert), "asking")
        t = Text(justify="center")
        if alert:
            asking = [r for r in rows or [] if r.help is not None]
            t.append(alert, style="bold")
            if len(asking) > 1:
                t.append(f"  (+{len(asking) - 1} more asking)", style="bold")
            t.append("\nenter: focus it and take over (sticks, t) or hand back (h)",
                     style="italic")
        else:
            n = len(rows or [])
            t.append(f"F L E E T   {n} robots · focused: {self.tapp.focused_robot}\n",
                     style="bold")
            t.append("enter: focus + drive · e: e-stop the selected robot alone · "
                     "space: e-stop every robot", style="italic")
        banner.update(t)

    def selected(self) -> str | None:
        """The robot under the cursor, or None (an empty table)."""
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
        return None if key.value is None else str(key.value)

    def say(self, message: str) -> None:
        self.query_one("#message", Static).update(message)

    # --- keys ----------------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_drive()

    def action_drive(self) -> None:
        name = self.selected()
        if name is not None:
            self.tapp.focus_robot(name)

    def action_stop_selected(self) -> None:
        name = self.selected()
        fleet = self.tapp.fleet
        if name is None or fleet is None:
            return
        fleet.stop(name)
        self.say(f"E-STOP: {name} stopped and latched; the other robots drive on · "
                 "a: acknowledge it")

    def action_acknowledge(self) -> None:
        name = self.selected()
        fleet = self.tapp.fleet
        if name is None or fleet is None:
            return
        fleet.sessions[name].post(OperatorEvent.ACKNOWLEDGE)
        self.say(f"{name}: acknowledged (it stays stopped, in IDLE)")
