#!/usr/bin/env python3
"""A small real external trainer that follows AudioML's contract (README, "External trainers").

It reads the LJSpeech export (``wavs/`` + ``metadata.csv``), learns how long the speaker takes per character
(duration = a + b * characters, fitted by gradient descent on the clips), prints JSON progress lines, and writes
``model.json`` and ``metrics.json`` to the output folder. Standard library only.

Flags for exercising the contract: ``--fail`` exits 3 after the first epoch; ``--hang`` stops printing and
sleeps until it is terminated; ``--garbage`` prints lines that are not JSON and writes nothing;
``--epochs N`` (default 5).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import wave
from pathlib import Path


def clip_seconds(path: Path) -> float:
    with wave.open(str(path)) as handle:
        return handle.getnframes() / handle.getframerate()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--garbage", action="store_true")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    data, output = Path(config["data_dir"]), Path(config["output_dir"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.garbage:
        print("loading... 50%% done <<not json>>", flush=True)
        print("{this is not json either", flush=True)
        return 0
    rows = [line.split("|") for line in (data / "metadata.csv").read_text(encoding="utf-8").splitlines() if line]
    points = [(len(text), clip_seconds(data / "wavs" / f"{name}.wav")) for name, text, _ in rows]
    print(json.dumps({"message": f"{len(points)} clips read", "progress": 0.0}), flush=True)
    scale = max(n for n, _ in points)
    a, b, rate = 0.0, 0.0, 0.5
    for epoch in range(1, args.epochs + 1):
        for _ in range(200):
            grad_a = sum((a + b * n / scale - s) for n, s in points) / len(points)
            grad_b = sum((a + b * n / scale - s) * n / scale for n, s in points) / len(points)
            a, b = a - rate * grad_a, b - rate * grad_b
        loss = sum((a + b * n / scale - s) ** 2 for n, s in points) / len(points)
        print(json.dumps({"epoch": epoch, "step": epoch * 200, "loss": loss, "val_loss": loss,
                          "progress": epoch / args.epochs}), flush=True)
        if args.fail:
            print("out of memory while allocating the decoder (pretend)", file=sys.stderr, flush=True)
            return 3
        if args.hang:
            time.sleep(3600)
    seconds_per_character = b / scale
    (output / "model.json").write_text(json.dumps({"intercept_seconds": a,
                                                   "seconds_per_character": seconds_per_character}))
    (output / "metrics.json").write_text(json.dumps({"mse_seconds2": loss, "clips": len(points),
                                                     "seconds_per_character": seconds_per_character}))
    print(json.dumps({"message": f"done: {seconds_per_character:.4f} s per character", "progress": 1.0}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
