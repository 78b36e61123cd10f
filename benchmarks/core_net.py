"""The network control core's costs (session/core_net.py, docs/remote_cores.md): the size of one
snapshot message and its encode/decode times, and the round trip of a call over TLS on this
computer. A measurement script, not a test (nothing is asserted).

    .venv/bin/python benchmarks/core_net.py [--samples 500] [--calls 300] [--json]

Snapshots: taken from a real operator session on the real-time simulator (sim://, 96x96 camera)
after it has run a few seconds, and the same snapshot with a full 30 s trail (600 points), the
largest it gets. Size as sent (JSON) and as permessage-deflate would compress it (zlib, raw
deflate, level 6: what websockets negotiates by default). Times: median and p99 of `wire.encode`
and `wire.decode(..., SessionSnapshot)` on one core of this machine.

Round trip: `takeover core serve` in a process of its own (sim://, a self-signed certificate made
here), a NetworkSession in this one; `dock_pose()` calls one after another (request, the core's
worker thread, reply), median and p99.

From them: the bandwidth per robot at tui.refresh_hz and the share of one core the terminal
spends decoding the snapshots of 20 robots.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "session"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from takeover.config import Config
from takeover.hw.base import open_link
from takeover.session import wire
from takeover.session.core_net import NetworkSession, add_operator
from takeover.session.operator import OperatorSession, SessionSnapshot

ROBOTS = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def deflated(data: bytes) -> int:
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return len(z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))


def codec_costs(snap: SessionSnapshot, samples: int) -> dict[str, Any]:
    enc, dec = [], []
    data = wire.encode(snap)
    for _ in range(samples):
        t0 = time.perf_counter()
        data = wire.encode(snap)
        t1 = time.perf_counter()
        wire.decode(data, SessionSnapshot)
        t2 = time.perf_counter()
        enc.append((t1 - t0) * 1e3)
        dec.append((t2 - t1) * 1e3)
    return {"bytes": len(data), "deflated_bytes": deflated(data),
            "encode_ms_p50": round(statistics.median(enc), 3),
            "encode_ms_p99": round(percentile(enc, 99), 3),
            "decode_ms_p50": round(statistics.median(dec), 3),
            "decode_ms_p99": round(percentile(dec, 99), 3)}


def snapshots(seconds: float) -> tuple[SessionSnapshot, SessionSnapshot]:
    session = OperatorSession(Config(), open_link("sim://?seed=1"), None, None, use_gamepad=False)
    session.open()
    try:
        time.sleep(seconds)
        snap = session.poll()
    finally:
        session.close()
    x, y = snap.trail[-1] if snap.trail else (0.0, 0.0)
    trail = [(x - 0.0123456789 * i, y + 0.00456789 * i) for i in range(600)]
    return snap, replace(snap, trail=trail)


def call_round_trip(calls: int) -> dict[str, Any]:
    from test_core_net import make_cert  # the tests' self-signed certificate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cert, key = make_cert(root, "bench")
        tokens = root / "tokens.json"
        token_file = root / "op.token"
        token_file.write_text(add_operator(tokens, "bench"))
        server = subprocess.Popen(
            [sys.executable, "-m", "takeover.cli", "core", "serve", "--robot", "sim://",
             "--listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key),
             "--tokens", str(tokens)], stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline().split("wss://127.0.0.1:")[1].split()[0])
            session = NetworkSession(Config(), f"core+wss://127.0.0.1:{port}?token_file="
                                     f"{token_file}&ca={cert}")
            t0 = time.perf_counter()
            session.open()
            connect_ms = (time.perf_counter() - t0) * 1e3
            rtt = []
            for _ in range(calls):
                t0 = time.perf_counter()
                session.dock_pose()
                rtt.append((time.perf_counter() - t0) * 1e3)
            session.close()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return {"calls": calls, "connect_ms": round(connect_ms, 1),
            "rtt_ms_p50": round(statistics.median(rtt), 3),
            "rtt_ms_p99": round(percentile(rtt, 99), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    refresh_hz = Config().tui.refresh_hz
    early, full = snapshots(3.0)
    rows = {"snapshot_3s": codec_costs(early, args.samples),
            "snapshot_full_trail": codec_costs(full, args.samples)}
    worst = rows["snapshot_full_trail"]
    result: dict[str, Any] = {
        **rows, "call": call_round_trip(args.calls), "refresh_hz": refresh_hz,
        "per_robot_mbit_s": round(worst["bytes"] * 8 * refresh_hz / 1e6, 2),
        "per_robot_mbit_s_deflated": round(worst["deflated_bytes"] * 8 * refresh_hz / 1e6, 2),
        f"decode_core_frac_{ROBOTS}_robots": round(
            worst["decode_ms_p50"] * refresh_hz * ROBOTS / 1e3, 3),
        "encode_core_frac_per_robot": round(worst["encode_ms_p50"] * refresh_hz / 1e3, 4),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
