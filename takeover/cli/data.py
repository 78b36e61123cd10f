"""`takeover data ls | info | verify | recover | import-bag PATH | import-lerobot PATH
| export-robomimic OUT | export-lerobot OUT | export-mcap EPISODE... OUT`.

`add_data_parser(subparsers)` adds the `data` command to the main parser and sets `func` to
`run_data`, which returns the exit code. Errors are raised as TakeoverError subclasses (one
line, printed by the main CLI without a traceback). `--json` prints one JSON object as the
last line on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from takeover.cli.common import add_workspace_option
from takeover.cli.output import dumps
from takeover.recorder.errors import TopicMapError
from takeover.recorder.layout import check_workspace
from takeover.recorder.reader import EpisodeInfo, attr_text, open_h5, read_info
from takeover.recorder.store import EpisodeStore
from takeover.types import OUTCOME_NAMES

Handler = Callable[[argparse.Namespace], int]


def add_data_parser(subparsers: Any) -> None:
    """Add `data` and its subcommands to an argparse subparsers object."""
    p = subparsers.add_parser(
        "data", help="list, check, recover, import and export recorded episodes",
        description="Episodes live in WORKSPACE/rounds/rNNN/ep_NNNN.hdf5, or "
                    "ep_NNNN_ROBOT.hdf5 for a named robot (format: docs/dataset-format.md).")
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
        add_workspace_option(sp, required=True)
        sp.set_defaults(func=run_data, data_handler=handler)
        return sp

    sp = add("ls", "list episodes (attributes only)", _cmd_ls)
    sp.add_argument("--round", type=int, metavar="N", help="only round N")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("info", "summarise the workspace by round, or describe one episode", _cmd_info)
    sp.add_argument("episode", nargs="?", metavar="EPISODE",
                    help="r001/ep_0003 or a path to an episode file")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("verify", "check every episode file against the schema; exit 1 on any problem",
             _cmd_verify)
    sp.add_argument("--round", type=int, metavar="N", help="only round N")
    sp.add_argument("--deep", action="store_true", help="also decode every camera frame")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    add("recover", "turn files left by a crash into finished episodes (outcome interrupted)",
        _cmd_recover)

    sp = add("export-robomimic", "write every episode to one robomimic-layout HDF5 file",
             _cmd_export)
    sp.add_argument("out", type=Path, metavar="OUT", help="the .hdf5 file to write")
    sp.add_argument("--round", type=int, action="append", metavar="N", dest="rounds",
                    help="only round N (repeatable; default: all)")
    sp.add_argument("--outcome", action="append", metavar="OUTCOME", dest="outcomes",
                    choices=OUTCOME_NAMES,
                    help="only episodes with this outcome (repeatable; default: all)")
    sp.add_argument("--valid-fraction", type=float, default=0.1, metavar="F",
                    help="fraction of demos in mask/valid (default 0.1)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the train/valid split")
    sp.add_argument("--include-unlabeled", action="store_true",
                    help="keep IDLE/ESTOP/LINK_LOST steps (action_mode -128)")
    sp.add_argument("--force", action="store_true", help="replace OUT if it exists")

    sp = add("export-lerobot", "write episodes as a LeRobot dataset (v3.0: parquet + MP4)",
             _cmd_export_lerobot)
    sp.add_argument("out", type=Path, metavar="OUT", help="the dataset directory to write")
    sp.add_argument("--round", type=int, action="append", metavar="N", dest="rounds",
                    help="only round N (repeatable; default: all)")
    sp.add_argument("--outcome", action="append", metavar="OUTCOME", dest="outcomes",
                    choices=OUTCOME_NAMES,
                    help="only episodes with this outcome (repeatable; default: all)")
    sp.add_argument("--fps", type=int, metavar="N",
                    help="frames per second (default: the recording rate)")
    sp.add_argument("--task", default=None, metavar="TEXT",
                    help="the task text of every episode (default: 'Dock the robot to its "
                         "charger.')")
    sp.add_argument("--include-unlabeled", action="store_true",
                    help="keep IDLE/ESTOP/LINK_LOST steps (action_mode -128)")
    sp.add_argument("--video-codec", default="av1", choices=("av1", "h264"),
                    help="camera video codec (default av1, as LeRobot)")
    sp.add_argument("--crf", type=int, default=30, metavar="N",
                    help="video quality, lower is better and bigger (default 30, as LeRobot)")
    sp.add_argument("--force", action="store_true", help="replace OUT if it exists")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("export-mcap", "write episodes to MCAP with Foxglove schemas (opens in Foxglove)",
             _cmd_export_mcap)
    sp.add_argument("items", nargs="+", metavar="EPISODE... OUT",
                    help="episodes (r001/ep_0003, a round r001, or .hdf5 paths), then OUT: a "
                         "file ending in .mcap for all of them, or a directory for one file each")
    sp.add_argument("--image-format", default="jpeg", choices=("jpeg", "png"),
                    help="camera frames as JPEG (default) or lossless PNG")
    sp.add_argument("--force", action="store_true", help="replace files that exist")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("import-lerobot", "import a LeRobot dataset (v3) of a mobile base as episodes",
             _cmd_import_lerobot)
    sp.add_argument("path", type=Path, metavar="PATH", help="the dataset directory")
    sp.add_argument("--round", type=int, default=0, metavar="N",
                    help="round to import into (default 0: demonstrations)")
    sp.add_argument("--camera", metavar="KEY",
                    help="the camera feature, when the dataset has several")
    sp.add_argument("--action-names", metavar="V,W",
                    help="the action components that are v and w (e.g. x.vel,theta.vel), when "
                         "the action has more than two")
    sp.add_argument("--action-mode", default="demonstration",
                    help="label of frames without one: demonstration, robot or intervention")
    sp.add_argument("--outcome", default="success", choices=OUTCOME_NAMES,
                    help="outcome of episodes without one of their own (default success)")
    sp.add_argument("--operator", default="", help="who drove")
    sp.add_argument("--compression", default=None, help="none, lzf, gzip or gzip:N")
    sp.add_argument("--force", action="store_true",
                    help="import it even if the same dataset was imported before")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("import-bag", "import a ROS 1 or ROS 2 (sqlite3, MCAP) bag as episodes",
             _cmd_import_bag)
    sp.add_argument("path", type=Path, metavar="PATH",
                    help="a ROS 1 .bag file or a ROS 2 bag directory")
    sp.add_argument("--topic", action="append", default=[], metavar="ROLE=TOPIC",
                    help="topic for a role: action, odom, scan, image, marker (repeatable)")
    sp.add_argument("--topic-map", type=Path, metavar="FILE",
                    help="TOML or JSON file of role = topic (a [topics] table or top level)")
    sp.add_argument("--round", type=int, default=0, metavar="N",
                    help="round to import into (default 0: demonstrations)")
    sp.add_argument("--rate-hz", type=float, default=20.0, metavar="HZ",
                    help="resampling rate (default 20)")
    sp.add_argument("--action-mode", default="demonstration",
                    help="label of the steps: demonstration, robot or intervention")
    sp.add_argument("--outcome", default="success",
                    choices=OUTCOME_NAMES,
                    help="outcome of segments without one of their own (default success)")
    sp.add_argument("--operator", default="", help="who drove")
    sp.add_argument("--action-timeout-ms", type=float, default=500.0, metavar="MS",
                    help="an older command counts as zero (default 500, the base watchdog)")
    sp.add_argument("--compression", default=None, help="none, lzf, gzip or gzip:N")
    sp.add_argument("--force", action="store_true",
                    help="import it even if the same bag was imported before")
    sp.add_argument("--json", action="store_true", help="print one JSON object")


def run_data(args: argparse.Namespace) -> int:
    """The handler set as `func`: runs the chosen `data` subcommand, returns the exit code."""
    handler: Handler = args.data_handler
    return handler(args)


# --- formatting ---------------------------------------------------------------------------------

def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                      for i, c in enumerate(r)).rstrip() for r in rows]


def _emit_json(obj: dict[str, Any]) -> None:
    print(dumps(obj, sort_keys=True))


def _leftover_note(store: EpisodeStore) -> str | None:
    leftovers = store.leftovers()
    if not leftovers:
        return None
    return (f"{len(leftovers)} file(s) left by an interrupted recording or being recorded now; "
            "`takeover data recover` finishes them")


# --- commands -----------------------------------------------------------------------------------

def _cmd_ls(args: argparse.Namespace) -> int:
    store = EpisodeStore(args.workspace)
    infos = store.episodes(round=args.round)
    if args.json:
        _emit_json({"episodes": [_info_json(i) for i in infos],
                    "unreadable": [{"path": str(p), "error": e} for p, e in store.unreadable]})
        return 0
    for _path, why in store.unreadable:
        print(f"warning: {why}", file=sys.stderr)
    if not infos:
        print(f"no episodes in {store.workspace}")
    else:
        # Several robots in the workspace: which one recorded each episode.
        named = any(i.robot_name for i in infos)
        rows = [["episode", *(["robot"] if named else []), "outcome", "steps", "duration",
                 "demo", "robot", "takeover", "interv.", "model", "size"]]
        for i in infos:
            rows.append([i.key, *([i.robot_name or "-"] if named else []),
                         i.outcome + (" (recovered)" if i.recovered else ""),
                         str(i.num_steps), f"{i.duration_s:.1f} s", str(i.demo_steps),
                         str(i.robot_steps), str(i.intervention_steps), str(i.interventions),
                         i.model_id or "-", _size(i.size_bytes)])
        shift = 1 if named else 0
        print("\n".join(_table(rows, {c + shift for c in (2, 3, 4, 5, 6, 7, 9)})))
        steps = sum(i.num_steps for i in infos)
        minutes = sum(i.duration_s for i in infos) / 60
        print(f"{len(infos)} episodes, {steps} steps, {minutes:.1f} min")
    note = _leftover_note(store)
    if note:
        print(note)
    return 0


def _info_json(i: EpisodeInfo) -> dict[str, Any]:
    d = i.to_json()
    d["key"] = i.key
    return d


def _round_summary(infos: list[EpisodeInfo]) -> list[dict[str, Any]]:
    rounds: dict[int, list[EpisodeInfo]] = {}
    for i in infos:
        rounds.setdefault(i.round, []).append(i)
    out = []
    for r, eps in sorted(rounds.items()):
        outcomes = {o: sum(e.outcome == o for e in eps)
                    for o in OUTCOME_NAMES}
        out.append({
            "round": r, "episodes": len(eps), "steps": sum(e.num_steps for e in eps),
            "duration_s": round(sum(e.duration_s for e in eps), 3),
            "demo_steps": sum(e.demo_steps for e in eps),
            "robot_steps": sum(e.robot_steps for e in eps),
            "human_steps": sum(e.human_steps for e in eps),
            "intervention_steps": sum(e.intervention_steps for e in eps),
            "interventions": sum(e.interventions for e in eps),
            "models": sorted({e.model_id for e in eps if e.model_id}),
            "robots": sorted({e.robot_name for e in eps if e.robot_name}),
            "size_bytes": sum(e.size_bytes for e in eps), **outcomes,
        })
    return out


def _cmd_info(args: argparse.Namespace) -> int:
    store = EpisodeStore(args.workspace)
    if args.episode:
        return _info_episode(store, args.episode, args.json)
    summary = _round_summary(store.episodes())
    if args.json:
        _emit_json({"workspace": str(store.workspace), "rounds": summary,
                    "leftovers": [str(p) for p in store.leftovers()]})
        return 0
    if not summary:
        print(f"no episodes in {store.workspace}")
    else:
        named = any(s["robots"] for s in summary)
        rows = [["round", "episodes", "steps", "minutes", "success", "failure", "aborted",
                 "interrupted", "human steps", "interv.", "size",
                 *(["robots"] if named else [])]]
        for s in summary:
            rows.append([f"r{s['round']:03d}", str(s["episodes"]), str(s["steps"]),
                         f"{s['duration_s'] / 60:.1f}", str(s["success"]), str(s["failure"]),
                         str(s["aborted"]), str(s["interrupted"]), str(s["human_steps"]),
                         str(s["interventions"]), _size(s["size_bytes"]),
                         *([",".join(s["robots"]) or "-"] if named else [])])
        print("\n".join(_table(rows, set(range(1, 11)))))
    note = _leftover_note(store)
    if note:
        print(note)
    return 0


def _info_episode(store: EpisodeStore, name: str, as_json: bool) -> int:
    path = store.resolve(name)
    info = read_info(path)
    datasets: list[dict[str, Any]] = []
    with open_h5(path) as f:
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}

        def visit(name: str, obj: Any) -> None:
            if hasattr(obj, "shape"):
                datasets.append({"name": name, "dtype": str(obj.dtype), "shape": list(obj.shape),
                                 "compression": obj.compression or "none",
                                 "units": attr_text(obj.attrs.get("units", ""))})
        f.visititems(visit)
    if as_json:
        _emit_json({"episode": _info_json(info), "attributes": attrs, "datasets": datasets})
        return 0
    print(f"{info.key}  {path}")
    for k in sorted(attrs):
        value = str(attrs[k])
        if k in ("start_time_ns", "end_time_ns"):
            when = dt.datetime.fromtimestamp(int(attrs[k]) / 1e9, dt.timezone.utc)
            value += f"  ({when:%Y-%m-%d %H:%M:%S} UTC)"
        print(f"  {k:<18} {value if len(value) < 200 else value[:197] + '...'}")
    rows = [["dataset", "dtype", "shape", "compression", "units"]]
    rows += [[d["name"], d["dtype"], "x".join(map(str, d["shape"])), d["compression"], d["units"]]
             for d in datasets]
    print("\n".join("  " + line for line in _table(rows, set())))
    return 0


def _attr_value(value: Any) -> Any:
    if isinstance(value, bytes | np.bytes_ | str):
        return attr_text(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _cmd_verify(args: argparse.Namespace) -> int:
    from takeover.recorder.verify import verify_workspace
    report = verify_workspace(args.workspace, deep=args.deep, round=args.round)
    if args.json:
        _emit_json({"files_checked": report.files_checked, "problems": report.problems,
                    "live": [str(p) for p in report.live], "quarantined": report.quarantined,
                    "ok": report.ok})
        return 0 if report.ok else 1
    for line in report.problems:
        print(line)
    for path in report.live:
        print(f"{path.parent.name}/{path.name}: being recorded now, skipped")
    if report.quarantined:
        print(f"note: {report.quarantined} unreadable file(s) kept in quarantine/")
    verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"verify: {report.files_checked} episode(s) checked, {verdict}")
    return 0 if report.ok else 1


def _cmd_recover(args: argparse.Namespace) -> int:
    from takeover.recorder.recover import recover_workspace
    results = recover_workspace(args.workspace)
    if not results:
        print("nothing to recover")
        return 0
    for r in results:
        print(r.message)
    failed = sum(not r.ok for r in results)
    recovered = sum(r.action == "recovered" for r in results)
    live = sum(r.action == "live" for r in results)
    print(f"recover: {recovered} episode(s) recovered, {failed} failed"
          + (f", {live} being recorded now left alone" if live else ""))
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from takeover.recorder.robomimic import export_robomimic
    summary = export_robomimic(
        args.workspace, args.out, rounds=args.rounds, outcomes=args.outcomes,
        valid_fraction=args.valid_fraction, seed=args.seed,
        include_unlabeled=args.include_unlabeled, overwrite=args.force)
    for line in summary.skipped:
        print(f"skipped {line}")
    print(f"exported {summary.demos} demos ({summary.samples} samples; {summary.train} train, "
          f"{summary.valid} valid) to {summary.path}")
    return 0


def _load_topic_map(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise TopicMapError(f"topic map {path}: {err.strerror or err}") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
    except ValueError as err:
        raise TopicMapError(f"topic map {path}: not valid {path.suffix.lstrip('.') or 'TOML'} "
                            f"({err})") from None
    if not isinstance(data, dict):
        raise TopicMapError(f"topic map {path}: expected a table of role = topic")
    table = data.get("topics", data)
    if not isinstance(table, dict):
        raise TopicMapError(f"topic map {path}: [topics] must be a table of role = topic")
    return table


def _cmd_import_bag(args: argparse.Namespace) -> int:
    from takeover.recorder.bag_import import (
        ImportOptions,
        TopicMap,
        import_bag,
        parse_action_mode,
    )
    check_workspace(args.workspace)
    items: dict[str, Any] = _load_topic_map(args.topic_map) if args.topic_map else {}
    overrides = TopicMap.from_pairs(args.topic)
    items.update({k: v for k, v in vars(overrides).items() if v is not None})
    options = ImportOptions(
        round=args.round, rate_hz=args.rate_hz, topics=TopicMap.parse(items),
        action_mode=parse_action_mode(args.action_mode), outcome=args.outcome,
        operator=args.operator, action_timeout_ms=args.action_timeout_ms,
        compression=args.compression, force=args.force)
    result = import_bag(args.path, args.workspace, options)
    infos = [read_info(p) for p in result.episodes]
    if args.json:
        _emit_json({"bag": str(result.bag), "topics": result.topics,
                    "episodes": [_info_json(i) for i in infos], "skipped": result.skipped,
                    "warnings": result.warnings, "already_imported": result.already_imported,
                    "digest": result.digest})
        return 0
    if result.already_imported:
        print(_already_line("bag", result.bag, result.already_imported))
        return 0
    print("topics: " + ", ".join(f"{role}={topic}" for role, topic in result.topics.items()))
    _print_imported(infos, result.skipped, result.warnings, result.bag)
    return 0


def _already_line(kind: str, path: Path, keys: list[str]) -> str:
    from takeover.recorder.import_hygiene import describe_keys
    return (f"skipped {kind} {path}: its content was imported already as "
            f"{describe_keys(keys)} (pass --force to import it again)")


def _print_imported(infos: list[EpisodeInfo], skipped: list[str], warnings: list[str],
                    source: Path) -> None:
    for line in skipped:
        print(f"skipped {line}")
    flagged = {line.split(": ", 1)[0] for line in warnings}
    for i in infos:
        flag = "  [flagged: stuck]" if i.key in flagged else ""
        print(f"{i.key}: {i.num_steps} steps, {i.duration_s:.1f} s, {i.outcome}{flag}")
    for line in warnings:
        print(f"warning: {line}")
    print(f"imported {len(infos)} episode(s) from {source}")


def _cmd_import_lerobot(args: argparse.Namespace) -> int:
    from takeover.recorder.bag_import import parse_action_mode
    from takeover.recorder.lerobot_import import (
        LeRobotImportOptions,
        import_lerobot,
        parse_action_names,
    )
    check_workspace(args.workspace)
    options = LeRobotImportOptions(
        round=args.round, camera=args.camera, action_names=parse_action_names(args.action_names),
        action_mode=parse_action_mode(args.action_mode), outcome=args.outcome,
        operator=args.operator, compression=args.compression, force=args.force)
    result = import_lerobot(args.path, args.workspace, options)
    infos = [read_info(p) for p in result.episodes]
    if args.json:
        _emit_json({"dataset": str(result.dataset), "episodes": [_info_json(i) for i in infos],
                    "skipped": result.skipped, "warnings": result.warnings,
                    "already_imported": result.already_imported, "digest": result.digest})
        return 0
    if result.already_imported:
        print(_already_line("dataset", result.dataset, result.already_imported))
        return 0
    _print_imported(infos, result.skipped, result.warnings, result.dataset)
    return 0


def _cmd_export_lerobot(args: argparse.Namespace) -> int:
    from takeover.recorder.lerobot_export import DEFAULT_TASK, export_lerobot
    from takeover.recorder.video import VideoSettings
    summary = export_lerobot(
        args.workspace, args.out, rounds=args.rounds, outcomes=args.outcomes, fps=args.fps,
        task=DEFAULT_TASK if args.task is None else args.task,
        include_unlabeled=args.include_unlabeled,
        video=VideoSettings(codec=args.video_codec, crf=args.crf), overwrite=args.force)
    if args.json:
        _emit_json({"path": summary.path, "episodes": summary.episodes, "frames": summary.frames,
                    "fps": summary.fps, "camera": summary.camera,
                    "scan_beams": summary.scan_beams, "skipped": summary.skipped})
        return 0
    for line in summary.skipped:
        print(f"skipped {line}")
    camera = "x".join(map(str, summary.camera)) if summary.camera else "no camera"
    print(f"exported {summary.episodes} episodes ({summary.frames} frames at {summary.fps} fps, "
          f"{camera}) to {summary.path}")
    return 0


def _cmd_export_mcap(args: argparse.Namespace) -> int:
    from takeover.recorder.errors import ExportError
    from takeover.recorder.layout import parse_round
    from takeover.recorder.mcap_export import export_mcap
    if len(args.items) < 2:
        raise ExportError("give one or more episodes, then OUT (a .mcap file or a directory)")
    *names, out = args.items
    store = EpisodeStore(args.workspace)
    paths: list[Path] = []
    for name in names:
        r = parse_round(name.strip("/"))
        if r is not None and "/" not in name.strip("/"):
            found = store.episode_paths(r)
            if not found:
                raise ExportError(f"round {name} has no episode")
            paths.extend(found)
        else:
            paths.append(store.resolve(name))
    summary = export_mcap(paths, Path(out), image_format=args.image_format,
                          overwrite=args.force)
    if args.json:
        _emit_json({"files": summary.files, "episodes": summary.episodes,
                    "messages": summary.messages})
        return 0
    topics = ", ".join(f"{t} {n}" for t, n in sorted(summary.messages.items()))
    print(f"messages: {topics}")
    where = summary.files[0] if len(summary.files) == 1 else Path(out)
    print(f"exported {summary.episodes} episode(s) to {where} ({len(summary.files)} file(s))")
    return 0
