#!/usr/bin/env python3
"""Start-up to the listening line, then to the first response: spawns `wisp up --from
<hello.wasm> --json` with each given wisp binary in turn (alternating the order every
round), reads its stderr until the `listening` event, sends `GET /` on a new connection at
once and prints, per binary, the median and quartiles of the time from spawn to that
line's timestamp, and of the time from reading that line to the response's first bytes
(what the first request costs beyond the start-up before it). Each binary gets its own
compile cache (filled by the first start, which is not counted). Finer than `first-200`
for changes before or in the first request.

Usage: benches/listen-time.py [--rounds N] WISP [WISP...]   (run from the repository root
after `cargo build --release -p wisp-test-programs`; listens on 127.0.0.1:18800 only)
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import tempfile
import time

HELLO = "target/guest-programs/wasm32-wasip2/release/hello.wasm"


def first_response_ms():
    """Time from now to the first bytes of the answer to `GET /` on a new connection."""
    asked = time.time()
    with socket.create_connection(("127.0.0.1", 18800)) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        if not client.recv(4096).startswith(b"HTTP/1.1 200"):
            raise SystemExit("the first request did not answer 200")
    return (time.time() - asked) * 1000


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
                return (stamp - started) * 1000, first_response_ms()
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
        responses = {b: [] for b in args.binaries}
        for round_ in range(args.rounds):
            order = args.binaries if round_ % 2 == 0 else args.binaries[::-1]
            for binary in order:
                listening, response = listening_after_ms(binary, cache[binary])
                times[binary].append(listening)
                responses[binary].append(response)
    for binary in args.binaries:
        for what, values in (("listening after", times[binary]),
                             ("first response after the listening line",
                              responses[binary])):
            t = sorted(values)
            n = len(t)
            print(f"{binary}: {what} median {t[n // 2]:.2f} ms "
                  f"(quartiles {t[n // 4]:.2f} / {t[3 * n // 4]:.2f}, {n} starts)")


if __name__ == "__main__":
    main()
