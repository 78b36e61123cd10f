"""`takeover train`, `takeover export` and `takeover bench latency`.

Torch is imported inside the train and export handlers only, so `takeover --help`, `takeover
run` and `takeover bench latency` start without it (and run on a robot without it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from takeover.cli.common import add_workspace_option
from takeover.cli.output import print_json, print_result
from takeover.config import WEIGHTINGS
from takeover.errors import UsageError
from takeover.policy.progress import PROGRESS_ENV, PROGRESS_FORMAT, TrainProgress, encode

SubParsers = argparse._SubParsersAction


def add_policy_parsers(sub: SubParsers) -> None:
    """`train` and `export` (the bench entry is added by `add_latency_bench`)."""
    p = sub.add_parser(
        "train", help="train the policy on all rounds, register models/rNNN, set current",
        description="Behavioural cloning on every round of the workspace (DAgger aggregation). "
        "The model is exported to ONNX, checked for parity on real frames, written to "
        "models/rNNN/ (policy.onnx, card.json, checkpoint.pt) and deployed as models/current. "
        "Runs under torchrun for multi-GPU training.")
    add_workspace_option(p, required=True)
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="default: takeover.toml [train] epochs, else 12")
    p.add_argument("--device", default=None, metavar="D", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--backbone", default=None, metavar="NAME", help="timm model name")
    p.add_argument("--backbone-args", default=None, metavar="JSON",
                   help='timm.create_model keyword arguments, e.g. \'{"channels": [16,32,64,128]}\'')
    p.add_argument("--model-args", default=None, metavar="JSON",
                   help='ModelConfig overrides, e.g. \'{"use_proprio": false, "chunk_size": 10}\'')
    p.add_argument("--heads", type=int, default=None, metavar="N",
                   help="ensemble members of the chunk head; more than 1 also exports the "
                   "members' disagreement as a `novelty` output (docs/policy.md, Uncertainty)")
    p.add_argument("--novelty-budget", type=float, default=None, metavar="F",
                   help="help-request calibration: the fraction of held-out steps whose novelty "
                   "may exceed the threshold (default 0.05)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--grad-accum", type=int, default=None, metavar="N")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weighting", choices=WEIGHTINGS, default=None,
                   help="intervention weighting (default none)")
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--keep", choices=("last", "best"), default=None,
                   help="the weights kept: last (end of the schedule, the default) or best "
                   "(lowest validation loss, with early stopping)")
    p.add_argument("--patience", type=int, default=None,
                   help="--keep best: early stopping after N epochs without improvement")
    p.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"], default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-augment", action="store_true", help="no colour jitter or shifts")
    p.add_argument("--augment", choices=["on", "off", "camera"], default=None,
                   help="image augmentation: on (colour jitter, the default), off, or camera "
                   "(also exposure, blur and sensor noise up to the robustness suite's "
                   "severity 1, each on a quarter of the samples: docs/evaluation.md)")
    p.add_argument("--init-from", type=Path, default=None, metavar="CHECKPOINT",
                   help="warm start from a previous model's checkpoint.pt")
    p.add_argument("--int8", action="store_true", help="also try static INT8 quantisation")
    p.add_argument("--no-deploy", action="store_true", help="register, but leave models/current")
    p.add_argument("--json", action="store_true", help="print the model card as the last line")
    p.set_defaults(func=_cmd_train)

    e = sub.add_parser("export", help="export a checkpoint to ONNX (parity-checked)",
                       description="Export CHECKPOINT to policy.onnx beside it, check parity "
                       "against PyTorch on real frames of its workspace, update card.json.")
    e.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    e.add_argument("--int8", action="store_true",
                   help="static INT8 quantisation calibrated on dataset frames; kept only if faster")
    e.add_argument("--workspace", type=Path, default=None, metavar="DIR",
                   help="where the frames for the parity check come from (default: the "
                   "checkpoint's workspace)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=_cmd_export)


def add_latency_bench(bench_sub: SubParsers) -> None:
    lat = bench_sub.add_parser("latency", help="policy inference latency in onnxruntime")
    lat.add_argument("--policy", type=Path, default=None, metavar="PATH",
                     help="a policy.onnx (default: the workspace's current model)")
    add_workspace_option(lat, required=True)
    lat.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    lat.add_argument("--iterations", type=int, default=2000)
    lat.add_argument("--json", action="store_true")
    lat.set_defaults(func=_cmd_bench_latency)


class JsonlProgress:
    """`TAKEOVER_PROGRESS=jsonl` (the TUI's Rounds screen): one protocol line per report on
    `stream` (takeover/policy/progress.py); step reports at most 5 a second, every epoch end."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self._last = 0.0

    def __call__(self, p: TrainProgress) -> None:
        now = time.monotonic()
        if not p.epoch_end and now - self._last < 0.2:
            return
        self._last = now
        print(encode(p), file=self.stream, flush=True)


def progress_reporter(stream: Any) -> JsonlProgress | ProgressBar:
    """JSON lines on stderr when the TUI asked for them (`TAKEOVER_PROGRESS=jsonl`), else a
    progress bar on `stream`. `takeover train` and `takeover dagger train` both report so."""
    if os.environ.get(PROGRESS_ENV) == PROGRESS_FORMAT:
        return JsonlProgress(sys.stderr)
    return ProgressBar(stream)


class ProgressBar:
    """A one-line progress bar on a terminal; plain epoch lines when not a terminal."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self._last = 0.0

    def __call__(self, p: TrainProgress) -> None:
        if p.epoch_end:
            val = "-" if p.val_loss is None else f"{p.val_loss:.4f}"
            line = (f"epoch {p.epoch}/{p.epochs}: train {p.train_loss:.4f} val {val} "
                    f"{p.images_per_s:.0f} img/s {p.elapsed_s:.0f} s")
            print(("\r" if self.tty else "") + line.ljust(78), file=self.stream, flush=True)
            return
        now = time.monotonic()
        if not self.tty or now - self._last < 0.2:
            return
        self._last = now
        width = 30
        done = int(width * p.step / p.steps)
        bar = "#" * done + "." * (width - done)
        print(f"\repoch {p.epoch}/{p.epochs} [{bar}] {p.step}/{p.steps} loss {p.train_loss:.4f} "
              f"{p.images_per_s:.0f} img/s", end="", file=self.stream, flush=True)


def _cmd_train(args: argparse.Namespace) -> int:
    from takeover.config import workspace_config
    from takeover.policy.build import train_workspace
    from takeover.policy.settings import apply_overrides, workspace_training_configs

    if not args.workspace.is_dir():
        raise UsageError(f"workspace {args.workspace} does not exist; create it with "
                         f"`takeover init {args.workspace}`")
    # Defaults, then the workspace's [train] section, then these flags.
    model_config, train_config = workspace_training_configs(workspace_config(args.workspace).train)
    if args.no_augment and args.augment not in (None, "off"):
        raise UsageError(f"--no-augment and --augment {args.augment}: give one of the two")
    flags: dict[str, Any] = {
        "epochs": args.epochs, "device": args.device, "batch_size": args.batch_size,
        "grad_accum": args.grad_accum, "lr": args.lr, "weighting": args.weighting,
        "val_fraction": args.val_fraction, "patience": args.patience, "keep": args.keep,
        "amp": args.amp,
        "seed": args.seed, "threads": args.threads, "backbone": args.backbone,
        "augment": "off" if args.no_augment else args.augment,
        "heads": args.heads, "novelty_budget": args.novelty_budget,
    }
    for key in ("epochs", "batch_size", "grad_accum", "patience", "threads", "heads"):
        if flags[key] is not None and flags[key] < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
    if args.backbone_args is not None:
        flags["backbone_args"] = _json_object(args.backbone_args, "--backbone-args")
    if args.model_args is not None:
        flags.update(_json_object(args.model_args, "--model-args"))
    model_config, train_config = apply_overrides(model_config, train_config, flags, "takeover train")
    progress = sys.stderr if args.json else sys.stdout
    reporter = progress_reporter(progress)
    t0 = time.perf_counter()
    card = train_workspace(
        args.workspace, model_config, train_config, int8=args.int8, init_from=args.init_from,
        deploy=not args.no_deploy, on_progress=reporter,
        on_status=lambda msg: print(msg, file=progress, flush=True))
    if not card:  # a non-main torchrun process
        return 0
    card["total_s"] = round(time.perf_counter() - t0, 1)
    t = card["training"]
    x = card["export"]
    print(f"model {card['model_id']}: {t['epochs_run']} epochs in {t['wall_s']:.0f} s "
          f"({t['images_per_s']:.0f} img/s), val loss {card['metrics'].get('best_val_loss')}, "
          f"parity {x['parity_max_abs_error']:.1e}, latency p50 {x['latency_1_thread']['p50_ms']} ms"
          f"{' (deployed as models/current)' if card.get('deployed') else ''}; "
          f"total {card['total_s']} s", file=progress, flush=True)
    if args.json:
        print_json(card)
    return 0


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: not valid JSON") from None
    if not isinstance(value, dict):
        raise UsageError(f"{flag} must be a JSON object")
    return value


def _cmd_export(args: argparse.Namespace) -> int:
    from takeover.policy.build import export_checkpoint

    result = export_checkpoint(args.checkpoint, int8=args.int8, workspace=args.workspace)
    if args.json:
        print_json(result)
    else:
        print(f"exported {args.checkpoint.parent / result['onnx']}: parity "
              f"{result['parity_max_abs_error']:.1e} on {result['parity_frames']} frames, "
              f"p50 {result['latency_1_thread']['p50_ms']} ms")
        if "int8" in result:
            print(f"int8: {result['int8']['reason']}; max abs error "
                  f"{result['int8']['max_abs_error']:.3g}")
    return 0


def _cmd_bench_latency(args: argparse.Namespace) -> int:
    from takeover.policy.latency import measure_latency
    from takeover.workspace.registry import resolve_policy_path

    if args.threads < 1 or args.iterations < 10:
        raise UsageError("--threads must be >= 1 and --iterations >= 10")
    path = resolve_policy_path(args.policy, args.workspace, needed_by="bench latency")
    result = measure_latency(path, threads=args.threads, iterations=args.iterations)
    print_result(result, args.json)
    return 0
