"""`takeover bench fleet`: one simulated operator, N robots: return on human effort (ROHE).

For each number of robots N (`--robots 1,2,4,8`) and each supervision mode (`--supervision
human,robot`), the same E episodes on the same held-out seeds (DEFAULT_EVAL_SEED onward,
spread over the N robots in contiguous blocks) run as `takeover drive --driver operator-sim
--robots N --fast` (session/fleet_drive.py): N lockstep simulators and ONE simulated operator
who attends to one robot at a time, on duty for the whole run. Per row:

- `episodes`, `successes`, `success_rate` with its 95 % Wilson interval (`ci_low`, `ci_high`):
  the same seeds for every N, so the rates compare;
- `operator_min`: the run's length in simulated minutes, from the first tick to the last
  robot's last attempt; the operator is on duty throughout (Fleet-DAgger's human time);
- `attention_min`: the minutes the operator actually looked (answered a request, drove, or
  watched: inputs/operator_sim.py's `attention_s`, summed over the robots);
- `rohe`: successes / operator_min (Fleet-DAgger's return on human effort, with effort the
  time on duty), and `successes_per_hour`; `rohe_ratio`: rohe over the N = 1 row of the same
  mode (null without one);
- `idle_frac`: the fraction of robot time spent waiting: asking for help (held still, queued
  or in the operator's reaction) or, human-gated, waiting for the operator's watch.

Human-gated, the operator can watch one robot at a time and the others wait: the honest
baseline, whose ROHE cannot grow with N. Robot-gated, the robots drive on their own and only
those that ask wait: ROHE grows with N until the operator is saturated (idle_frac rises).

`--policy PATH` measures that ONNX model (with `--workspace`, that workspace's takeover.toml);
`--quick` trains the tiny model of `bench supervision --quick` and runs 2 short episodes per N
(N = 1, 2): a smoke test of the plumbing, not a measurement.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from takeover.bench.supervision import (  # one tiny model and one set of checks for both
    check_model_options,
    check_run_options,
    quick_model,
)
from takeover.bench.workspaces import ProgressLog
from takeover.dagger.evaluate import DEFAULT_EVAL_SEED
from takeover.dagger.metrics import episode_help_counts, wilson_interval
from takeover.dagger.presets import PRESETS
from takeover.errors import UsageError
from takeover.session.drive import DriveRequest
from takeover.session.fleet_drive import FLEET_SUPERVISION, MAX_ROBOTS, FleetRun, run_fleet_drive

DEFAULT_ROBOTS = (1, 2, 4, 8)
DEFAULT_EPISODES = 40
QUICK_ROBOTS = (1, 2)
_TINY = PRESETS["tiny"]


@dataclass(frozen=True)
class FleetSettings:
    """What `bench fleet` runs. policy None: --quick trains its own tiny model."""

    robots: tuple[int, ...] = DEFAULT_ROBOTS
    supervision: tuple[str, ...] = ("human", "robot")
    policy: Path | None = None
    workspace: Path | None = None
    episodes: int = DEFAULT_EPISODES
    seed: int = DEFAULT_EVAL_SEED
    max_steps: int = 1200
    quick: bool = False

    def validate(self) -> None:
        check_model_options("bench fleet", self.policy, self.workspace, self.quick)
        if not self.robots or any(not 1 <= n <= MAX_ROBOTS for n in self.robots):
            raise UsageError(f"--robots {','.join(map(str, self.robots))}: each between 1 and "
                             f"{MAX_ROBOTS}")
        if not self.supervision or any(m not in FLEET_SUPERVISION for m in self.supervision):
            raise UsageError(f"--supervision {','.join(self.supervision)}: use "
                             f"{' and/or '.join(FLEET_SUPERVISION)}")
        if self.episodes < max(self.robots):
            raise UsageError(f"--episodes {self.episodes}: at least one per robot (up to "
                             f"{max(self.robots)} robots)")
        check_run_options(self.seed, self.max_steps)


def parse_list(flag: str, text: str, kind: type) -> tuple[Any, ...]:
    """A comma-separated option (`--robots 1,2,4`), one clear line when malformed."""
    try:
        items = tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{flag} {text}: give a comma-separated list, e.g. "
                         f"{'1,2,4,8' if kind is int else 'human,robot'}") from None
    if not items:
        raise UsageError(f"{flag}: give at least one value")
    return tuple(dict.fromkeys(items))  # each once, in the order given


def fleet_settings(*, quick: bool = False, robots: str | None = None,
                   supervision: str | None = None, episodes: int | None = None,
                   max_steps: int | None = None, **given: Any) -> FleetSettings:
    """Settings from the command line: the defaults (with `quick`: N = 1, 2, 2 episodes of the
    tiny preset's length), then each option given (not None); checked."""
    base: dict[str, Any] = ({"robots": QUICK_ROBOTS, "episodes": 2,
                             "max_steps": _TINY.max_steps} if quick else {})
    if robots is not None:
        base["robots"] = parse_list("--robots", robots, int)
    if supervision is not None:
        base["supervision"] = parse_list("--supervision", supervision, str)
    if episodes is not None:
        base["episodes"] = episodes
    if max_steps is not None:
        base["max_steps"] = max_steps
    settings = FleetSettings(quick=quick, **base,
                             **{k: v for k, v in given.items() if v is not None})
    settings.validate()
    return settings


def _finite(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, digits)


def fleet_row(robots: int, supervision: str, drive: dict[str, Any]) -> dict[str, Any]:
    """One (N, mode) row from its fleet `drive --json` summary (rohe_ratio filled later)."""
    n, ok = int(drive["episodes"]), int(drive["successes"])
    low, high = wilson_interval(ok, n)
    operator = drive["operator"]
    on_duty_min = operator["on_duty_s"] / 60.0
    attention = operator["attention_s"]
    rohe = ok / on_duty_min if on_duty_min > 0 else None
    return {
        "robots": robots, "supervision": supervision, "episodes": n, "successes": ok,
        "success_rate": _finite(ok / n if n else None), "ci_low": _finite(low),
        "ci_high": _finite(high), "operator_min": _finite(on_duty_min, 3),
        "attention_min": None if attention is None else _finite(attention / 60.0, 3),
        "rohe": _finite(rohe), "rohe_ratio": None,
        "successes_per_hour": _finite(None if rohe is None else 60.0 * rohe, 1),
        "idle_frac": _finite(drive["idle_frac"]),
        "requests": drive.get("requests"), "driving_min": _finite(
            None if operator["driving_s"] is None else operator["driving_s"] / 60.0, 3),
        "wall_s": drive["wall_s"],
    }


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rohe_ratio: each row's rohe over the one-robot row of its mode (null without one)."""
    one = {r["supervision"]: r["rohe"] for r in rows if r["robots"] == 1}
    for r in rows:
        base = one.get(r["supervision"])
        r["rohe_ratio"] = (_finite(r["rohe"] / base, 3)
                           if base and r["rohe"] is not None else None)
    return rows


def run_fleet_bench(settings: FleetSettings, progress: TextIO | None = None) -> dict[str, Any]:
    """Every (mode, N) on the same model and seeds; the `--json` object (`rows`, `model`,
    `settings`, `wall_s`)."""
    settings.validate()
    log = ProgressLog(progress)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    model = ""
    with tempfile.TemporaryDirectory(prefix="takeover-bench-fleet-") as tmp:
        workspace, policy = settings.workspace, settings.policy
        if policy is None:
            workspace, policy = quick_model(Path(tmp), log)
        last = settings.seed + settings.episodes - 1
        for mode in settings.supervision:
            for n in settings.robots:
                log(f"{mode}-gated, {n} robot(s), one operator: {settings.episodes} episodes on "
                    f"seeds {settings.seed}..{last}")
                drive = run_fleet_drive(DriveRequest(
                    robot_url="sim://", driver="operator-sim", episodes=settings.episodes,
                    seed=settings.seed, workspace=workspace, policy=policy, fast=True,
                    max_steps=settings.max_steps, supervision=mode), FleetRun(robots=n),
                    count_help=episode_help_counts)
                model = model or drive.get("policy", {}).get("model_id", "")
                rows.append(fleet_row(n, mode, drive))
                log(row_line(rows[-1]))
    return {
        "rows": with_ratios(rows),
        "model": model,
        "settings": {**{k: (str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(settings).items()},
                     "seeds": [settings.seed, settings.seed + settings.episodes - 1]},
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def _f(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def row_line(r: dict[str, Any]) -> str:
    return (f"{r['supervision']:>5}  N={r['robots']:<2}  {r['successes']:>3}/{r['episodes']:<3} "
            f"{_pct(r['success_rate'])} [{_pct(r['ci_low'])}-{_pct(r['ci_high'])}]  "
            f"on duty {_f(r['operator_min'], '6.2f')} min  attention "
            f"{_f(r['attention_min'], '5.2f')} min  ROHE {_f(r['rohe'], '5.2f')}/min "
            f"(x{_f(r['rohe_ratio'], '.2f')})  idle {_f(r['idle_frac'], '.2f')}")


def table_lines(result: dict[str, Any]) -> list[str]:
    """The result as a person reads it."""
    s = result["settings"]
    quick = " (quick: tiny model, not a measurement)" if s["quick"] else ""
    lines = [f"bench fleet{quick}: model {result['model']}, seeds {s['seeds'][0]}..{s['seeds'][1]}"
             f", one simulated operator; ROHE = successes per minute on duty"]
    lines += [row_line(r) for r in result["rows"]]
    return lines
