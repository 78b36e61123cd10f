"""The episode store, `verify` on damaged files, and the `takeover data` commands."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from recorder_support import record_episode
from recsim import sim_records

import takeover.recorder.store as store_mod
from takeover.cli.data import add_data_parser
from takeover.errors import TakeoverError, UsageError
from takeover.recorder.errors import EpisodeError
from takeover.recorder.layout import INDEX_NAME
from takeover.recorder.reader import read_info
from takeover.recorder.store import EpisodeStore
from takeover.recorder.verify import verify_episode, verify_workspace
from takeover.recorder.writer import EpisodeWriter


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("store") / "ws"
    ws.mkdir()
    with EpisodeWriter(ws, compression="gzip:1", raw_when_behind_s=None, fsync=False) as w:
        for k, rnd in enumerate([0, 0, 1]):
            record_episode(w, list(sim_records(seed=40 + k, n=25)), round_index=rnd,
                           model_id="" if rnd == 0 else "r001")
    return ws


@pytest.fixture
def ws(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(pristine, copy)
    return copy


def run_cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="takeover")
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", *argv])
    from contextlib import redirect_stdout
    from io import StringIO
    out = StringIO()
    with redirect_stdout(out):
        code = args.func(args)
    return code, out.getvalue()


def test_listing_uses_the_index_and_only_attributes(ws: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = EpisodeStore(ws)
    infos = store.episodes()
    assert [i.key for i in infos] == ["r000/ep_0001", "r000/ep_0002", "r001/ep_0001"]
    assert (ws / "rounds" / "r000" / INDEX_NAME).exists()
    assert store.rounds() == [0, 1]
    calls: list[Path] = []
    monkeypatch.setattr(store_mod, "read_info", lambda p: calls.append(p))  # type: ignore
    again = EpisodeStore(ws).episodes()
    assert calls == [] and again == infos  # served from the index, no file opened
    assert EpisodeStore(ws).episodes(round=1)[0].model_id == "r001"


def test_stale_or_corrupt_index_is_rebuilt(ws: Path) -> None:
    index = ws / "rounds" / "r000" / INDEX_NAME
    EpisodeStore(ws).episodes()
    index.write_text("{not json")
    assert len(EpisodeStore(ws).episodes(round=0)) == 2
    assert json.loads(index.read_text())["version"] == 1
    (ws / "rounds" / "r000" / "ep_0002.hdf5").unlink()
    assert [i.episode for i in EpisodeStore(ws).episodes(round=0)] == [1]


def test_resolve_names(ws: Path) -> None:
    store = EpisodeStore(ws)
    path = ws / "rounds" / "r001" / "ep_0001.hdf5"
    for name in ("r001/ep_0001", "r1/1", "rounds/r001/ep_0001.hdf5", str(path)):
        assert store.resolve(name) == path
    with pytest.raises(EpisodeError, match="not found"):
        store.resolve("r005/ep_0001")
    with pytest.raises(EpisodeError, match="does not name an episode"):
        store.resolve("banana")


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        return
    if how == "garbage":
        path.write_bytes(b"\x00" * 4096)
        return
    with h5py.File(path, "r+") as f:
        if how == "missing dataset":
            del f["action"]
        elif how == "wrong dtype":
            data = f["action_mode"][:]
            del f["action_mode"]
            f.create_dataset("action_mode", data=data.astype(np.int32))
        elif how == "short dataset":
            f["policy_action"].resize(3, axis=0)
        elif how == "bad outcome":
            f.attrs.modify("outcome", np.bytes_("great"))
        elif how == "bad label":
            f["action_mode"][2] = 7
        elif how == "time goes back":
            f["t_ns"][5] = 0
        elif how == "wrong counts":
            f.attrs.modify("human_steps", np.int64(999))
        elif how == "missing attribute":
            del f.attrs["operator"]
        elif how == "foreign file":
            f.attrs["schema"] = "something-else"


DAMAGES = ["truncated", "garbage", "missing dataset", "wrong dtype", "short dataset",
           "bad outcome", "bad label", "time goes back", "wrong counts", "missing attribute",
           "foreign file"]


@pytest.mark.parametrize("how", DAMAGES)
def test_verify_reports_damage_in_one_line(ws: Path, how: str) -> None:
    victim = ws / "rounds" / "r000" / "ep_0002.hdf5"
    others = {p: p.read_bytes() for p in EpisodeStore(ws).episode_paths() if p != victim}
    assert verify_episode(victim) == []
    _damage(victim, how)
    problems = verify_workspace(ws).problems
    assert problems and all(p.startswith("rounds/r000/ep_0002.hdf5: ") for p in problems)
    assert all("\n" not in p for p in problems)
    code, out = run_cli("verify", "--workspace", str(ws))
    assert code == 1 and "problem(s)" in out.splitlines()[-1]
    # ls still lists the others; nothing else was touched.
    code, out = run_cli("ls", "--workspace", str(ws))
    assert code == 0 and "r001/ep_0001" in out
    for p, data in others.items():
        assert p.read_bytes() == data


def test_verify_deep_finds_a_damaged_frame(ws: Path) -> None:
    victim = ws / "rounds" / "r000" / "ep_0001.hdf5"
    with h5py.File(victim, "r") as f:
        info = f["obs/image"].id.get_chunk_info_by_coord((4, 0, 0, 0))
    assert info.filter_mask == 0  # deflated
    with open(victim, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff" * 64)  # corrupt its deflate stream
    assert verify_episode(victim) == []
    problems = verify_episode(victim, deep=True)
    assert len(problems) == 1 and "frame 4 cannot be decoded" in problems[0]


def test_cli_ls_info_verify_recover_export(ws: Path, tmp_path: Path) -> None:
    code, out = run_cli("ls", "--workspace", str(ws))
    assert code == 0 and "r000/ep_0002" in out and "3 episodes, 75 steps" in out
    code, out = run_cli("ls", "--workspace", str(ws), "--json")
    assert len(json.loads(out.splitlines()[-1])["episodes"]) == 3
    code, out = run_cli("info", "--workspace", str(ws), "--json")
    rounds = json.loads(out.splitlines()[-1])["rounds"]
    assert [r["episodes"] for r in rounds] == [2, 1] and rounds[0]["success"] == 2
    code, out = run_cli("info", "r001/ep_0001", "--workspace", str(ws))
    assert code == 0 and "obs/image" in out and "model_id" in out and "r001" in out
    code, out = run_cli("verify", "--workspace", str(ws), "--deep")
    assert code == 0 and out.strip().endswith("3 episode(s) checked, ok")
    code, out = run_cli("recover", "--workspace", str(ws))
    assert code == 0 and "nothing to recover" in out
    target = tmp_path / "out.hdf5"
    code, out = run_cli("export-robomimic", str(target), "--workspace", str(ws),
                        "--round", "0")
    assert code == 0 and "exported 2 demos" in out and target.exists()
    with pytest.raises(TakeoverError, match="not overwriting"):
        run_cli("export-robomimic", str(target), "--workspace", str(ws))


def test_cli_recover_after_a_crash_and_verify_before(ws: Path) -> None:
    partial = ws / "rounds" / "r000" / "ep_0003.hdf5.partial"
    with EpisodeWriter(ws, fsync=False, recover_on_start=False) as w:
        from takeover.recorder.episode_file import EpisodeMeta
        w.begin_episode(EpisodeMeta(round=0, rate_hz=20.0))
        for r in sim_records(seed=3, n=12):
            w.offer(r)
        assert w.sync(30)
        shutil.copy(partial, partial.with_name("crash.tmp"))  # the file as a crash leaves it
        w.end_episode("success").result(30)
    (ws / "rounds" / "r000" / "ep_0003.hdf5").unlink()
    partial.with_name("crash.tmp").rename(partial)
    code, out = run_cli("verify", "--workspace", str(ws))
    assert code == 1 and "run `takeover data recover`" in out
    code, out = run_cli("recover", "--workspace", str(ws))
    assert code == 0 and "recovered 12 steps into ep_0003.hdf5" in out
    assert read_info(ws / "rounds" / "r000" / "ep_0003.hdf5").outcome == "interrupted"
    assert run_cli("verify", "--workspace", str(ws))[0] == 0


def test_cli_errors_are_one_line(tmp_path: Path, ws: Path) -> None:
    cases = [
        (["ls", "--workspace", str(tmp_path / "missing")], "does not exist"),
        (["info", "r009/ep_0001", "--workspace", str(ws)], "not found"),
        (["import-bag", str(tmp_path / "nope.bag"), "--workspace", str(ws)], "does not exist"),
        (["import-bag", str(tmp_path), "--workspace", str(ws), "--topic", "acton=/x"],
         "unknown role"),
        (["import-bag", str(tmp_path), "--workspace", str(ws), "--topic", "action"],
         "expected ROLE=/topic"),
    ]
    bad_map = tmp_path / "map.toml"
    bad_map.write_text("[topics]\naction = 5\n")
    cases.append((["import-bag", str(tmp_path), "--workspace", str(ws), "--topic-map",
                   str(bad_map)], "is not a topic name"))
    for argv, text in cases:
        with pytest.raises(TakeoverError) as err:
            run_cli(*argv)
        assert text in str(err.value) and "\n" not in str(err.value), argv
    with pytest.raises(UsageError):
        run_cli("ls", "--workspace", str(tmp_path / "missing"))


def test_recorder_imports_no_ui_or_training_stack() -> None:
    code = ("import sys, takeover.recorder, takeover.recorder.writer, takeover.recorder.store, "
            "takeover.recorder.reader, takeover.cli.data, takeover.recorder.verify, "
            "takeover.recorder.recover, takeover.recorder.robomimic, "
            "takeover.recorder.bag_import, takeover.bench.recorder; "
            "bad = sorted(m for m in ('textual', 'torch', 'timm') if m in sys.modules); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_damaged_frames_give_one_line_to_readers_and_export(ws: Path, tmp_path: Path) -> None:
    from takeover.recorder.errors import ExportError
    from takeover.recorder.reader import read_episode
    from takeover.recorder.robomimic import export_robomimic
    victim = ws / "rounds" / "r000" / "ep_0002.hdf5"
    with h5py.File(victim, "r") as f:
        info = f["obs/image"].id.get_chunk_info_by_coord((6, 0, 0, 0))  # a labeled step
    with open(victim, "r+b") as fh:
        fh.seek(info.byte_offset + 10)
        fh.write(b"\xff" * 64)
    with pytest.raises(EpisodeError, match="camera frames cannot be read") as err:
        read_episode(victim)
    assert "\n" not in str(err.value)
    read_episode(victim, images=False)  # everything else still reads
    out = tmp_path / "x.hdf5"
    with pytest.raises(ExportError, match="r000/ep_0002: cannot be exported"):
        export_robomimic(ws, out)
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))
