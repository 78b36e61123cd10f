"""Records until the file-size limit (RLIMIT_FSIZE) makes writes fail, like a full disk.

usage: python full_disk_child.py WORKSPACE LIMIT_BYTES; prints one JSON line at the end.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from dataclasses import replace

from recsim import sim_records

from takeover.recorder.episode_file import EpisodeMeta
from takeover.recorder.writer import EpisodeWriter, RecorderAlert


def main() -> None:
    workspace, limit = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    alerts: list[RecorderAlert] = []
    writer = EpisodeWriter(workspace, compression="none", queue_s=1000.0, min_free_bytes=0,
                           on_alert=alerts.append)
    writer.start()
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    base = list(sim_records(seed=4, n=20))
    writer.begin_episode(EpisodeMeta(round=0, rate_hz=20.0))
    accepted = refused = 0
    for i in range(400):
        r = base[i % 20]
        ok = writer.offer(replace(r, step=i, t_ns=base[0].t_ns + i * 50_000_000))
        accepted += ok
        refused += not ok
        if i % 20 == 19:
            writer.sync(30)
    writer.sync(30)
    saved = writer.end_episode("success").result(30)
    writer.stop()
    print(json.dumps({"accepted": accepted, "refused": refused, "saved": str(saved),
                      "state": writer.stats().state,
                      "alerts": [[a.code, a.message] for a in alerts]}))


if __name__ == "__main__":
    main()
