"""The evaluation part of `takeover dagger report`: each model's robustness table and chart
(from its card's `robustness`, written by `dagger eval --suite robustness | --perturb`) and the
A/B table of every `dagger compare` kept in the cards.

robustness_rNNN.png: one horizontal bar per family and severity, success with its 95% Wilson
interval, the unperturbed baseline as a dashed line; the weakest family is the shortest bar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from takeover.dagger.report import error_bars, load_pyplot, save_figure
from takeover.policy.spec import PolicyError
from takeover.workspace.registry import model_ids, read_card


def _cards(workspace: Path) -> dict[str, dict[str, Any]]:
    cards = {}
    for mid in model_ids(workspace):
        try:
            cards[mid] = read_card(workspace, mid)
        except PolicyError:
            continue
    return cards


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


def _num(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def plot_robustness(model_id: str, rows: list[dict[str, Any]], path: Path) -> None:
    plt = load_pyplot()
    labels = [r["family"] if r["family"] == "none" else f"{r['family']} {r['severity']:g}"
              for r in rows]
    rates = [100 * float(r["success_rate"]) for r in rows]
    err = error_bars([(float(r["success_rate"]), float(r["ci_low"]), float(r["ci_high"]))
                      for r in rows])
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.4), constrained_layout=True)
    y = list(range(len(rows)))[::-1]
    colours = ["0.55" if r["family"] == "none" else "tab:blue" for r in rows]
    ax.barh(y, rates, xerr=err, color=colours, capsize=3)
    ax.set_yticks(y, labels, fontsize="small")
    base = [r for r in rows if r["family"] == "none"]
    if base:
        ax.axvline(100 * float(base[0]["success_rate"]), color="0.3", ls="--", lw=1,
                   label="unperturbed")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_xlim(0, 100)
    ax.set_xlabel("docked alone (%), 95% Wilson interval")
    seeds = rows[0].get("seeds") or ["?", "?"]
    ax.set_title(f"{model_id}: robustness (seeds {seeds[0]}..{seeds[1]}, "
                 f"{rows[0]['episodes']} per row)", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def robustness_markdown(model_id: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"### {model_id}", "",
             "| family | severity | docked | 95% CI | time to dock (s) | path (m) | jerk (m/s³) | "
             "min clearance (m) | endings (protective stops) | seeds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        seeds = r.get("seeds") or ["?", "?"]
        endings = ", ".join(f"{k} {v}" for k, v in (r.get("outcomes") or {}).items()) or "-"
        if r.get("protective_stops") is not None:
            endings += f" ({r['protective_stops']})"
        lines.append(
            f"| {r['family']} | {r['severity']:g} | {r['successes']}/{r['episodes']} "
            f"{_pct(r['success_rate'])} | {_pct(r['ci_low'])}-{_pct(r['ci_high'])} | "
            f"{_num(r.get('time_to_dock_s'), '.1f')} | {_num(r.get('path_m'), '.2f')} | "
            f"{_num(r.get('jerk'), '.1f')} | {_num(r.get('min_clearance_m'), '.2f')} | "
            f"{endings} | {seeds[0]}..{seeds[1]} |")
    return lines


def comparisons_markdown(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = ["| A | B | seeds | A docked | B docked | only A | only B | McNemar p | "
             "time to dock B - A (s) | verdict |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for c in comparisons:
        seeds = c.get("seeds") or ["?", "?"]
        ci = c.get("time_diff_ci")
        time = "-" if c.get("time_diff_s") is None else (
            f"{c['time_diff_s']:+.2f} ({ci[0]:+.2f} to {ci[1]:+.2f})" if ci else
            f"{c['time_diff_s']:+.2f}")
        lines.append(f"| {c['a']} | {c['b']} | {seeds[0]}..{seeds[1]} | {c['a_successes']} | "
                     f"{c['b_successes']} | {c['only_a']} | {c['only_b']} | {c['p_value']:.3g} | "
                     f"{time} | {c['verdict']} |")
    return lines


def evaluation_sections(workspace: Path, out: Path) -> tuple[list[str], dict[str, Any]]:
    """Markdown lines for report.md, and what went into them (plots written into `out`)."""
    cards = _cards(workspace)
    lines: list[str] = ["## Robustness", "",
                        "Each model alone on the same held-out seeds under the simulator's "
                        "perturbation families (`takeover dagger eval --suite robustness`, "
                        "docs/evaluation.md).", ""]
    plots: dict[str, str] = {}
    for mid, card in cards.items():
        rows = (card.get("robustness") or {}).get("rows") or []
        if not rows:
            continue
        path = out / f"robustness_{mid}.png"
        plot_robustness(mid, rows, path)
        plots[mid] = str(path)
        lines += [*robustness_markdown(mid, rows), "", f"![{mid} robustness]({path.name})", ""]
    if not plots:
        lines += ["No robustness evaluation yet.", ""]
    comparisons = [c for card in cards.values() for c in (card.get("comparisons") or [])]
    lines += ["## A/B comparisons", "",
              "`takeover dagger compare A B`: both alone on the same seeds; exact McNemar test on "
              "the seeds where only one docked; time to dock paired over the seeds where both "
              "docked, 95% bootstrap interval.", ""]
    lines += comparisons_markdown(comparisons) if comparisons else ["No comparisons yet."]
    summary = [{k: v for k, v in c.items() if not k.endswith("per_seed")} for c in comparisons]
    return lines, {"robustness_plots": plots, "comparisons": summary}
