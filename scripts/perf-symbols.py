#!/usr/bin/env python3
"""Names the frames `perf script` leaves `[unknown]` in a stripped release binary, from the
link map of an identical build, so the installed `wisp` can be profiled as it is.

    WISP_LINK_MAP=target/wisp.map cargo build --release -p wisp-cli
    perf record -g -F 10000 -p <pid of target/release/wisp> -o /tmp/perf.data -- sleep 3
    perf script --no-inline -i /tmp/perf.data | scripts/perf-symbols.py target/release/wisp target/wisp.map --flat 40

`--flat N` prints the N functions most samples were in (the first frame of each sample,
any binary or the kernel), with each file's share; `--flat-user N` the same, counting each
sample in its first frame outside the kernel (the code that made the system call or took
the fault; a sample with kernel frames only counts as `[kernel only]`), which is how a
thread's time splits between its callers, e.g. `perf script --no-inline --comm
wisp-engine-set | scripts/perf-symbols.py … --flat-user 20`. Without either, the input comes back with
the binary's frames named (for call stacks of tracepoints, e.g. `-e
syscalls:sys_enter_futex --call-graph dwarf`). `--no-inline` matters: without it `perf
script` runs `addr2line` on every mapped file, which can take hours here.
"""

import bisect
import collections
import importlib.util
import os
import re
import shutil
import subprocess
import sys

# The map parser of the symbol-order tool (same directory).
_spec = importlib.util.spec_from_file_location(
    "symbol_order", os.path.join(os.path.dirname(os.path.abspath(__file__)), "symbol-order.py"))
symbol_order = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(symbol_order)

FRAME = re.compile(r"^\s+([0-9a-f]+) (.*) \((.*)\)$")


def text_delta(binary):
    """Link address minus file offset of the binary's `.text`: perf prints a frame in a
    binary without symbols as its file offset."""
    sections = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True,
                              check=True).stdout
    for line in sections.splitlines():
        fields = line.replace("[ ", "[").split()
        if len(fields) > 4 and fields[1] == ".text":
            return int(fields[3], 16) - int(fields[4], 16)
    sys.exit(f"no .text section in {binary}")


class Names:
    def __init__(self, binary, map_path):
        self.binary = os.path.realpath(binary)
        self.delta = text_delta(binary)
        sections = symbol_order.text_sections(map_path)
        self.starts = [vma for vma, _, _ in sections]
        self.names = [symbols[0] if symbols else "?" for _, _, symbols in sections]

    def of(self, offset):
        i = bisect.bisect_right(self.starts, offset + self.delta) - 1
        return self.names[i] if i >= 0 else "?"

    def frame(self, line):
        """(file name, function) of one frame line, or None for another line."""
        m = FRAME.match(line)
        if not m:
            return None
        address, symbol, dso = m.groups()
        if os.path.realpath(dso) == self.binary and symbol.startswith("[unknown]"):
            symbol = self.of(int(address, 16))
        return os.path.basename(dso), re.sub(r"\+0x[0-9a-f]+$", "", symbol)


def demangled(lines):
    if not shutil.which("rustfilt"):
        return lines
    out = subprocess.run(["rustfilt"], input="\n".join(lines), capture_output=True, text=True)
    return out.stdout.splitlines() if out.returncode == 0 else lines


def main():
    args = sys.argv[1:]
    top, skip_kernel = None, False
    for flag in ("--flat", "--flat-user"):
        if flag in args:
            i = args.index(flag)
            top, skip_kernel = int(args[i + 1]), flag == "--flat-user"
            del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    names = Names(*args)
    if top is None:
        out = []
        for line in sys.stdin:
            frame = names.frame(line.rstrip("\n"))
            out.append(f"\t{frame[1]} ({frame[0]})" if frame else line.rstrip("\n"))
        print("\n".join(demangled(out)))
        return
    by_function, by_file, samples = collections.Counter(), collections.Counter(), 0
    # Whether the current sample is counted yet; True outside a sample.
    counted, kernel_only = True, False

    def count(file, function):
        nonlocal samples
        samples += 1
        by_file[file] += 1
        by_function[f"{function} ({file})"] += 1

    for line in sys.stdin:
        frame = names.frame(line.rstrip("\n"))
        if frame is None:
            # A sample's header line (or the blank line after a sample).
            if kernel_only:
                count("[kernel]", "[kernel only]")
            counted, kernel_only = not line.strip(), False
            continue
        if counted:
            continue
        if skip_kernel and frame[0] == "[kernel.kallsyms]":
            kernel_only = True
            continue
        counted, kernel_only = True, False
        count(*frame)
    if kernel_only:
        count("[kernel]", "[kernel only]")
    if not samples:
        sys.exit("no samples with call chains in the input: record with -g")
    print(f"{samples} samples")
    for name, count in by_file.most_common(8):
        print(f"{100 * count / samples:5.1f}% {name}")
    print()
    functions = by_function.most_common(top)
    shown = demangled([name for name, _ in functions])
    for (_, count), name in zip(functions, shown):
        print(f"{100 * count / samples:5.2f}% {name}")


if __name__ == "__main__":
    main()
