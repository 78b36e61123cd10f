"""A recording process for the SIGKILL test: records short simulated episodes at 20 Hz, in real
time with 96x96 images, until it is killed. It reports on stdout, one line each:

    ready                   the writer is running
    begin SEQ               episode SEQ began (its file carries extra={"seq": SEQ})
    step SEQ I              step I of episode SEQ was offered (and accepted)
    saved SEQ N PATH        episode SEQ is final at PATH with N steps
    alert CODE MESSAGE      a recorder alert (diagnostics for a failure)

usage: python recorder_child.py WORKSPACE SEED
"""

from __future__ import annotations

import os
import random
import sys
import time

from recsim import RATE_HZ, sim_records

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter


def say(text: str) -> None:
    os.write(1, (text + "\n").encode())  # unbuffered: what was said before the kill is read


def main() -> None:
    workspace, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    writer = EpisodeWriter(workspace, rate_hz=RATE_HZ, recover_on_start=False,
                           on_alert=lambda a: say(f"alert {a.code} {a.message}"))
    writer.start()
    say("ready")
    period = 1.0 / RATE_HZ
    next_t = time.perf_counter()
    for seq in range(10**6):
        n = rng.randint(5, 50)  # 0.25 to 2.5 s: kills also land on starts and ends
        writer.begin_episode(EpisodeMeta(round=0, rate_hz=RATE_HZ, extra={"seq": seq}))
        say(f"begin {seq}")
        for i, record in enumerate(sim_records(seed * 1000 + seq, n)):
            next_t += period
            delay = next_t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if writer.offer(record):
                say(f"step {seq} {i}")
        path = writer.end_episode("success").result()
        say(f"saved {seq} {n} {path}")


if __name__ == "__main__":
    main()
