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
- operator_time_s: time the operator's hands drove (human steps / rate);
- protective_stops: how often the LiDAR protective field stopped the robot (near misses; the
  episodes' `protective_stops`, 0 for files recorded before the field).

With several robots recording into one workspace, the rows above stay pooled over every robot
(a round is one policy, whichever robot ran it); `workspace_metrics_by_robot` gives the same
metrics per (round, robot), the robot being the episodes' `robot_name` ("" unnamed).

Robot-gated supervision (control/help.py), from the per-step help datasets (`help_counts`;
columns only, no frames):
- requests: how often the robot asked for help (runs of `help/requested`);
- robot_gated / human_gated: takeovers that started on the step after a request (the operator
  answered by correcting) / without one (the operator stepped in unasked);
- false_alarms: requests the operator answered by handing back, without a correction;
- missed_failures: failed episodes with no request in their last `window_s` seconds.

Across rounds, `intervention_trend`: by what factor the intervention rate changes per round,
with a 95% interval, from a log-linear Poisson fit of every supervised round's interventions
against its autonomous minutes. A round of a few episodes holds a handful of interventions, so
one round's rate against the last says little; the fit over all rounds says whether the
operator is needed less as the rounds go on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from takeover.recorder.reader import Episode, EpisodeInfo
from takeover.recorder.schema import MODE_CODES
from takeover.types import ACTION_MODE_INTERVENTION, Mode, Outcome

#: A failure with no help request in this many seconds before its end was missed.
MISSED_FAILURE_WINDOW_S = 5.0


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
    protective_stops: int = 0

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
    decided = sum(e.outcome in (Outcome.SUCCESS.value, Outcome.FAILURE.value) for e in episodes)
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
        protective_stops=sum(e.protective_stops for e in episodes),
    )


@dataclass(frozen=True)
class HelpCounts:
    """Help requests and how they were answered, over one or more episodes (module doc)."""

    episodes: int = 0
    requests: int = 0
    robot_gated: int = 0
    human_gated: int = 0
    false_alarms: int = 0
    missed_failures: int = 0
    asking_s: float = 0.0  # time spent asking (held still, waiting for the operator)

    def __add__(self, other: HelpCounts) -> HelpCounts:
        return HelpCounts(
            self.episodes + other.episodes, self.requests + other.requests,
            self.robot_gated + other.robot_gated, self.human_gated + other.human_gated,
            self.false_alarms + other.false_alarms, self.missed_failures + other.missed_failures,
            self.asking_s + other.asking_s)

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def episode_help_counts(t_ns: np.ndarray, mode: np.ndarray, action_mode: np.ndarray,
                        help_requested: np.ndarray | None, outcome: str, rate_hz: float,
                        window_s: float = MISSED_FAILURE_WINDOW_S) -> HelpCounts:
    """HelpCounts of one episode from its per-step columns (T,). help_requested None: an
    episode recorded before help requests (no request: every takeover is human-gated)."""
    n = len(t_ns)
    asked = (np.zeros(n, dtype=bool) if help_requested is None
             else np.asarray(help_requested, dtype=bool))
    is_int = np.asarray(action_mode) == ACTION_MODE_INTERVENTION
    int_start = is_int & ~np.concatenate(([False], is_int[:-1]))
    asked_before = np.concatenate(([False], asked[:-1]))
    robot_gated = int(np.count_nonzero(int_start & asked_before))
    human_gated = int(np.count_nonzero(int_start & ~asked_before))
    starts = asked & ~asked_before
    # A request ends on a step where it is no longer asked; a hand-back leaves the robot in
    # AUTO (a takeover goes to TAKEOVER, an e-stop or a stop elsewhere: not false alarms).
    ends = ~asked & asked_before
    false_alarms = int(np.count_nonzero(ends & (np.asarray(mode) == MODE_CODES[Mode.AUTO])))
    missed = 0
    if outcome == Outcome.FAILURE.value and n:
        recent = np.asarray(t_ns) >= int(t_ns[-1]) - int(window_s * 1e9)
        missed = int(not asked[recent].any())
    return HelpCounts(episodes=1, requests=int(np.count_nonzero(starts)),
                      robot_gated=robot_gated, human_gated=human_gated,
                      false_alarms=false_alarms, missed_failures=missed,
                      asking_s=float(np.count_nonzero(asked)) / rate_hz if rate_hz > 0 else 0.0)


def help_counts(episodes: Iterable[Episode], window_s: float = MISSED_FAILURE_WINDOW_S
                ) -> HelpCounts:
    """HelpCounts summed over episodes (read with images=False)."""
    total = HelpCounts()
    for ep in episodes:
        total = total + episode_help_counts(ep.t_ns, ep.mode, ep.action_mode, ep.help_requested,
                                            ep.info.outcome, ep.info.rate_hz, window_s)
    return total


def workspace_metrics(infos: Iterable[EpisodeInfo]) -> list[RoundMetrics]:
    """One RoundMetrics per round present, in round order; partial files are skipped."""
    by_round: dict[int, list[EpisodeInfo]] = {}
    for info in infos:
        if info.partial:
            continue
        by_round.setdefault(info.round, []).append(info)
    return [round_metrics(r, by_round[r]) for r in sorted(by_round)]


def workspace_metrics_by_robot(infos: Iterable[EpisodeInfo]) -> list[tuple[str, RoundMetrics]]:
    """(robot name, its RoundMetrics) per round and robot present, in (round, robot) order;
    partial files are skipped. The unnamed robot is ""."""
    groups: dict[tuple[int, str], list[EpisodeInfo]] = {}
    for info in infos:
        if not info.partial:
            groups.setdefault((info.round, info.robot_name), []).append(info)
    return [(robot, round_metrics(r, groups[(r, robot)])) for r, robot in sorted(groups)]


def trend_verdict(ci_low: float, ci_high: float) -> str:
    """Words for a per-round ratio's interval: below 1 throughout is falling."""
    return "falling" if ci_high < 1 else "rising" if ci_low > 1 else "no clear trend"


@dataclass(frozen=True)
class InterventionTrend:
    """Interventions per autonomous minute multiply by `ratio_per_round` each round (95%
    interval `ci_low`..`ci_high`), fitted over `rounds` (first, last) supervised rounds."""

    ratio_per_round: float
    ci_low: float
    ci_high: float
    rounds: tuple[int, int]
    supervised_rounds: int
    interventions: int
    dispersion: float  # Pearson chi2 / dof, at least 1: the interval is widened by its root

    def as_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        return (f"interventions per autonomous minute: x{self.ratio_per_round:.2f} per round "
                f"(95% CI x{self.ci_low:.2f}-x{self.ci_high:.2f}), "
                f"{trend_verdict(self.ci_low, self.ci_high)}; fitted over "
                f"{self.supervised_rounds} supervised rounds r{self.rounds[0]:03d}.."
                f"r{self.rounds[1]:03d}, {self.interventions} interventions")


def intervention_trend(rows: Sequence[RoundMetrics], z: float = 1.959964
                       ) -> InterventionTrend | None:
    """Poisson regression log E[interventions] = a + b * round + log(autonomous minutes) over
    the rounds with autonomous driving. None when there is no finite fit: fewer than two such
    rounds, or every intervention in the first of them or every one in the last (the rate
    would go to or come from zero). With three rounds or more the interval is widened by the
    overdispersion (quasi-Poisson), where rounds differ by more than counting noise."""
    used = [m for m in rows if m.autonomous_time_s > 0]
    counts = np.array([m.interventions for m in used], dtype=float)
    x = np.array([m.round for m in used], dtype=float)
    with_interventions = set(x[counts > 0].tolist())
    if len(used) < 2 or not with_interventions or with_interventions in ({float(x[0])}, {float(x[-1])}):
        return None
    exposure = np.array([m.autonomous_time_s / 60.0 for m in used])
    design = np.stack([np.ones_like(x), x - x.mean()], axis=1)
    beta = np.array([math.log(counts.sum() / exposure.sum()), 0.0])
    for _ in range(50):  # Newton's method on the concave log-likelihood
        mu = exposure * np.exp(design @ beta)
        step = np.linalg.solve(design.T @ (mu[:, None] * design), design.T @ (counts - mu))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    mu = exposure * np.exp(design @ beta)
    cov = np.linalg.inv(design.T @ (mu[:, None] * design))
    dof = len(used) - 2
    dispersion = max(1.0, float(np.sum((counts - mu) ** 2 / mu)) / dof) if dof > 0 else 1.0
    se = math.sqrt(cov[1, 1] * dispersion)
    b = float(beta[1])
    return InterventionTrend(
        ratio_per_round=math.exp(b), ci_low=math.exp(b - z * se), ci_high=math.exp(b + z * se),
        rounds=(used[0].round, used[-1].round), supervised_rounds=len(used),
        interventions=int(counts.sum()), dispersion=dispersion)


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _delta(cur: float | None, prev: float | None, spec: str) -> str:
    if cur is None or prev is None:
        return ""
    d = cur - prev
    return f" ({d:+{spec}})"


def format_status_table(rows: Sequence[RoundMetrics],
                        robots: Sequence[str] | None = None) -> list[str]:
    """The `dagger status` table: one row per round, with the change against the previous.
    robots: each row's robot (`workspace_metrics_by_robot`): a robot column, and the change
    against that robot's previous row."""
    header = ["round", "episodes", "steps", "human", "interv.", "interv./min", "MTBI",
              "autonomy", "success", "95% CI", "prot. stops"]
    if robots is not None:
        header.insert(1, "robot")
    table = [header]
    prev_of: dict[str, RoundMetrics] = {}
    for i, m in enumerate(rows):
        robot = robots[i] if robots is not None else ""
        p = prev_of.get(robot)
        table.append([
            f"r{m.round:03d}",
            *([robot or "-"] if robots is not None else []),
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
            str(m.protective_stops),
        ])
        prev_of[robot] = m
    first_number = 1 if robots is None else 2  # round (and robot) left-aligned, figures right
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return ["  ".join(c.rjust(widths[i]) if i >= first_number else c.ljust(widths[i])
                      for i, c in enumerate(r)).rstrip() for r in table]
