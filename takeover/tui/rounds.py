"""Rounds: DAgger metrics per round, interventions chart, training the next model, deploying."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, ProgressBar, Static

from takeover.dagger.metrics import (
    RoundMetrics,
    intervention_trend,
    trend_verdict,
    workspace_metrics,
)
from takeover.recorder.store import EpisodeStore
from takeover.session.operator import ModelRef
from takeover.session.training import TrainingState
from takeover.tui.widgets import ModeBanner, bar_chart, line_chart
from takeover.types import Mode
from takeover.workspace.registry import ONNX_NAME, model_path

if TYPE_CHECKING:
    from takeover.tui.app import TakeoverApp

COLUMNS = ("round", "episodes", "steps", "human", "interv.", "interv./min", "MTBI", "autonomy",
           "success", "95% CI", "prot. stops")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def metrics_row(m: RoundMetrics) -> tuple[str, ...]:
    return (f"r{m.round:03d}", str(m.episodes), str(m.steps), str(m.human_steps),
            str(m.interventions),
            "-" if m.interventions_per_min is None else f"{m.interventions_per_min:.2f}",
            "-" if m.mtbi_s is None else f"{m.mtbi_s:.1f} s", _pct(m.autonomy),
            f"{m.successes}/{m.decided} {_pct(m.success_rate)}" if m.decided else "-",
            "-" if m.ci_low is None or m.ci_high is None
            else f"{100 * m.ci_low:.0f}-{100 * m.ci_high:.0f}%", str(m.protective_stops))


def trend_text(rows: list[RoundMetrics]) -> str:
    """The intervention rate's fitted change per round with its 95% interval (dagger/metrics.py
    intervention_trend), one line under the chart; "" without a fit."""
    trend = intervention_trend(rows)
    if trend is None:
        return ""
    return (f"trend x{trend.ratio_per_round:.2f}/round (CI {trend.ci_low:.2f}-"
            f"{trend.ci_high:.2f}) {trend_verdict(trend.ci_low, trend.ci_high)}")


class RoundsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "train", "Train next model"),
        Binding("c", "cancel", "Cancel training"),
        Binding("d", "deploy", "Deploy"),
        Binding("g", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        self.ready = False  # children composed: telemetry may be shown
        super().__init__(id="rounds")
        self.rows: list[RoundMetrics] = []
        self.trained: ModelRef | None = None

    @property
    def tapp(self) -> TakeoverApp:
        from takeover.tui.app import TakeoverApp

        assert isinstance(self.app, TakeoverApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield ModeBanner(id="modebar", classes="small")
        table: DataTable[str] = DataTable(id="rounds-table", cursor_type="row", zebra_stripes=True)
        yield table
        with Horizontal(id="rounds-lower"):
            yield Static(id="chart", classes="panel")
            with Vertical(id="training", classes="panel"):
                yield Static(id="train-status")
                yield ProgressBar(id="train-progress", total=1.0, show_eta=False)
                yield Static(id="loss")
                with Horizontal(id="train-buttons"):
                    yield Button("Train next model (t)", id="train-button", variant="primary")
                    yield Button("Cancel (c)", id="cancel-button", variant="error", disabled=True)
                    yield Button("Deploy (d)", id="deploy-button", variant="success", disabled=True)
        yield Static(id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.ready = True
        self.query_one("#chart", Static).border_title = "interventions per autonomous minute"
        self.query_one("#training", Vertical).border_title = "training"
        self.action_reload()
        self.show_training()

    def on_screen_resume(self) -> None:
        self.action_reload()

    def show(self, mode: Mode, reason: str) -> None:
        self.query_one(ModeBanner).show(mode, reason)
        self.show_training()

    @work(thread=True, exclusive=True, group="rounds")
    def action_reload(self) -> None:
        ws = self.tapp.workspace
        if ws is None:
            self.app.call_from_thread(self.say, "no workspace: start with --workspace DIR")
            return
        rows = workspace_metrics(EpisodeStore(ws).episodes())
        self.app.call_from_thread(self._fill, rows)

    def _fill(self, rows: list[RoundMetrics]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for m in rows:
            table.add_row(*metrics_row(m))
        chart = bar_chart([(f"r{m.round:03d}", m.interventions_per_min) for m in rows],
                          width=24, unit="/min")
        trend = trend_text(rows)
        if trend:
            chart.append(f"\n{trend}")
        model = self.tapp.session.model
        chart.append(f"\n\ndeployed model: {model.model_id if model else 'none'}"
                     f"  ·  episodes go to round r{self.tapp.session.round:03d}", style="dim")
        self.query_one("#chart", Static).update(chart)

    # --- training ------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"train-button": self.action_train, "cancel-button": self.action_cancel,
         "deploy-button": self.action_deploy}[event.button.id or ""]()

    def action_train(self) -> None:
        self.trained = None
        self.say(self.tapp.session.start_training())
        self.show_training()

    def action_cancel(self) -> None:
        job = self.tapp.session.training
        if job is not None:
            job.cancel()
        self.show_training()

    def action_deploy(self) -> None:
        model = self.trained
        if model is None:
            self.say("nothing to deploy: train a model first")
            return
        self.tapp.deploy(model)

    def show_training(self) -> None:
        job = self.tapp.session.training
        state = job.state() if job is not None else TrainingState()
        status = self.query_one("#train-status", Static)
        t = Text()
        t.append(f"{state.status}", style="bold")
        if state.epochs:
            t.append(f"  epoch {state.epoch}/{state.epochs}")
            if state.steps:
                t.append(f"  step {state.step}/{state.steps}")
        if state.train_loss is not None:
            t.append(f"  loss {state.train_loss:.4g}")
        if state.val_loss is not None:
            t.append(f"  val {state.val_loss:.4g}")
        if state.images_per_s:
            t.append(f"  {state.images_per_s:.0f} img/s")
        if state.status != "idle":
            t.append(f"  {state.elapsed_s:.0f} s")
        if state.message:
            t.append(f"\n{state.message}", style="dim")
        if state.status == "done" and state.result:
            t.append("\n" + _result_text(state.result))
            if self.trained is None:
                self.trained = _model_from_result(self.tapp.workspace, state.result)
        elif state.log and state.status in ("running", "failed"):
            t.append(f"\n{state.log[-1][:100]}", style="dim")
        status.update(t)
        self.query_one(ProgressBar).update(progress=state.fraction)
        curve = state.curve
        loss = line_chart([[c[1] for c in curve], [c[2] for c in curve]],
                          width=max(10, self.query_one("#loss", Static).size.width - 10) if curve else 20,
                          height=5, styles=["cyan", "orange1"])
        if curve:
            loss.append("\n")
            loss.append("── train ", style="cyan")
            loss.append("── validation", style="orange1")
        self.query_one("#loss", Static).update(loss)
        running = state.status in ("running", "cancelling")
        self.query_one("#train-button", Button).disabled = running
        self.query_one("#cancel-button", Button).disabled = not running
        self.query_one("#deploy-button", Button).disabled = self.trained is None

    def say(self, message: str) -> None:
        self.query_one("#message", Static).update(message)


# The figures shown from a trainer's result, each where a trainer may put it: at the top level
# (the protocol), or nested as in `takeover train --json`'s model card.
def _figure(result: dict[str, object], *paths: str) -> float | None:
    for path in paths:
        value: object = result
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _result_text(result: dict[str, object]) -> str:
    """One line (the panel's width at 140 columns): the model and its validation figures."""
    parts = [str(result.get("model_id") or "model")]
    val = _figure(result, "val_loss", "metrics.best_val_loss", "metrics.val_loss")
    if val is not None:
        parts.append(f"val loss {val:.4g}")
    mae_v = _figure(result, "mae_v_mps", "metrics.mae_v_mps")
    mae_w = _figure(result, "mae_w_radps", "metrics.mae_w_radps")
    if mae_v is not None and mae_w is not None:
        parts.append(f"MAE {mae_v:.3f} m/s {mae_w:.3f} rad/s")
    parity = _figure(result, "parity_max_abs_err", "export.parity_max_abs_error")
    if parity is not None:
        parts.append(f"ONNX parity {parity:.1e}")
    if result.get("deployed") is True:
        parts.append("now models/current")
    return "result: " + "  ".join(parts)


def _model_from_result(workspace: Path | None, result: dict[str, object]) -> ModelRef | None:
    """The model a training run registered: `onnx` (a path), or `model_dir`, or `model_id`."""
    onnx = result.get("onnx")
    model_id = str(result.get("model_id", "") or "")
    if isinstance(onnx, str) and onnx:
        path = Path(onnx)
        return ModelRef(model_id or path.parent.name, path)
    model_dir = result.get("model_dir")
    if isinstance(model_dir, str) and model_dir:
        path = Path(model_dir) / "policy.onnx"
        return ModelRef(model_id or Path(model_dir).name, path)
    if model_id and workspace is not None:
        return ModelRef(model_id, model_path(workspace, model_id) / ONNX_NAME)
    return None
