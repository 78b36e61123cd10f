"""`takeover bench supervision`: human-gated against robot-gated supervision of one policy.

The same model drives the same held-out seeds twice on the lockstep simulator
(`takeover drive --driver operator-sim --fast`), once per [supervision] mode:

- human: the simulated operator watches every AUTO moment and takes over when the robot strays
  (today's DAgger);
- robot: the robot asks for help when unsure or at risk (control/help.py: novelty above the
  model card's threshold, blocked, no progress) and holds still; the simulated operator looks
  only then, after its reaction time (`[supervision] operator_reaction_s`), and corrects or
  hands back (inputs/operator_sim.py).

Per mode: episodes, successes and the success rate with its 95 % Wilson interval; the
operator's `attention_s` (the seconds it had to watch or drive: in human mode the whole engaged
time, in robot mode from each request to its answer plus its driving) and `driving_s`; the
help requests, the false alarms (requests answered by handing back) and the missed failures
(failed episodes with no request in their last 5 s; in human mode, with no requests at all,
every failure). `paired` compares the two modes seed by seed (exact McNemar,
dagger/stats.py). The counting is dagger/metrics.py's, as `drive --json` and the round metrics
count.

`--policy PATH` measures that ONNX model (with `--workspace`, that workspace's takeover.toml:
its camera, [safety], [supervision]); `--quick` records two demonstrations and trains a tiny
ensemble (the tiny preset of bench dagger) in seconds, then runs two episodes per mode: a smoke
test of the plumbing, not a measurement.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from takeover.bench.workspaces import ProgressLog, bench_workspace
from takeover.dagger.evaluate import DEFAULT_EVAL_SEED
from takeover.dagger.metrics import episode_help_counts, wilson_interval
from takeover.dagger.presets import PRESETS
from takeover.dagger.stats import mcnemar_exact
from takeover.errors import UsageError
from takeover.session.drive import DriveRequest, run_drive

#: The two arms, in the order they run and print.
MODES = ("human", "robot")
DEFAULT_EPISODES = 100
# The seed the demonstrations of --quick start at (the evaluation seeds start at 5000).
QUICK_DEMO_SEED = 1000
_TINY = PRESETS["tiny"]


@dataclass(frozen=True)
class SupervisionSettings:
    """What `bench supervision` runs. policy None: --quick trains its own tiny model."""

    policy: Path | None = None
    workspace: Path | None = None  # its takeover.toml: camera, [safety], [supervision]
    episodes: int = DEFAULT_EPISODES
    seed: int = DEFAULT_EVAL_SEED
    max_steps: int = 1200
    quick: bool = False

    def validate(self) -> None:
        check_model_options("bench supervision", self.policy, self.workspace, self.quick)
        if self.episodes < 1:
            raise UsageError(f"--episodes {self.episodes}: must be at least 1")
        check_run_options(self.seed, self.max_steps)


def check_model_options(bench: str, policy: Path | None, workspace: Path | None,
                        quick: bool) -> None:
    """What the benches of the simulated operator (this one, bench fleet) need of their model:
    a policy file, or --quick; a workspace, if given, with its takeover.toml. One line each."""
    if policy is None and not quick:
        raise UsageError(f"{bench} needs --policy PATH (an ONNX model), or --quick to train a "
                         "tiny one")
    if policy is not None and not policy.is_file():
        raise UsageError(f"--policy {policy}: no such file")
    if workspace is not None and not (workspace / "takeover.toml").is_file():
        raise UsageError(f"--workspace {workspace}: no takeover.toml there")


def check_run_options(seed: int, max_steps: int) -> None:
    if max_steps < 1:
        raise UsageError(f"--max-steps {max_steps}: must be at least 1")
    if seed < 0:
        raise UsageError(f"--seed {seed}: must be 0 or more")


def supervision_settings(*, quick: bool = False, episodes: int | None = None,
                         max_steps: int | None = None, **given: Any) -> SupervisionSettings:
    """Settings from the command line: the defaults (with `quick`: 2 episodes of the tiny
    preset's length), then each option given (not None); checked."""
    base: dict[str, Any] = {"episodes": 2, "max_steps": _TINY.max_steps} if quick else {}
    if episodes is not None:
        base["episodes"] = episodes
    if max_steps is not None:
        base["max_steps"] = max_steps
    settings = SupervisionSettings(quick=quick, **base,
                                   **{k: v for k, v in given.items() if v is not None})
    settings.validate()
    return settings


def arm_summary(drive: dict[str, Any]) -> dict[str, Any]:
    """One mode's figures from its `drive --json` summary (with the help fields)."""
    n, ok = int(drive["episodes"]), int(drive["successes"])
    low, high = wilson_interval(ok, n)
    return {
        "episodes": n, "successes": ok, "success_rate": round(ok / n, 4) if n else None,
        "ci_low": round(low, 4), "ci_high": round(high, 4),
        "attention_s": drive["attention_s"], "driving_s": drive["driving_s"],
        "requests": drive["requests"], "robot_gated": drive["robot_gated"],
        "human_gated": drive["human_gated"], "false_alarms": drive["false_alarms"],
        "failures": sum(r["outcome"] == "failure" for r in drive["per_episode"]),
        "missed_failures": drive["missed_failures"], "retries": drive.get("retries", 0),
        "interventions": sum(int(r["interventions"]) for r in drive["per_episode"]),
        "per_episode": [{"seed": r["seed"], "outcome": r["outcome"], "requests": r["requests"],
                         "attention_s": r["attention_s"]} for r in drive["per_episode"]],
    }


def paired(human: dict[str, Any], robot: dict[str, Any]) -> dict[str, Any]:
    """Seed by seed: docked under one mode only, and the exact McNemar p-value."""
    h = {r["seed"]: r["outcome"] == "success" for r in human["per_episode"]}
    r_ = {r["seed"]: r["outcome"] == "success" for r in robot["per_episode"]}
    seeds = sorted(h.keys() & r_.keys())
    only_h = sum(h[s] and not r_[s] for s in seeds)
    only_r = sum(r_[s] and not h[s] for s in seeds)
    return {"episodes": len(seeds), "only_human": only_h, "only_robot": only_r,
            "p_value": round(mcnemar_exact(only_h, only_r), 4)}


def run_supervision_bench(settings: SupervisionSettings,
                          progress: TextIO | None = None) -> dict[str, Any]:
    """Both arms on the same model and seeds; the `--json` object (`human`, `robot`,
    `paired`, `settings`, `model`, `wall_s`)."""
    settings.validate()
    log = ProgressLog(progress)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="takeover-bench-supervision-") as tmp:
        workspace, policy = settings.workspace, settings.policy
        if policy is None:
            workspace, policy = quick_model(Path(tmp), log)
        result: dict[str, Any] = {}
        last = settings.seed + settings.episodes - 1
        for mode in MODES:
            log(f"{mode}-gated: {settings.episodes} episodes on seeds {settings.seed}..{last}")
            drive = run_drive(DriveRequest(
                robot_url="sim://", driver="operator-sim", episodes=settings.episodes,
                seed=settings.seed, workspace=workspace, policy=policy, fast=True,
                max_steps=settings.max_steps, supervision=mode), progress=progress,
                count_help=episode_help_counts)
            result[mode] = arm_summary(drive)
            result.setdefault("model", drive.get("policy", {}).get("model_id", ""))
            log(line(mode, result[mode]))
    result["paired"] = paired(result["human"], result["robot"])
    result["settings"] = {**{k: (str(v) if isinstance(v, Path) else v)
                             for k, v in asdict(settings).items()},
                          "seeds": [settings.seed, last]}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def quick_model(tmp: Path, log: ProgressLog) -> tuple[Path, Path]:
    """--quick: two demonstrations and a tiny ensemble (bench dagger's tiny preset), in a
    workspace whose camera matches it; (that workspace, the model's ONNX file)."""
    from takeover.policy.build import train_workspace  # torch: only for --quick
    from takeover.policy.model import ModelConfig
    from takeover.policy.settings import apply_overrides
    from takeover.policy.train import TrainConfig

    ws = bench_workspace(tmp / "ws", _TINY.camera_hw)
    log("quick: recording 2 demonstrations and training a tiny ensemble (not a measurement)")
    run_drive(DriveRequest(robot_url="sim://", driver="expert", episodes=2, seed=QUICK_DEMO_SEED,
                           workspace=ws, record=True, fast=True, max_steps=_TINY.max_steps,
                           demo_noise_w_radps=0.3))
    model_config, train_config = apply_overrides(
        ModelConfig(), TrainConfig(),
        {**_TINY.model_overrides, "epochs": 1, "batch_size": _TINY.batch_size, "threads": 1},
        "bench supervision --quick")
    card = train_workspace(ws, model_config, train_config, deploy=True)
    return ws, ws / "models" / card["model_id"] / "policy.onnx"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def line(mode: str, arm: dict[str, Any]) -> str:
    attention = arm["attention_s"]
    return (f"{mode}-gated: {arm['successes']}/{arm['episodes']} docked "
            f"({_pct(arm['success_rate'])}, 95% CI {_pct(arm['ci_low'])}-{_pct(arm['ci_high'])}); "
            f"attention {'-' if attention is None else f'{attention:.0f}'} s, driving "
            f"{arm['driving_s']:.0f} s; {arm['requests']} requests, {arm['false_alarms']} false "
            f"alarms; {arm['missed_failures']} of {arm['failures']} failures missed; "
            f"{arm['retries']} retries by the robot itself")


def table_lines(result: dict[str, Any]) -> list[str]:
    """The result as a person reads it."""
    quick = " (quick: tiny model, not a measurement)" if result["settings"]["quick"] else ""
    h, r = result["human"], result["robot"]
    lines = [f"bench supervision{quick}: model {result['model']}, seeds "
             f"{result['settings']['seeds'][0]}..{result['settings']['seeds'][1]}",
             line("human", h), line("robot", r)]
    if h["attention_s"] and r["attention_s"] is not None:
        lines.append(f"robot/human attention: {r['attention_s'] / h['attention_s']:.2f}")
    p = result["paired"]
    lines.append(f"paired: docked only under human {p['only_human']}, only under robot "
                 f"{p['only_robot']}; exact McNemar p = {p['p_value']}")
    return lines
