"""Budgets of `takeover bench dagger`, as data. No torch here (the CLI parser reads them).

Seeds: demonstrations from `demo_seed`, DAgger round k's supervised episodes from
`round_seed + 100 * k`, evaluation from `eval_seed`: the three ranges never overlap for the
budgets below, so every evaluation is on rooms no model trained in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from takeover.config import DAGGER_RETRAINS, WEIGHTINGS
from takeover.errors import UsageError


@dataclass(frozen=True)
class DaggerBenchPreset:
    name: str
    bc_demos: tuple[int, ...]  # behavioural cloning: one model per demonstration count
    initial_demos: int  # DAgger round r000 (the BC model on this many demos is DAgger's r001)
    rounds: int  # DAgger models r001..rN; each runs one supervised round
    round_episodes: int  # supervised (operator-sim) episodes per round
    epochs: int  # training from scratch (BC, and DAgger's r001)
    warm_epochs: int  # DAgger retraining, warm-started from the previous model
    eval_episodes: int  # held-out seeds per model, the same seeds for every model
    max_steps: int = 1200  # per episode (60 s at 20 Hz), demonstrations and evaluation alike
    camera_hw: int = 96
    batch_size: int | None = None  # None: TrainConfig's default
    model_overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    demo_noise: float = 0.0  # DART turn-rate noise (rad/s) while the expert demonstrates
    # DAgger retraining's OneCycle peak and intervention weighting: by default those of
    # `takeover dagger train` (policy/settings.py DEFAULT_WARM_LR, DEFAULT_WARM_WEIGHTING).
    warm_lr: float = 5e-4
    dagger_weighting: str = "iwr"  # none | iwr | sirius (TrainConfig.weighting)
    # How DAgger's r(k+1) is trained: "warm" (warm-started from rk for warm_epochs at warm_lr,
    # with dagger_weighting), "scratch" (a new model on every round, `epochs` at the
    # from-scratch learning rate, unweighted, as BC) or "auto" (`dagger train`'s default:
    # scratch while epochs x labels fit the warm budget; policy/settings.py).
    dagger_retrain: str = "warm"
    demo_seed: int = 1000
    round_seed: int = 2000
    eval_seed: int = 5000
    # BC at equal labels: after the DAgger arm, BC on the fewest demonstrations whose expert
    # labels reach the last DAgger model's, and the two compared seed by seed (exact McNemar).
    # Up to `match_demos` demonstrations are recorded for it.
    bc_match: bool = False
    match_demos: int = 0
    # False: evaluate only DAgger's first and last models (the comparison needs no more).
    eval_every_model: bool = True
    note: str = ""

    def validate(self) -> None:
        if not self.bc_demos or min(self.bc_demos) < 1 or self.initial_demos < 1:
            raise UsageError("demonstration counts must be at least 1")
        for name in ("rounds", "round_episodes", "epochs", "warm_epochs", "eval_episodes",
                     "max_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"bench dagger: {name.replace('_', '-')} must be at least 1")
        if not 0.0 < self.warm_lr <= 1.0:
            raise UsageError(f"bench dagger: warm-lr {self.warm_lr}: must be above 0 and at "
                             "most 1")
        if self.dagger_retrain not in DAGGER_RETRAINS:
            raise UsageError(f"bench dagger: dagger-retrain {self.dagger_retrain!r}: use one of "
                             f"{', '.join(DAGGER_RETRAINS)}")
        if self.dagger_weighting not in WEIGHTINGS:
            raise UsageError(f"bench dagger: dagger-weighting {self.dagger_weighting!r}: use one "
                             f"of {', '.join(WEIGHTINGS)}")
        most = max(*self.bc_demos, self.initial_demos, self.match_demos)
        demos = range(self.demo_seed, self.demo_seed + most)
        rounds = range(self.round_seed + 100, self.round_seed + 100 * (self.rounds + 1))
        if (demos.start < rounds.stop and rounds.start < demos.stop) \
                or (demos.start < self.eval_seed + self.eval_episodes
                    and self.eval_seed < demos.stop):
            raise UsageError(f"bench dagger: demonstration seeds {demos.start}..{demos.stop - 1} "
                             f"overlap the round seeds ({rounds.start}..{rounds.stop - 1}) or the "
                             f"evaluation seeds ({self.eval_seed}..); choose another --demo-seed")
        if self.round_seed + 100 * (self.rounds + 1) > self.eval_seed or self.round_episodes > 100:
            raise UsageError("bench dagger: the budgets make the demonstration, round and "
                             "evaluation seed ranges overlap; use fewer episodes")


PRESETS: dict[str, DaggerBenchPreset] = {
    "full": DaggerBenchPreset(
        name="full", bc_demos=(10, 20, 40, 80), initial_demos=10, rounds=10, round_episodes=5,
        epochs=12, warm_epochs=4, eval_episodes=100, demo_noise=0.3,
        note="the real figures: 100 held-out seeds per model"),
    # The full preset's first six DAgger models and BC at their labels, every model on 50 seeds:
    # about ten minutes on two cores (docs/dagger.md, measured).
    "quick": DaggerBenchPreset(
        name="quick", bc_demos=(10,), initial_demos=10, rounds=6, round_episodes=5,
        epochs=12, warm_epochs=4, eval_episodes=50, demo_noise=0.3, bc_match=True,
        match_demos=30, eval_every_model=False,
        note="quick: DAgger r001-r006 against BC at equal expert labels, 50 held-out seeds "
        "each, compared seed by seed; one run, so it says whether this run tells them apart, "
        "not by how much in general (run without --quick for the curve)"),
    # For the tests: 48x48 frames, a tiny network, episodes cut short. Plumbing only.
    "tiny": DaggerBenchPreset(
        name="tiny", bc_demos=(2,), initial_demos=2, rounds=2, round_episodes=1,
        epochs=1, warm_epochs=1, eval_episodes=2, max_steps=40, camera_hw=48, batch_size=16,
        bc_match=True, match_demos=4,
        model_overrides={"backbone_args": {"channels": [8, 8, 8, 8], "stem_width": 8},
                         "chunk_size": 5, "image_channels": 8, "lidar_hidden": 32,
                         "lidar_features": 16, "head_hidden": 32},
        note="tiny: a test of the plumbing, not a measurement"),
}


def preset_for(name: str, bc_demos: str | None = None, initial_demos: int | None = None,
               rounds: int | None = None, round_episodes: int | None = None,
               epochs: int | None = None, warm_epochs: int | None = None,
               eval_episodes: int | None = None,
               demo_noise: float | None = None, warm_lr: float | None = None,
               dagger_weighting: str | None = None,
               demo_seed: int | None = None,
               dagger_retrain: str | None = None) -> DaggerBenchPreset:
    """A named preset with the command line's overrides applied (and checked)."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; use one of {', '.join(sorted(PRESETS))}")
    overrides: dict[str, Any] = {
        "initial_demos": initial_demos, "rounds": rounds, "round_episodes": round_episodes,
        "epochs": epochs, "warm_epochs": warm_epochs, "eval_episodes": eval_episodes,
        "demo_noise": demo_noise, "warm_lr": warm_lr, "dagger_weighting": dagger_weighting,
        "demo_seed": demo_seed, "dagger_retrain": dagger_retrain}
    if demo_seed is not None and demo_seed < 0:
        raise UsageError(f"--demo-seed {demo_seed}: must be 0 or more")
    if bc_demos is not None:
        try:
            overrides["bc_demos"] = tuple(sorted({int(n) for n in bc_demos.split(",") if n.strip()}))
        except ValueError:
            raise UsageError(f"--bc-demos {bc_demos!r}: expected counts like 10,20,40") from None
    preset = replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
    if any(v is not None for v in overrides.values()):
        preset = replace(preset, note=f"{preset.note} (with overrides)")
    preset.validate()
    return preset
