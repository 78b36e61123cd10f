"""Train -> export -> parity -> register -> runtime -> drive, on tiny data; and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from policy_support import TINY_HW, TINY_MODEL_ARGS

from takeover.cli import main
from takeover.config import Config, workspace_config
from takeover.errors import UsageError
from takeover.policy.build import export_checkpoint, parity_frames, train_workspace
from takeover.policy.dataset import load_dataset
from takeover.policy.export import PARITY_TOLERANCE, parity_error
from takeover.policy.model import ModelConfig
from takeover.policy.runtime import ChunkPolicy, PolicyRuntime, load_policy
from takeover.policy.spec import SPEC_METADATA_KEY, ModelSpec, PolicyError
from takeover.policy.train import TrainConfig, load_checkpoint, model_from_checkpoint, train
from takeover.session.drive import DriveRequest, run_drive
from takeover.workspace.registry import current_model_id, current_model_path

TINY_TRAIN = TrainConfig(epochs=1, batch_size=16, threads=1, val_fraction=0.25, seed=1)


@pytest.fixture(scope="module")
def trained(expert_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ws = tmp_path_factory.mktemp("trained") / "ws"
    shutil.copytree(expert_workspace, ws)
    progress: list[Any] = []
    card = train_workspace(ws, ModelConfig(**TINY_MODEL_ARGS), TINY_TRAIN,  # type: ignore[arg-type]
                           on_progress=progress.append)
    return {"ws": ws, "card": card, "progress": progress}


def test_train_registers_and_deploys_a_model(trained: dict[str, Any]) -> None:
    ws, card = trained["ws"], trained["card"]
    model_dir = ws / "models" / "r001"
    assert {p.name for p in model_dir.iterdir()} >= {"policy.onnx", "card.json", "checkpoint.pt"}
    assert current_model_id(ws) == "r001"
    assert current_model_path(ws) == model_dir.resolve() / "policy.onnx"
    on_disk = json.loads((model_dir / "card.json").read_text())
    assert on_disk["model_id"] == "r001" and on_disk["data"]["episodes"] == 4
    assert on_disk["export"]["parity_max_abs_error"] <= PARITY_TOLERANCE
    assert on_disk["training"]["images_per_s"] > 0
    assert card["data"]["val_episodes"] and card["data"]["train_episodes"]
    assert any(p.epoch_end for p in trained["progress"])
    assert not list((ws / "models").glob(".*partial"))


def test_onnx_metadata_and_parity_on_real_frames(trained: dict[str, Any]) -> None:
    ws = trained["ws"]
    onnx_path = ws / "models" / "r001" / "policy.onnx"
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    spec = ModelSpec.from_json(meta[SPEC_METADATA_KEY])
    assert (spec.image_height, spec.chunk_size, spec.rate_hz) == (TINY_HW, 5, 20.0)
    assert spec.model_id == "r001" and spec.data_digest == trained["card"]["data"]["digest"]
    payload = load_checkpoint(ws / "models" / "r001" / "checkpoint.pt")
    model = model_from_checkpoint(payload)
    frames = parity_frames(load_dataset(ws, chunk_size=5))
    assert parity_error(model, onnx_path, frames) <= PARITY_TOLERANCE
    # The runtime on one observation agrees with the batch call, in physical units.
    runtime = PolicyRuntime(onnx_path)
    one = runtime.infer_batch(frames.image[:1], frames.scan[:1], frames.proprio[:1])
    with torch.no_grad():
        ref = model.denormalize(model(torch.from_numpy(frames.image[:1]),
                                      torch.from_numpy(frames.scan[:1]),
                                      torch.from_numpy(frames.proprio[:1]))).numpy()
    np.testing.assert_allclose(one, ref, atol=PARITY_TOLERANCE)


def test_policy_drives_through_the_control_loop(trained: dict[str, Any]) -> None:
    summary = run_drive(DriveRequest(robot_url="sim://", driver="policy", episodes=1, seed=900,
                                     workspace=trained["ws"], fast=True, max_steps=15,
                                     record=True))
    assert summary["episodes"] == 1 and summary["per_episode"][0]["steps"] > 0
    assert summary["policy"]["model_id"] == "r001"
    assert summary["policy"]["inferences"] >= summary["per_episode"][0]["steps"]
    # A run of model r001 (trained on r000) is round r001.
    recorded = Path(summary["recorded"][0])
    assert recorded.parent.name == "r001"


def test_export_cli_reexports_with_parity(trained: dict[str, Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = trained["ws"] / "models" / "r001" / "checkpoint.pt"
    assert main(["export", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["parity_max_abs_error"] <= PARITY_TOLERANCE
    direct = export_checkpoint(ckpt)
    assert direct["sha256"] == out["sha256"]  # deterministic export


def test_reexport_replaces_a_model_its_card_described_differently(trained: dict[str, Any]
                                                                  ) -> None:
    """A checkpoint re-exported by a newer takeover (another graph: new outputs) is checked
    under another name and then replaces the old file; its card follows. It was refused, the
    parity check finding the new file at odds with the old card."""
    model_dir = trained["ws"] / "models" / "r001"
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card["export"]["sha256"] = "0" * 64  # the card of an export that is not this one
    card_path.write_text(json.dumps(card))
    export = export_checkpoint(model_dir / "checkpoint.pt")
    assert json.loads(card_path.read_text())["export"]["sha256"] == export["sha256"]
    assert not (model_dir / "policy.onnx.partial").exists()
    load_policy(model_dir / "policy.onnx", workspace_config(trained["ws"]))  # accepted


def test_export_int8_reports_what_it_did(trained: dict[str, Any],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`takeover export --int8`: static quantisation tried on real frames; kept or not, the
    result says why and how far it is from the float model."""
    ckpt = trained["ws"] / "models" / "r001" / "checkpoint.pt"
    assert main(["export", str(ckpt), "--int8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    int8 = out["int8"]
    assert int8["reason"] and int8["max_abs_error"] >= 0.0, int8


def test_bench_latency_json_fields(trained: dict[str, Any], capsys: pytest.CaptureFixture[str]
                                   ) -> None:
    assert main(["bench", "latency", "--workspace", str(trained["ws"]), "--iterations", "50",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) >= {"p50_ms", "p99_ms", "threads", "model"} and out["threads"] == 1


def test_resume_continues_to_the_same_weights(expert_workspace: Path, tmp_path: Path) -> None:
    ds = load_dataset(expert_workspace, chunk_size=5)
    cfg = replace(TINY_TRAIN, epochs=2, val_fraction=0.0, augment=TINY_TRAIN.augment)
    mc = ModelConfig(**TINY_MODEL_ARGS)  # type: ignore[arg-type]
    straight = train(ds, mc, cfg, checkpoint_path=tmp_path / "a.pt")
    # Interrupt the same run after its first epoch (the checkpoint is written before the
    # epoch's progress report), then resume it.
    with pytest.raises(_Stop):
        train(ds, mc, cfg, checkpoint_path=tmp_path / "c.pt", on_progress=_stop_after_first_epoch)
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 1
    resumed = train(ds, mc, cfg, checkpoint_path=tmp_path / "c.pt", resume=True)
    for (name, p), q in zip(straight.model.state_dict().items(),
                            resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


def test_keep_last_holds_the_end_of_the_schedule_and_keep_best_the_lowest_val_loss(
        expert_workspace: Path, tmp_path: Path) -> None:
    ds = load_dataset(expert_workspace, chunk_size=5)
    mc = ModelConfig(**TINY_MODEL_ARGS)  # type: ignore[arg-type]
    for keep, stored in (("last", "model"), ("best", "best_model")):
        cfg = replace(TINY_TRAIN, epochs=3, keep=keep, patience=10)
        result = train(ds, mc, cfg, checkpoint_path=tmp_path / f"{keep}.pt")
        assert result.epochs_run == 3
        losses = [h["val_loss"] for h in result.history]
        assert result.best_epoch == 1 + int(np.argmin(losses))
        assert result.kept_epoch == (3 if keep == "last" else result.best_epoch)
        weights = torch.load(tmp_path / f"{keep}.pt", weights_only=True)[stored]
        for name, p in result.model.state_dict().items():
            torch.testing.assert_close(p, weights[name], rtol=0, atol=0, msg=name)
    with pytest.raises(UsageError, match="keep 'first'"):
        train(ds, mc, replace(TINY_TRAIN, keep="first"))


class _Stop(Exception):
    pass


def _stop_after_first_epoch(p: Any) -> None:
    if p.epoch_end and p.epoch == 1:
        raise _Stop


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_clear_errors(trained: dict[str, Any], tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    from policy_support import make_workspace

    empty = make_workspace(tmp_path / "empty")
    assert "no recorded episodes" in _one_line_error(["train", "--workspace", str(empty)], capsys)
    assert "give one of the two" in _one_line_error(
        ["train", "--workspace", str(empty), "--no-augment", "--augment", "camera"], capsys)
    assert "no deployed model" in _one_line_error(
        ["drive", "--driver", "policy", "--workspace", str(empty), "--fast"], capsys)
    assert "no such model file" in _one_line_error(
        ["bench", "latency", "--policy", str(tmp_path / "nope.onnx")], capsys)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    assert "not a loadable ONNX model" in _one_line_error(
        ["bench", "latency", "--policy", str(corrupt)], capsys)
    bad_ckpt = tmp_path / "checkpoint.pt"
    bad_ckpt.write_bytes(b"PK\x03\x04 truncated")
    assert "checkpoint" in _one_line_error(["export", str(bad_ckpt)], capsys)
    # A model for 48x48 frames on a robot that sends 96x96 (the default config): refused
    # before anything moves.
    onnx_path = trained["ws"] / "models" / "r001" / "policy.onnx"
    err = _one_line_error(["drive", "--driver", "policy", "--policy", str(onnx_path), "--fast"],
                          capsys)
    assert "expects 48x48" in err and "96x96" in err


def test_model_whose_graph_disagrees_with_its_metadata(trained: dict[str, Any], tmp_path: Path
                                                       ) -> None:
    src = trained["ws"] / "models" / "r001" / "policy.onnx"
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == SPEC_METADATA_KEY:
            spec = json.loads(p.value)
            spec["scan_beams"] = 360
            p.value = json.dumps(spec)
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(PolicyError, match="metadata") as info:
        PolicyRuntime(bad)
    assert "\n" not in str(info.value)
    # No takeover metadata at all.
    del proto.metadata_props[:]
    onnx.save(proto, str(bad))
    with pytest.raises(PolicyError, match="not a takeover policy"):
        load_policy(bad, Config())


def test_observation_with_other_sensors_fails_at_once(trained: dict[str, Any]) -> None:
    from policy_support import synthetic_record

    policy: ChunkPolicy = load_policy(trained["ws"] / "models" / "r001" / "policy.onnx",
                                      workspace_config(trained["ws"]))
    obs = synthetic_record(0, -1, hw=64).observation
    assert obs is not None
    with pytest.raises(PolicyError, match="expects 48x48"):
        policy.propose(obs)


def test_runtime_does_not_import_torch() -> None:
    code = ("import sys, takeover.policy.runtime, takeover.workspace.registry, takeover.policy.latency;"
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_operator_sim_corrects_a_weak_policy_and_records_interventions(
        trained: dict[str, Any]) -> None:
    """The tiny test model drives badly: the simulated operator takes over, and the episode
    lands in round r001 with intervention steps (action_mode 1) as a person's would."""
    from takeover.recorder.reader import read_episode

    summary = run_drive(DriveRequest(robot_url="sim://", driver="operator-sim", episodes=1,
                                     seed=901, workspace=trained["ws"], fast=True,
                                     max_steps=600, record=True))
    ep = summary["per_episode"][0]
    assert summary["driver"] == "operator-sim"
    assert ep["interventions"] >= 1 and 0 < ep["human_steps"] < ep["steps"]
    recorded = Path(summary["recorded"][-1])
    assert recorded.parent.name == "r001"
    episode = read_episode(recorded, images=False)
    modes = np.asarray(episode.action_mode)
    assert (modes == 1).sum() == ep["human_steps"] and (modes == 0).sum() > 0


def test_model_that_does_not_match_its_card_is_refused(trained: dict[str, Any], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "r001"
    shutil.copytree(trained["ws"] / "models" / "r001", copy)
    onnx_path = copy / "policy.onnx"
    assert main(["bench", "latency", "--policy", str(onnx_path), "--json"]) == 0  # intact: loads
    capsys.readouterr()
    with open(onnx_path, "ab") as f:  # a changed file (here: bytes appended)
        f.write(b"\x00")
    err = _one_line_error(["bench", "latency", "--policy", str(onnx_path)], capsys)
    assert "does not match its card" in err
    (copy / "card.json").write_text("{not json")
    assert "unreadable model card" in _one_line_error(
        ["bench", "latency", "--policy", str(onnx_path)], capsys)
