#!/usr/bin/env python3
"""Which sections of a `wisp` binary are resident once it serves: starts `wisp up --from
<hello.wasm>` with the given compile cache, sends one request, waits a second (so the
start-up code is released and the heap trimmed), then reads the process's page table
(`/proc/PID/pagemap`) over the binary's mappings and prints the resident KiB per ELF
section, with the process's RssAnon. Run it twice per cache (the first start compiles).
Root is needed to read pagemap. Loopback only.

    scripts/resident-sections.py target/release/wisp /tmp/cache [hello.wasm]

Used to compare two builds' layouts (`docs/performance.md`, "One linker per engine").
"""

import collections
import os
import socket
import struct
import subprocess
import sys
import time

PAGE = 4096
PORT = 3988


def sections(binary):
    """[(file offset, size, name)] of the binary's allocated sections."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 6 and fields[1].startswith(".") and fields[1] not in (
                ".comment", ".shstrtab", ".bss", ".tbss"):
            found.append((int(fields[4], 16), int(fields[5], 16), fields[1]))
    return found


def first_request():
    for _ in range(250):
        try:
            with socket.create_connection(("127.0.0.1", PORT)) as s:
                s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                s.recv(100)
            return
        except OSError:
            time.sleep(0.02)
    sys.exit("the server did not answer")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    binary, cache = sys.argv[1], sys.argv[2]
    wasm = sys.argv[3] if len(sys.argv) == 4 else \
        "target/guest-programs/wasm32-wasip2/release/hello.wasm"
    secs = sections(binary)
    server = subprocess.Popen(
        [binary, "up", "--from", wasm, "--listen", f"127.0.0.1:{PORT}", "--cache-dir", cache],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_request()
        time.sleep(1)
        real = os.path.realpath(binary)
        kib = collections.Counter()
        with open(f"/proc/{server.pid}/pagemap", "rb") as pagemap:
            for line in open(f"/proc/{server.pid}/maps"):
                fields = line.split()
                if len(fields) < 6 or fields[5] != real:
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                offset = int(fields[2], 16)
                for address in range(start, end, PAGE):
                    pagemap.seek(address // PAGE * 8)
                    if not struct.unpack("Q", pagemap.read(8))[0] >> 63 & 1:
                        continue
                    at = address - start + offset
                    for section_offset, size, name in secs:
                        if section_offset < at + PAGE and at < section_offset + size:
                            kib[name] += PAGE // 1024
                            break
        anon = next(l.split()[1] for l in open(f"/proc/{server.pid}/status")
                    if l.startswith("RssAnon:"))
    finally:
        server.kill()
        server.wait()
    print(f"{binary}: RssAnon {anon} KiB; resident KiB of the binary by section: "
          + ", ".join(f"{name} {n}" for name, n in kib.most_common())
          + f"; total {sum(kib.values())}")


if __name__ == "__main__":
    main()
