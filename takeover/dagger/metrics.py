"""Round metrics for human-gated DAgger (pure numpy, attributes only: no frames are read).

Per round (rounds/rNNN):
- episodes, steps (labelled or not), human_steps (steps the operator drove: demonstration -1
  plus intervention 1), robot_steps (action_mode 0);
- interventions: takeover starts (the recorder counts runs of action_mode 1);
- interventions_per_min: interventions per minute of autonomous driving (robot steps / rate);
- mtbi_s: mean time between interventions = autonomous time / interventions (None without
  interventions, or with no autonomous driving);
- autonomy: robot steps / (robot + human steps), None in a round without either;
- success_rate with a 95% Wilson score interval (ci_low, ci_high) over the episodes with a
  verdict (success or failure; aborted and interrupted episodes have none);
- autonomous_successes: docked without any intervention;
- operator_time_s: time the operator's hands drove (human steps / rate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from takeover.recorder.reader import EpisodeInfo


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (0, 1 when n == 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RoundMetrics:
    round: int
    episodes: int
    steps: int
    human_steps: int
    robot_steps: int
    interventions: int
    interventions_per_min: float | None
    mtbi_s: float | None
    autonomy: float | None
    successes: int
    decided: int
    success_rate: float | None
    ci_low: float | None
    ci_high: float | None
    autonomous_successes: int
    operator_time_s: float
    autonomous_time_s: float

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def round_metrics(round_index: int, episodes: Sequence[EpisodeInfo]) -> RoundMetrics:
    """Metrics of one round from its episodes' attributes. Partial (still recording or
    unrecovered) episodes should be left out by the caller."""
    steps = sum(e.num_steps for e in episodes)
    human = sum(e.human_steps for e in episodes)  # demonstration + intervention steps
    robot = sum(e.robot_steps for e in episodes)
    interventions = sum(e.interventions for e in episodes)
    autonomous_s = sum(e.robot_steps / e.rate_hz for e in episodes if e.rate_hz > 0)
    operator_s = sum(e.human_steps / e.rate_hz for e in episodes if e.rate_hz > 0)
    successes = sum(e.outcome == "success" for e in episodes)
    decided = sum(e.outcome in ("success", "failure") for e in episodes)
    auto_ok = sum(e.outcome == "success" and e.interventions == 0 and e.robot_steps > 0
                  for e in episodes)
    per_min = interventions / (autonomous_s / 60.0) if autonomous_s > 0 else None
    mtbi = autonomous_s / interventions if interventions > 0 and autonomous_s > 0 else None
    autonomy = robot / (robot + human) if robot + human > 0 else None
    rate = successes / decided if decided else None
    lo, hi = wilson_interval(successes, decided) if decided else (None, None)
    return RoundMetrics(
        round=round_index, episodes=len(episodes), steps=steps, human_steps=human,
        robot_steps=robot, interventions=interventions, interventions_per_min=per_min,
        mtbi_s=mtbi, autonomy=autonomy, successes=successes, decided=decided,
        success_rate=rate, ci_low=lo, ci_high=hi, autonomous_successes=auto_ok,
        operator_time_s=operator_s, autonomous_time_s=autonomous_s,
    )


def workspace_metrics(infos: Iterable[EpisodeInfo]) -> list[RoundMetrics]:
    """One RoundMetrics per round present, in round order; partial files are skipped."""
    by_round: dict[int, list[EpisodeInfo]] = {}
    for info in infos:
        if info.partial:
            continue
        by_round.setdefault(info.round, []).append(info)
    return [round_metrics(r, by_round[r]) for r in sorted(by_round)]


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _delta(cur: float | None, prev: float | None, spec: str) -> str:
    if cur is None or prev is None:
        return ""
    d = cur - prev
    return f" ({d:+{spec}})"


def format_status_table(rows: Sequence[RoundMetrics]) -> list[str]:
    """The `dagger status` table: one row per round, with the change against the previous."""
    header = ["round", "episodes", "steps", "human", "interv.", "interv./min", "MTBI",
              "autonomy", "success", "95% CI"]
    table = [header]
    prev: RoundMetrics | None = None
    for m in rows:
        p = prev
        table.append([
            f"r{m.round:03d}",
            str(m.episodes),
            str(m.steps),
            str(m.human_steps),
            str(m.interventions),
            _fmt(m.interventions_per_min, ".2f")
            + _delta(m.interventions_per_min, p.interventions_per_min if p else None, ".2f"),
            _fmt(m.mtbi_s, ".1f", " s"),
            _fmt(None if m.autonomy is None else 100 * m.autonomy, ".1f", "%")
            + _delta(None if m.autonomy is None else 100 * m.autonomy,
                     None if p is None or p.autonomy is None else 100 * p.autonomy, ".1f"),
            (f"{m.successes}/{m.decided} " if m.decided else "")
            + _fmt(None if m.success_rate is None else 100 * m.success_rate, ".0f", "%")
            + _delta(None if m.success_rate is None else 100 * m.success_rate,
                     None if p is None or p.success_rate is None else 100 * p.success_rate, ".0f"),
            "-" if m.ci_low is None or m.ci_high is None
            else f"{100 * m.ci_low:.0f}-{100 * m.ci_high:.0f}%",
        ])
        prev = m
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(c.rjust(widths[i]) if i else c.ljust(widths[i]) for i, c in enumerate(r))
            for r in table]
