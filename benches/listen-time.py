#!/usr/bin/env python3
"""Start-up to the listening line: spawns `wisp up --from <hello.wasm> --json` with each
given wisp binary in turn (alternating the order every round), reads its stderr until the
`listening` event and prints, per binary, the median and quartiles of the time from spawn
to that line's timestamp. Each binary gets its own compile cache (filled by the first
start, which is not counted). Finer than `first-200` for changes before the first request.

Usage: benches/listen-time.py [--rounds N] WISP [WISP...]   (run from the repository root
after `cargo build --release -p wisp-test-programs`; listens on 127.0.0.1:18800 only)
"""

import argparse
import datetime
import json
import os
import subprocess
import tempfile
import time

HELLO = "target/guest-programs/wasm32-wasip2/release/hello.wasm"


def listening_after_ms(binary, cache):
    started = time.time()
    server = subprocess.Popen(
        [binary, "up", "--from", HELLO, "--listen", "127.0.0.1:18800",
         "--cache-dir", cache, "--json"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        env=dict(os.environ, WISP_LOG="info"))
    try:
        for line in server.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                stamp = datetime.datetime.fromisoformat(
                    event["timestamp"].replace("Z", "+00:00")).timestamp()
                return (stamp - started) * 1000
        raise SystemExit(f"{binary} stopped before listening")
    finally:
        server.terminate()
        server.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as caches:
        cache = {b: os.path.join(caches, str(i)) for i, b in enumerate(args.binaries)}
        for binary in args.binaries:
            listening_after_ms(binary, cache[binary])  # fills its compile cache
        times = {b: [] for b in args.binaries}
        for round_ in range(args.rounds):
            order = args.binaries if round_ % 2 == 0 else args.binaries[::-1]
            for binary in order:
                times[binary].append(listening_after_ms(binary, cache[binary]))
    for binary in args.binaries:
        t = sorted(times[binary])
        n = len(t)
        print(f"{binary}: listening after median {t[n // 2]:.2f} ms "
              f"(quartiles {t[n // 4]:.2f} / {t[3 * n // 4]:.2f}, {n} starts)")


if __name__ == "__main__":
    main()
