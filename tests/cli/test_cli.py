"""The `takeover` command as a user runs it: real subprocesses, real exit codes and output."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest


def takeover(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "takeover.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_drive_expert_fast_json_contract() -> None:
    p = takeover("drive", "--driver", "expert", "--episodes", "3", "--seed", "7", "--fast",
                 "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["episodes"] == 3 and out["successes"] == 3 and out["success_rate"] == 1.0
    assert set(out["loop"]) >= {"rate_hz", "period_ms_p50", "late_ms_p99", "late_ms_max",
                                "overruns"}
    assert [e["seed"] for e in out["per_episode"]] == [7, 8, 9]
    for e in out["per_episode"]:
        assert set(e) >= {"seed", "outcome", "steps", "human_steps", "interventions"}
        assert e["outcome"] == "success" and e["human_steps"] == e["steps"] > 50
        assert e["interventions"] == 0
        # The docking outcome detector beside it ([docking]), and the simulator's own verdict.
        assert e["outcome_detected"] == e["outcome_truth"] == "success"
        assert e["outcome_evidence"]["signal"] == "battery_current"


@pytest.mark.slow
def test_drive_realtime_one_episode(tmp_path: Path) -> None:
    # The test is real-time docking, not freshness (tests/control): on a loaded machine the
    # default 250 ms of observation age has aborted the episode as LINK_LOST, so it allows 2 s.
    assert takeover("init", str(tmp_path / "ws")).returncode == 0
    toml = tmp_path / "ws" / "takeover.toml"
    text = toml.read_text()
    assert "obs_freshness_ms = 250.0" in text
    toml.write_text(text.replace("obs_freshness_ms = 250.0", "obs_freshness_ms = 2000.0"))
    p = takeover("drive", "--driver", "expert", "--episodes", "1", "--seed", "8", "--json",
                 "--workspace", str(tmp_path / "ws"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["successes"] == 1
    # Real time: lateness measured against deadlines (lockstep has none), one tick per step.
    # The rate itself is a timing figure: `takeover bench loop` measures it.
    assert out["loop"]["scheduling"] != "lockstep" and out["loop"]["late_ms_p99"] is not None
    assert out["loop"]["ticks"] >= out["per_episode"][0]["steps"] > 100
    # The simulator process's battery reaches the detector through shared memory too.
    assert out["per_episode"][0]["outcome_detected"] == "success"
    assert out["per_episode"][0]["outcome_evidence"]["signal"] == "battery_current"


@pytest.mark.parametrize(
    ("url", "needle"),
    [("ftp://robot", "unknown robot URL scheme 'ftp'"), ("robot", "has no scheme"),
     ("sim://?color=red", "unknown option 'color'"), ("sim://?seed=x", "not an integer")],
)
def test_bad_robot_url_is_one_clear_line(url: str, needle: str) -> None:
    p = takeover("drive", "--driver", "expert", "--robot", url, "--fast")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr
    if "scheme" in needle:
        assert "sim://" in lines[0] and "ws://" in lines[0], "names the accepted forms"


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[robot]\nurll = 'sim://'\n", "unknown key 'robot.urll'"),
        ("[safety]\nobs_freshness_ms = 'soon'\n", "safety.obs_freshness_ms: expected a number"),
        ("[loop]\nrate_hz = 500\n", "loop.rate_hz"),
        ("[robot\nurl = 1\n", "not valid TOML"),
        ("[safety.manual]\nmax_v_mps = -1\n", "safety.manual"),
        ("[policy]\nexecution = 'fast'\n", "policy.execution"),
        ("[train]\nlabel = 'both'\n", "train.label"),
        ("[train]\nbackbone_args = 3\n", "train.backbone_args"),
        ("[train]\nepochs = 0\n", "train.epochs"),
        ("[train]\nwarm_lr = 0\n", "train.warm_lr = 0.0: must be above 0"),
        ("[tui]\ncamera = 'iterm'\n", "tui.camera = 'iterm': use auto, kitty, sixel, halfblock or off"),
        ("[docking]\ncurrent_sign = 'up'\n", "docking.current_sign = 'up'"),
        ("[docking]\ncharging_current_a = -0.5\n", "docking.charging_current_a = -0.5"),
        ("[docking]\nstall_s = 0\n", "docking.stall_s = 0.0: must be above 0"),
        ("[docking]\ncharge_wait_s = 0.2\n", "docking.charge_wait_s"),
        ("[docking]\nuse_docked_topic = 'yes'\n", "docking.use_docked_topic: expected true"),
        ("[docking]\ncharge_current_a = 1\n", "unknown key 'docking.charge_current_a'"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path: Path, toml: str, needle: str) -> None:
    (tmp_path / "takeover.toml").write_text(toml)
    p = takeover("drive", "--driver", "expert", "--fast", "--workspace", str(tmp_path))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "takeover.toml" in lines[0], lines


def test_config_sets_robot_and_limits(tmp_path: Path) -> None:
    (tmp_path / "takeover.toml").write_text(
        "[robot]\nurl = 'sim://?seed=3'\ncamera_width = 64\n\n[loop]\nrate_hz = 25\n")
    p = takeover("drive", "--driver", "expert", "--fast", "--json", "--workspace", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["robot"] == "sim://?seed=3"


def test_episodes_must_be_positive() -> None:
    p = takeover("drive", "--driver", "expert", "--episodes", "0")
    assert p.returncode == 2 and "--episodes" in p.stderr


def test_run_refuses_a_lockstep_simulator() -> None:
    p = takeover("run", "--robot", "sim://?fast=1", "--no-gamepad")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "real time" in lines[0] and "Traceback" not in p.stderr


def test_documented_configuration_loads_and_shows_the_defaults() -> None:
    """docs/configuration.md's example is a valid takeover.toml, every section of Config in it,
    and the workspace template agrees with the defaults."""
    from takeover.config import Config, config_from_dict
    from takeover.workspace.layout import CONFIG_TEMPLATE, tomllib

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    table = tomllib.loads(text[text.index("```toml") + len("```toml"):text.rindex("```")])
    assert set(table) == {f.name for f in dataclasses.fields(Config)}
    documented = config_from_dict(table, "docs/configuration.md")
    for section in ("robot", "loop", "safety", "gamepad", "keyboard", "tui", "policy",
                    "demonstration", "docking"):
        assert getattr(documented, section) == getattr(Config(), section), section
    assert config_from_dict(tomllib.loads(CONFIG_TEMPLATE), "template") == Config()
