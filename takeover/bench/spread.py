"""`takeover bench spread`: how much behavioural cloning's held-out success depends on which rooms
were demonstrated and on the training seed.

One BC result is one draw: 40 DART demonstrations from seeds 1000.. docked 83/100 held-out
rooms, the same recipe on seeds 2000.. 74/100 and on 3000.. 64/100 (issue 21). This benchmark
makes that spread the figure:

1. For each demonstration set (its first seed `s`): the scripted expert records `demos`
   demonstrations on seeds s..s+demos-1 with DART turn-rate noise (`drive --driver expert
   --record --fast --demo-noise`), once.
2. For each training seed: a workspace linking that set's demonstrations, one model trained from
   scratch (`takeover train` with its defaults and the given overrides, `--seed`), evaluated
   alone on the held-out seeds eval_seed..eval_seed+episodes-1 (`dagger eval`), the same seeds
   for every model.
3. One row per (set, training seed) with its 95% Wilson interval; the mean and minimum per set;
   the mean, minimum (which set and seed), maximum and spread (max - min) over all rows; and the
   two parts of the spread: between sets (the range of the per-set means) and within a set (the
   largest range over training seeds on the same data).

The sets must not overlap one another or the evaluation seeds (checked before any work).
Everything runs in this process through the package's APIs (the functions the CLI commands
call), as `bench dagger` does. Progress lines go to `progress` (stderr).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from takeover.bench.workspaces import ProgressLog, bench_workspace, link_or_copy
from takeover.config import DemonstrationConfig
from takeover.dagger.evaluate import DEFAULT_EVAL_EPISODES, DEFAULT_EVAL_SEED, evaluate_model
from takeover.dagger.parallel import check_jobs
from takeover.dagger.presets import PRESETS
from takeover.errors import ConfigError, UsageError
from takeover.policy.build import train_workspace
from takeover.policy.model import ModelConfig
from takeover.policy.settings import apply_overrides
from takeover.policy.train import TrainConfig
from takeover.recorder.store import EpisodeStore
from takeover.session.drive import DriveRequest, run_drive
from takeover.workspace.atomic import atomic_write_bytes

RESULT_JSON = "bench_spread.json"
WORK_MARKER = ".bench-spread"  # in work/: the folder is this benchmark's, safe to clear

DEFAULT_SETS = (1000, 2000, 3000)  # the three sets of issue 21 (docs/evaluation.md)
DEFAULT_DEMOS = 40
DEFAULT_DEMO_NOISE = 0.3  # rad/s: the recipe docs/policy.md recommends
DEFAULT_TRAIN_SEEDS = (0, 1)

# --quick: the plumbing on a tiny model in well under a minute on two cores; not a measurement.
# The network, frame size, batch and episode length are those of bench dagger's tiny preset.
_TINY = PRESETS["tiny"]
QUICK = {"sets": DEFAULT_SETS[:2], "demos": 2, "epochs": 1, "episodes": 2,
         "max_steps": _TINY.max_steps, "camera_hw": _TINY.camera_hw,
         "model_overrides": _TINY.model_overrides,
         "train_overrides": {"batch_size": _TINY.batch_size}}


@dataclass(frozen=True)
class SpreadSettings:
    """What `bench spread` runs. `epochs` None: `takeover train`'s default. `train_overrides`:
    TrainConfig/ModelConfig keys as `takeover train`'s flags set them (augment, lr, ...);
    `model_overrides`: ModelConfig fields (the quick preset's tiny network)."""

    sets: tuple[int, ...] = DEFAULT_SETS
    demos: int = DEFAULT_DEMOS
    demo_noise: float = DEFAULT_DEMO_NOISE
    train_seeds: tuple[int, ...] = DEFAULT_TRAIN_SEEDS
    episodes: int = DEFAULT_EVAL_EPISODES
    eval_seed: int = DEFAULT_EVAL_SEED
    epochs: int | None = None
    max_steps: int = 1200
    camera_hw: int = 96
    jobs: int | None = None  # evaluation processes (None: one per core)
    quick: bool = False
    train_overrides: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """UsageError (one line naming the option) for settings that cannot give a measurement:
        no sets, sets overlapping one another or the evaluation seeds, empty budgets."""
        if not self.sets:
            raise UsageError("--sets: give at least one first demonstration seed, e.g. 1000,2000")
        if not self.train_seeds:
            raise UsageError("--train-seeds: give at least one training seed, e.g. 0,1")
        for flag, values in (("--sets", self.sets), ("--train-seeds", self.train_seeds)):
            if len(set(values)) != len(values):
                raise UsageError(f"{flag} {_join(values)}: a value is repeated")
            if min(values) < 0:
                raise UsageError(f"{flag} {_join(values)}: seeds must be 0 or more")
        for flag, value in (("--demos", self.demos), ("--episodes", self.episodes),
                            ("--epochs", self.epochs), ("--max-steps", self.max_steps)):
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        for key, flag in (("batch_size", "--batch-size"), ("threads", "--threads")):
            value = self.train_overrides.get(key)
            if value is not None and value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        lr = self.train_overrides.get("lr")
        if lr is not None and not 0.0 < lr <= 1.0:
            raise UsageError(f"--lr {lr}: must be above 0 and at most 1")
        if self.eval_seed < 0:
            raise UsageError(f"--eval-seed {self.eval_seed}: must be 0 or more")
        check_jobs(self.jobs)
        try:
            DemonstrationConfig(noise_w_radps=self.demo_noise).check()
        except ConfigError:
            raise UsageError(f"--demo-noise {self.demo_noise}: must be within 0..1 rad/s "
                             "(0: clean demonstrations)") from None
        ordered = sorted(self.sets)
        for a, b in itertools.pairwise(ordered):
            if a + self.demos > b:
                raise UsageError(f"--sets {_join(self.sets)} with --demos {self.demos}: sets "
                                 f"{_range(a, self.demos)} and {_range(b, self.demos)} overlap; "
                                 "space the first seeds at least --demos apart")
        held_out = range(self.eval_seed, self.eval_seed + self.episodes)
        for s in ordered:
            if s < held_out.stop and held_out.start < s + self.demos:
                raise UsageError(f"--eval-seed {self.eval_seed} with --episodes {self.episodes}: "
                                 f"the held-out seeds {_range(self.eval_seed, self.episodes)} "
                                 f"overlap set {_range(s, self.demos)}; choose seeds apart")

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sets"], out["train_seeds"] = list(self.sets), list(self.train_seeds)
        out["eval_seeds"] = [self.eval_seed, self.eval_seed + self.episodes - 1]
        return out


def _join(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _range(first: int, count: int) -> str:
    return f"{first}..{first + count - 1}"


def parse_seed_list(text: str, flag: str) -> tuple[int, ...]:
    """`1000,2000,3000` -> (1000, 2000, 3000) in the given order; UsageError naming `flag` for
    anything else (an empty list included)."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(int(p) for p in parts if p)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected whole numbers like 1000,2000,3000") from None
    if not values:
        raise UsageError(f"{flag} {text!r}: give at least one value, e.g. 1000,2000")
    return values


def spread_settings(*, quick: bool = False, **given: Any) -> SpreadSettings:
    """Settings from the command line: the defaults (or, `quick`, the tiny preset's), then each
    option that was given (not None); checked."""
    base: dict[str, Any] = dict(QUICK) if quick else {}
    given_train = {k: v for k, v in (given.pop("train_overrides", None) or {}).items()
                   if v is not None}
    train_overrides = {**base.pop("train_overrides", {}), **given_train}
    values = {**base, **{k: v for k, v in given.items() if v is not None}}
    settings = SpreadSettings(quick=quick, train_overrides=train_overrides, **values)
    settings.validate()
    return settings


def _training_configs(settings: SpreadSettings, device: str) -> tuple[ModelConfig, TrainConfig]:
    """`takeover train`'s defaults with the benchmark's overrides (checked as that command
    checks its flags)."""
    overrides: dict[str, Any] = {**settings.model_overrides, **settings.train_overrides,
                                 "epochs": settings.epochs, "device": device}
    return apply_overrides(ModelConfig(), TrainConfig(), overrides, "bench spread")


def _prepare_workdir(workdir: Path | None) -> tuple[Path, Path, bool]:
    """(output folder, its work/ folder for the workspaces, whether to keep them)."""
    keep = workdir is not None
    out = workdir.expanduser() if workdir is not None else Path(
        tempfile.mkdtemp(prefix="takeover-bench-spread-"))
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    if work.exists():
        if not (work / WORK_MARKER).exists():
            raise UsageError(f"--workdir {out}: {work} exists and is not from a previous bench "
                             "spread run; choose another --workdir")
        shutil.rmtree(work)  # a previous run's workspaces: the measurement starts clean
    work.mkdir()
    (work / WORK_MARKER).touch()
    return out, work, keep


def run_spread_bench(settings: SpreadSettings, workdir: Path | None = None,
                     device: str = "auto", progress: TextIO | None = None) -> dict[str, Any]:
    """Record each set, train one model per (set, training seed), evaluate each on the same
    held-out seeds; write bench_spread.json into the work folder and return it (the
    `--json` object: `rows`, `by_set`, `mean_rate`, `min_rate`, `max_rate`, `spread`, `worst`,
    `settings`). Without `workdir`, a temporary folder whose workspaces are removed at the end
    (the JSON stays)."""
    settings.validate()
    model_config, train_config = _training_configs(settings, device)
    log = ProgressLog(progress)
    t_start = time.perf_counter()
    out, work, keep = _prepare_workdir(workdir)
    rows: list[dict[str, Any]] = []
    demos_docked: dict[int, int] = {}
    noise = (f"DART turn-rate noise {settings.demo_noise} rad/s" if settings.demo_noise
             else "no demonstration noise")
    eval_range = _range(settings.eval_seed, settings.episodes)
    quick = " (quick: tiny model, not a measurement)" if settings.quick else ""
    log(f"{len(settings.sets)} sets x {settings.demos} demonstrations x "
        f"{len(settings.train_seeds)} training seeds, {_epochs(train_config.epochs)}, each "
        f"model on seeds {eval_range}{quick}; workspaces in {work}")
    try:
        for first in settings.sets:
            set_dir = work / f"set_{first}"
            demos = bench_workspace(set_dir / "demos", settings.camera_hw)
            log(f"set {first}: recording {settings.demos} expert demonstrations (seeds "
                f"{_range(first, settings.demos)}, {noise})")
            drive = run_drive(DriveRequest(
                robot_url="sim://", driver="expert", episodes=settings.demos, seed=first,
                workspace=demos, record=True, fast=True, max_steps=settings.max_steps,
                demo_noise_w_radps=settings.demo_noise))
            demos_docked[first] = int(drive["successes"])
            demo_files = EpisodeStore(demos).episode_paths(0)
            for train_seed in settings.train_seeds:
                rows.append(_train_and_evaluate(settings, set_dir, first, train_seed, demo_files,
                                                model_config, replace(train_config,
                                                                      seed=train_seed), log))
        result = spread_result(rows, demos_docked)
        result["settings"] = {**settings.as_json(), "epochs": train_config.epochs,
                              "device": device, "workdir": str(out), "kept_workspaces": keep}
        result["wall_s"] = round(time.perf_counter() - t_start, 1)
        result["date"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        result["file"] = str(out / RESULT_JSON)
        # allow_nan=False: the file holds what `--json` prints (never NaN; DESIGN.md)
        atomic_write_bytes(out / RESULT_JSON, (json.dumps(result, allow_nan=False) + "\n").encode())
    finally:
        if not keep:  # a temporary folder: the workspaces are large, the JSON is what is kept
            shutil.rmtree(work if (out / RESULT_JSON).exists() else out, ignore_errors=True)
    log(f"done in {result['wall_s']:.0f} s: {result['file']}")
    return result


def _train_and_evaluate(settings: SpreadSettings, set_dir: Path, first: int, train_seed: int,
                        demo_files: list[Path], model_config: ModelConfig,
                        train_config: TrainConfig, log: ProgressLog) -> dict[str, Any]:
    name = f"set {first}, training seed {train_seed}"
    ws = bench_workspace(set_dir / f"seed_{train_seed}", settings.camera_hw)
    rounds = ws / "rounds" / "r000"
    rounds.mkdir(parents=True, exist_ok=True)
    for f in demo_files:
        link_or_copy(str(f), str(rounds / f.name))
    log(f"{name}: training ({_epochs(train_config.epochs)})")
    card = train_workspace(ws, model_config, train_config, deploy=True)
    log(f"{name}: evaluating on seeds {_range(settings.eval_seed, settings.episodes)}")
    ev = evaluate_model(ws, card["model_id"], episodes=settings.episodes,
                        seed=settings.eval_seed, max_steps=settings.max_steps,
                        jobs=settings.jobs)
    row = {"set": first, "train_seed": train_seed, "demos": card["data"]["episodes"],
           "samples": card["data"]["samples"], "episodes": ev["episodes"],
           "successes": ev["successes"], "success_rate": ev["success_rate"],
           "ci_low": ev["ci_low"], "ci_high": ev["ci_high"],
           "train_s": card["training"]["wall_s"]}
    log(f"{name}: {row['successes']}/{row['episodes']} docked ({_pct(row['success_rate'])}, 95% "
        f"CI {_pct(row['ci_low'])}-{_pct(row['ci_high'])}), trained in {row['train_s']:.0f} s")
    return row


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4)


def spread_result(rows: list[dict[str, Any]],
                  demos_docked: dict[int, int] | None = None) -> dict[str, Any]:
    """The figures read off the rows: per set the mean and minimum over training seeds; over
    all rows the mean, minimum (`worst`: its set and seed), maximum and `spread` (max - min);
    `set_spread`, the range of the per-set means (what the choice of rooms moves), and
    `seed_spread`, the largest range over training seeds within one set (what the seed alone
    moves). Every row counts once."""
    if not rows:
        raise ValueError("no rows")
    by_set: list[dict[str, Any]] = []
    for first in dict.fromkeys(r["set"] for r in rows):  # in the order the sets were given
        mine = [r for r in rows if r["set"] == first]
        rates = [r["success_rate"] for r in mine]
        entry: dict[str, Any] = {
            "set": first, "mean_rate": _mean(rates), "min_rate": min(rates),
            "max_rate": max(rates), "successes": sum(r["successes"] for r in mine),
            "episodes": sum(r["episodes"] for r in mine)}
        if demos_docked is not None and first in demos_docked:
            entry["demos_docked"] = demos_docked[first]
        by_set.append(entry)
    rates = [r["success_rate"] for r in rows]
    worst = min(rows, key=lambda r: r["success_rate"])
    best = max(rows, key=lambda r: r["success_rate"])
    set_means = [s["mean_rate"] for s in by_set]
    return {
        "rows": rows,
        "by_set": by_set,
        "mean_rate": _mean(rates),
        "min_rate": worst["success_rate"],
        "max_rate": best["success_rate"],
        "spread": round(best["success_rate"] - worst["success_rate"], 4),
        "worst": {"set": worst["set"], "train_seed": worst["train_seed"]},
        "best": {"set": best["set"], "train_seed": best["train_seed"]},
        "set_spread": round(max(set_means) - min(set_means), 4),
        "seed_spread": max(round(s["max_rate"] - s["min_rate"], 4) for s in by_set),
    }


def _pct(rate: float) -> str:
    return f"{100 * rate:.0f}%"


def table_lines(result: dict[str, Any]) -> list[str]:
    """The result as a person reads it: one row per model, the per-set means, the summary."""
    s = result["settings"]
    seeds = s["eval_seeds"]
    lines = [f"bench spread{' (quick: tiny model, not a measurement)' if s['quick'] else ''}: "
             f"{s['demos']} demonstrations per set (DART {s['demo_noise']} rad/s), "
             f"{_epochs(s['epochs'])}; every model alone on seeds {seeds[0]}..{seeds[1]}", "",
             f"{'set':>6} {'seed':>5} {'demos':>6} {'samples':>8} {'docked':>9} {'rate':>5} "
             f"{'95% CI':>9} {'train':>7}"]
    for r in result["rows"]:
        docked = f"{r['successes']}/{r['episodes']}"
        ci = f"{_pct(r['ci_low'])}-{_pct(r['ci_high'])}"
        lines.append(f"{r['set']:>6} {r['train_seed']:>5} {r['demos']:>6} {r['samples']:>8} "
                     f"{docked:>9} {_pct(r['success_rate']):>5} {ci:>9} {r['train_s']:>6.0f}s")
    lines.append("")
    for b in result["by_set"]:
        docked = f"; the expert docked {b['demos_docked']} of its demonstrations" \
            if "demos_docked" in b else ""
        lines.append(f"set {b['set']}: mean {_pct(b['mean_rate'])}, min {_pct(b['min_rate'])}, "
                     f"max {_pct(b['max_rate'])} over training seeds{docked}")
    worst, best = result["worst"], result["best"]
    lines += ["",
              f"mean {_pct(result['mean_rate'])}; min {_pct(result['min_rate'])} (set "
              f"{worst['set']}, seed {worst['train_seed']}); max {_pct(result['max_rate'])} (set "
              f"{best['set']}, seed {best['train_seed']}); spread "
              f"{100 * result['spread']:.0f} points",
              f"between sets (range of the set means) {100 * result['set_spread']:.0f} points; "
              f"within a set (largest range over training seeds) "
              f"{100 * result['seed_spread']:.0f} points",
              f"written to {result['file']}"]
    return lines
