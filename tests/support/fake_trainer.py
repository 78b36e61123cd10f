"""A stand-in for `takeover train` that speaks the TUI's progress protocol (docs/tui.md).

python fake_trainer.py WORKSPACE [--epochs N] [--hang]: reports N epochs, registers
models/rNNN/policy.onnx (a placeholder file) and prints the result as the last stdout line.
--hang: after the first epoch, wait for SIGINT (to test cancelling).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    workspace = Path(sys.argv[1])
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 3
    hang = "--hang" in sys.argv
    assert os.environ.get("TAKEOVER_PROGRESS") == "jsonl"
    print("loading episodes...", file=sys.stderr, flush=True)
    for epoch in range(1, epochs + 1):
        for step in (1, 2):
            print(json.dumps({"event": "progress", "epoch": epoch, "epochs": epochs, "step": step,
                              "steps": 2, "train_loss": 1.0 / (epoch + step), "val_loss": None,
                              "images_per_s": 100.0, "elapsed_s": 0.1, "epoch_end": False}),
                  file=sys.stderr, flush=True)
        print(json.dumps({"event": "progress", "epoch": epoch, "epochs": epochs, "step": 2, "steps": 2,
                          "train_loss": 1.0 / (epoch + 2), "val_loss": 1.2 / (epoch + 2),
                          "images_per_s": 100.0, "elapsed_s": 0.2, "epoch_end": True}),
              file=sys.stderr, flush=True)
        if hang:
            try:
                while True:
                    time.sleep(0.05)
            except KeyboardInterrupt:
                print("cancelled", file=sys.stderr, flush=True)
                return 130
    models = workspace / "models"
    model_id = f"r{len([p for p in models.glob('r*') if p.is_dir()]) + 1:03d}"
    (models / model_id).mkdir(parents=True)
    onnx = models / model_id / "policy.onnx"
    onnx.write_bytes(b"placeholder")
    card = {"model_id": model_id, "export": {"onnx": onnx.name,
                                             "sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()}}
    (models / model_id / "card.json").write_text(json.dumps(card))  # registered, as the real one
    print(json.dumps({"model_id": model_id, "model_dir": str(models / model_id),
                      "val_loss": 1.2 / (epochs + 2), "parity_max_abs_err": 1e-6}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
