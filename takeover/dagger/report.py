"""`takeover dagger report`: the rounds of a workspace as markdown and a PNG plot.

report.md: the `dagger status` figures as a markdown table, one row per round, and the models
with their data, validation loss, parity and held-out evaluation (from their cards).
report.png: success rate with 95% Wilson intervals per round (the supervised runs, where the
operator may have helped, and each model's held-out evaluation alone when it has one), and
interventions per autonomous minute per round. Then each model's robustness table and chart
(robustness_rNNN.png) and the A/B table of `dagger compare` (dagger/evaluation_report.py).

matplotlib (the `report` extra) is imported only when the plot is drawn, with the Agg backend
(no display needed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from takeover.dagger.metrics import RoundMetrics, intervention_trend, workspace_metrics
from takeover.errors import UsageError
from takeover.policy.spec import PolicyError
from takeover.recorder.store import EpisodeStore
from takeover.workspace.atomic import atomic_write_bytes
from takeover.workspace.registry import current_model_id, model_ids, read_card

REPORT_MD = "report.md"
REPORT_PNG = "report.png"


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    round: int
    trained_on_rounds: list[int]
    episodes: int | None
    expert_labels: int | None
    best_val_loss: float | None
    parity_max_abs_error: float | None
    evaluation: dict[str, Any] | None
    deployed: bool

    def as_json(self) -> dict[str, Any]:
        ev = self.evaluation or {}
        return {"model_id": self.model_id, "round": self.round,
                "trained_on_rounds": self.trained_on_rounds, "episodes": self.episodes,
                "expert_labels": self.expert_labels, "best_val_loss": self.best_val_loss,
                "parity_max_abs_error": self.parity_max_abs_error, "deployed": self.deployed,
                "eval_success_rate": ev.get("success_rate"), "eval_ci_low": ev.get("ci_low"),
                "eval_ci_high": ev.get("ci_high"), "eval_episodes": ev.get("episodes")}


def model_rows(workspace: Path) -> list[ModelRow]:
    """One row per registered model, from its card (a model without a readable card shows
    with empty fields rather than hiding)."""
    current = current_model_id(workspace)
    rows = []
    for mid in model_ids(workspace):
        try:
            card = read_card(workspace, mid)
        except PolicyError:
            card = {}
        data = card.get("data") or {}
        ev = card.get("evaluation")
        rows.append(ModelRow(
            model_id=mid, round=int(mid[1:]), trained_on_rounds=list(data.get("rounds") or []),
            episodes=data.get("episodes"), expert_labels=data.get("human_steps"),
            best_val_loss=(card.get("metrics") or {}).get("best_val_loss"),
            parity_max_abs_error=(card.get("export") or {}).get("parity_max_abs_error"),
            evaluation=ev if isinstance(ev, dict) else None, deployed=mid == current))
    return rows


def _f(value: float | None, spec: str, scale: float = 1.0, unit: str = "") -> str:
    return "-" if value is None else f"{scale * value:{spec}}{unit}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    right = ["---:" if i else "---" for i in range(len(header))]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def rounds_markdown(rows: Sequence[RoundMetrics]) -> list[str]:
    header = ["round", "episodes", "steps", "human steps", "interventions", "interv./min",
              "MTBI (s)", "autonomy", "success", "95% CI"]
    body = [[f"r{m.round:03d}", str(m.episodes), str(m.steps), str(m.human_steps),
             str(m.interventions), _f(m.interventions_per_min, ".2f"), _f(m.mtbi_s, ".1f"),
             _f(m.autonomy, ".1f", 100, "%"),
             (f"{m.successes}/{m.decided} " if m.decided else "") + _f(m.success_rate, ".0f", 100, "%"),
             "-" if m.ci_low is None or m.ci_high is None
             else f"{100 * m.ci_low:.0f}-{100 * m.ci_high:.0f}%"] for m in rows]
    return _table(header, body)


def models_markdown(rows: Sequence[ModelRow]) -> list[str]:
    header = ["model", "trained on", "episodes", "expert labels", "val loss", "parity",
              "held-out success", "95% CI", "eval seeds", "deployed"]
    body = []
    for m in rows:
        ev = m.evaluation or {}
        seeds = ev.get("seeds") or []
        trained = ",".join(f"r{r:03d}" for r in m.trained_on_rounds) or "-"
        body.append([
            m.model_id, trained, "-" if m.episodes is None else str(m.episodes),
            "-" if m.expert_labels is None else str(m.expert_labels),
            _f(m.best_val_loss, ".4f"), _f(m.parity_max_abs_error, ".1e"),
            "-" if not ev else f"{ev.get('successes')}/{ev.get('episodes')} "
            f"{100 * float(ev.get('success_rate', 0)):.0f}%",
            "-" if not ev else f"{100 * float(ev['ci_low']):.0f}-{100 * float(ev['ci_high']):.0f}%",
            f"{seeds[0]}..{seeds[-1]}" if seeds else "-",
            "current" if m.deployed else ""])
    return _table(header, body)


def error_bars(points: Sequence[tuple[float, float, float]]) -> list[list[float]]:
    """matplotlib's yerr (below, above) in percent from (rate, low, high); an interval that
    rounding put a hair inside its rate (0 of n, n of n) is clamped to zero length."""
    return [[max(0.0, 100 * (p - lo)) for p, lo, _ in points],
            [max(0.0, 100 * (hi - p)) for p, _, hi in points]]


def plot_rounds(rounds: Sequence[RoundMetrics], models: Sequence[ModelRow], path: Path,
                title: str) -> None:
    """Two panels: success per round (supervised runs, held-out evaluations) with 95% Wilson
    intervals; interventions per autonomous minute per round."""
    plt = load_pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    sup = [m for m in rounds if m.success_rate is not None]
    if sup:
        x = [m.round for m in sup]
        y = [100 * (m.success_rate or 0) for m in sup]
        err = error_bars([(m.success_rate or 0.0, m.ci_low or 0.0, m.ci_high or 0.0) for m in sup])
        ax1.errorbar(x, y, yerr=err, fmt="o-", capsize=4, label="recorded runs (operator may help)")
    evaluated = [m for m in models if m.evaluation]
    if evaluated:
        x = [m.round for m in evaluated]
        ev = [m.evaluation or {} for m in evaluated]
        y = [100 * float(e["success_rate"]) for e in ev]
        err = error_bars([(float(e["success_rate"]), float(e["ci_low"]), float(e["ci_high"]))
                          for e in ev])
        ax1.errorbar(x, y, yerr=err, fmt="s--", capsize=4, label="model alone, held-out seeds")
    ax1.set_xlabel("round (model rN runs in round N)")
    ax1.set_ylabel("docked (%)")
    ax1.set_ylim(-2, 102)
    ax1.set_title("success rate, 95% Wilson interval")
    if sup or evaluated:
        ax1.legend(loc="best", fontsize="small")
    per_min = [m for m in rounds if m.interventions_per_min is not None]
    if per_min:
        ax2.bar([m.round for m in per_min], [m.interventions_per_min or 0.0 for m in per_min])
    else:
        ax2.text(0.5, 0.5, "no autonomous driving recorded yet", ha="center", va="center",
                 transform=ax2.transAxes)
    ax2.set_xlabel("round")
    ax2.set_ylabel("interventions / autonomous min")
    ax2.set_title("interventions per autonomous minute")
    ticks = sorted({m.round for m in rounds} | {m.round for m in models})
    for ax in (ax1, ax2):
        ax.set_xticks(ticks, [f"r{t:03d}" for t in ticks])
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize="medium")
    save_figure(fig, path)
    plt.close(fig)


def load_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("plots need matplotlib: pip install 'takeover[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """PNG written beside its destination and renamed over it (atomic)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def write_report(workspace: Path, out_dir: Path | None = None) -> dict[str, Any]:
    """Write report.md and report.png into `out_dir` (default WORKSPACE/report); returns the
    paths and the rows."""
    store = EpisodeStore(workspace)
    ws = store.workspace
    rounds = workspace_metrics(store.episodes())
    models = model_rows(ws)
    if not rounds and not models:
        raise UsageError(f"{ws}: nothing to report yet (no episodes, no models)")
    out = (out_dir or ws / "report").expanduser()
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    md_path, png_path = out / REPORT_MD, out / REPORT_PNG
    plot_rounds(rounds, models, png_path, f"{ws.name}: DAgger rounds")
    current = current_model_id(ws)
    lines = [f"# DAgger report: {ws}", "", f"Generated {now}; deployed model: "
             f"{current or 'none'}.", "", "## Rounds", "",
             "Round rN holds the runs of model rN (r000: the demonstrations). Success counts "
             "the recorded runs, where the operator may have taken over; interventions per "
             "minute are per minute of autonomous driving.", ""]
    lines += rounds_markdown(rounds) if rounds else ["No episodes recorded yet."]
    trend = intervention_trend(rounds)
    if trend is not None:
        lines += ["", f"Trend: {trend.describe()}."]
    lines += ["", "## Models", "",
              "Held-out success: the model alone on simulator seeds never recorded in its "
              "training data (`takeover dagger eval`).", ""]
    lines += models_markdown(models) if models else ["No models yet."]
    lines += ["", f"![success and interventions per round]({png_path.name})", ""]
    from takeover.dagger.evaluation_report import evaluation_sections

    evaluation_lines, evaluation = evaluation_sections(ws, out)  # robustness, A/B
    lines += [*evaluation_lines, ""]
    atomic_write_bytes(md_path, "\n".join(lines).encode())
    return {"workspace": str(ws), "markdown": str(md_path), "plot": str(png_path),
            "rounds": [r.as_json() for r in rounds], "models": [m.as_json() for m in models],
            "trend": trend.as_json() if trend else None, **evaluation}
