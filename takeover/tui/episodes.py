"""Episodes: browse the workspace's episodes, relabel, annotate, trash, and replay one.

Replay shows the policy's attention over the recorded frames on demand (`i`, the camera's
overlay): the model that drove the episode (its `model_id`, from the workspace's registry), or
the deployed model for a demonstration or a model since deleted, run here on each step's
frame as it is shown (one inference, about a millisecond), cached per step."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import numpy.typing as npt
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from takeover.recorder.edit import annotate_episode, episode_notes, trash_episode
from takeover.recorder.reader import EpisodeInfo, EpisodeReader
from takeover.recorder.store import EpisodeStore
from takeover.tui.camera import AttentionSource, CameraView, runtime_attention_source
from takeover.tui.dialogs import ConfirmDialog, NoteDialog
from takeover.tui.widgets import ModeBanner
from takeover.types import (
    ACTION_MODE_DEMONSTRATION,
    ACTION_MODE_INTERVENTION,
    ACTION_MODE_ROBOT,
    Outcome,
)

if TYPE_CHECKING:
    from takeover.tui.app import TakeoverApp

OUTCOME_STYLE = {Outcome.SUCCESS.value: "green", Outcome.FAILURE.value: "red",
                 Outcome.ABORTED.value: "yellow", Outcome.INTERRUPTED.value: "magenta"}
COLUMNS = ("episode", "outcome", "steps", "human", "interv.", "duration", "model", "notes")


class EpisodesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,v", "replay", "Replay"),
        Binding("s", "relabel('success')", "Success"),
        Binding("f", "relabel('failure')", "Failure"),
        Binding("b", "relabel('aborted')", "Abort"),
        Binding("o", "note", "Note"),
        Binding("delete,d", "trash", "Trash"),
        Binding("g", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        self.ready = False  # children composed: telemetry may be shown
        super().__init__(id="episodes")
        self.infos: list[EpisodeInfo] = []

    @property
    def tapp(self) -> TakeoverApp:
        from takeover.tui.app import TakeoverApp

        assert isinstance(self.app, TakeoverApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield ModeBanner(id="modebar", classes="small")
        table: DataTable[str | Text] = DataTable(id="episode-table", cursor_type="row", zebra_stripes=True)
        yield table
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        self.ready = True
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def show(self, mode: object, reason: str) -> None:
        from takeover.types import Mode

        if isinstance(mode, Mode):
            self.query_one(ModeBanner).show(mode, reason)

    @work(thread=True, exclusive=True, group="episodes")
    def action_reload(self) -> None:
        ws = self.tapp.workspace
        if ws is None:
            self.app.call_from_thread(self.say, "no workspace: start with --workspace DIR")
            return
        infos = EpisodeStore(ws).episodes()
        notes = {}
        for info in infos:
            try:
                notes[info.path] = episode_notes(info.path)
            except OSError:
                notes[info.path] = ""
        self.app.call_from_thread(self._fill, infos, notes)

    def _fill(self, infos: list[EpisodeInfo], notes: dict[Path, str]) -> None:
        table = self.query_one(DataTable)
        selected = table.cursor_row
        table.clear()
        self.infos = infos
        for info in infos:
            table.add_row(
                info.key, Text(info.outcome, style=OUTCOME_STYLE.get(info.outcome, "")),
                str(info.num_steps), str(info.human_steps), str(info.interventions),
                f"{info.duration_s:.1f} s", info.model_id or "-", notes.get(info.path, "")[:40],
                key=str(info.path))
        if infos:
            table.move_cursor(row=min(max(selected, 0), len(infos) - 1))
        self.say(f"{len(infos)} episodes in {self.tapp.workspace}")

    def selected(self) -> EpisodeInfo | None:
        table = self.query_one(DataTable)
        if not self.infos or table.cursor_row < 0 or table.cursor_row >= len(self.infos):
            return None
        return self.infos[table.cursor_row]

    def action_relabel(self, outcome: str) -> None:
        info = self.selected()
        if info is None:
            return
        annotate_episode(info.path, outcome=outcome)
        self.say(f"{info.key}: relabelled {outcome}")
        self.action_reload()

    def action_note(self) -> None:
        info = self.selected()
        if info is None:
            return

        def done(text: str | None) -> None:
            if text is not None:
                annotate_episode(info.path, notes=text)
                self.say(f"{info.key}: note saved")
                self.action_reload()

        self.app.push_screen(NoteDialog(episode_notes(info.path)), done)

    def action_trash(self) -> None:
        info = self.selected()
        ws = self.tapp.workspace
        if info is None or ws is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                target = trash_episode(ws, info.path)
                self.say(f"{info.key} moved to {target.relative_to(ws)}")
                self.action_reload()

        self.app.push_screen(ConfirmDialog(f"Move {info.key} to the trash?"), done)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_replay()  # enter on a row (the table consumes the key)

    def action_replay(self) -> None:
        info = self.selected()
        if info is not None:
            self.app.push_screen(ReplayScreen(info))

    def say(self, message: str) -> None:
        self.query_one("#message", Static).update(message)


ACTION_MODE_LABEL = {ACTION_MODE_DEMONSTRATION: ("demonstration (human)", "dodger_blue1"),
                     ACTION_MODE_ROBOT: ("robot (policy)", "green"),
                     ACTION_MODE_INTERVENTION: ("intervention (human)", "orange1")}


class ReplayScreen(Screen[None]):
    """Scrub through an episode's frames and see who was driving at each step."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,l", "step(1)", "+1"),
        Binding("left,h", "step(-1)", "-1"),
        Binding("pagedown,shift+right", "step(20)", "+20"),
        Binding("pageup,shift+left", "step(-20)", "-20"),
        Binding("home", "seek(0)", "Start"),
        Binding("end", "seek(-1)", "End"),
        Binding("escape,backspace", "close", "Back"),
    ]

    def __init__(self, info: EpisodeInfo) -> None:
        super().__init__(id="replay")
        self.info = info
        self.reader = EpisodeReader(info.path)
        self.n = self.reader.num_steps
        self.action_mode = self.reader.column("action_mode").astype(np.int16)
        self.action = self.reader.column("action")
        self.policy_action = self.reader.column("policy_action")
        self.index = 0
        self._attention: dict[int, npt.NDArray[np.float32] | None] = {}
        self._attention_model: AttentionSource | None = None
        self.attention_note = ""  # whose attention the overlay shows, or why none

    @property
    def tapp(self) -> TakeoverApp:
        from takeover.tui.app import TakeoverApp

        assert isinstance(self.app, TakeoverApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static(id="replay-title")
        with Horizontal(id="replay-main"):
            with Vertical(id="replay-camera-box", classes="panel") as v:
                choice = self.tapp.camera
                v.border_title = f"camera ({choice.label})"
                yield CameraView(id="replay-camera", renderer=choice.renderer,
                                 attention_source=self._attention_at_step)
            yield Static(id="replay-info", classes="panel")
        yield Static(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#replay-title", Static).update(Text.assemble(
            ("Replay ", "bold"), self.info.key, f"  outcome {self.info.outcome}  "
            f"{self.n} steps  model {self.info.model_id or '-'}"))
        self._show()

    def on_unmount(self) -> None:
        self.reader.close()

    def action_step(self, delta: int) -> None:
        self.index = max(0, min(self.n - 1, self.index + delta))
        self._show()

    def action_seek(self, index: int) -> None:
        self.index = self.n - 1 if index < 0 else min(index, max(0, self.n - 1))
        self._show()

    def action_close(self) -> None:
        self.dismiss(None)

    def attention_onnx(self) -> list[Path]:
        """The models to ask for attention, in order: the one that drove this episode, then the
        deployed one."""
        ws = self.tapp.workspace
        if ws is None:
            return []
        from takeover.workspace.registry import deployed_onnx, models_dir

        paths = []
        if self.info.model_id:
            paths.append(models_dir(ws) / self.info.model_id / "policy.onnx")
        deployed = deployed_onnx(ws)
        if deployed is not None:
            paths.append(Path(deployed[1]))
        return [p for i, p in enumerate(paths) if p.exists() and p not in paths[:i]]

    def _attention_at_step(self, frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        """The overlay's map for the step shown (the camera asks only while its overlay is on):
        loads the model the first time, then one inference per step, cached."""
        i = self.index
        if i not in self._attention:
            if self._attention_model is None:
                notes = []
                for onnx in self.attention_onnx():
                    self._attention_model, note = runtime_attention_source(onnx)
                    notes.append(note)
                    if self._attention_model is not None:
                        break
                self.attention_note = notes[-1] if notes else "no model in this workspace"
                if self._attention_model is None:
                    raise LookupError(f"no attention: {self.attention_note}")
            self._attention[i] = self._attention_model(frame)
        return self._attention[i]

    def _frame(self, i: int) -> npt.NDArray[np.uint8] | None:
        if not self.reader.has_image or self.n == 0:
            return None
        return self.reader.frames(i)

    def _show(self) -> None:
        i = self.index
        camera = self.query_one(CameraView)
        if camera.renderer != "off":
            camera.caption = "no camera in this episode"
        camera.show(self._frame(i))
        t = Text()
        if self.n:
            am = int(self.action_mode[i])
            label, style = ACTION_MODE_LABEL.get(am, ("not driving", "grey50"))
            t.append(f"step {i + 1}/{self.n}  t = {i / self.info.rate_hz:.2f} s\n\n")
            t.append("driving: ")
            t.append(label + "\n", style=f"bold {style}")
            v, w = self.action[i]
            t.append(f"command  v {v:+.2f} m/s  w {w:+.2f} rad/s\n")
            pv, pw = self.policy_action[i]
            if np.isfinite(pv):
                t.append(f"policy   v {pv:+.2f} m/s  w {pw:+.2f} rad/s\n")
        self.query_one("#replay-info", Static).update(t)
        self.query_one("#timeline", Static).update(self._timeline())

    def _timeline(self) -> Text:
        width = max(10, self.size.width - 2)
        t = Text()
        if not self.n:
            return t
        for c in range(width):
            lo = c * self.n // width
            am = int(self.action_mode[min(lo, self.n - 1)])
            style = ACTION_MODE_LABEL.get(am, ("", "grey30"))[1]
            here = lo <= self.index < max(lo + 1, (c + 1) * self.n // width)
            t.append("▲" if here else "█", style=("bold white" if here else style))
        t.append("\n■ demonstration ", style="dodger_blue1")
        t.append("■ robot ", style="green")
        t.append("■ intervention ", style="orange1")
        t.append("■ not driving", style="grey30")
        return t
