#!/usr/bin/env python3
"""Splits a profile's samples by who owns the time: the crate of the first Rust frame above
the sample (wasmtime, tokio, hyper, wisp's own crates, ...) and where the sample itself
landed (the kernel, libc, or user code). A system call made by tokio's `TcpStream` counts
as `tokio / kernel`, a `memmove` in wasmtime's pool as `wasmtime / libc`.

    perf record -F 1999 --call-graph dwarf,32768 -p <pid> -o /tmp/perf.data -- sleep 3
    perf script --no-inline -i /tmp/perf.data \\
        | scripts/perf-symbols.py target/release/wisp target/wisp.map | scripts/perf-owners.py

For a binary with symbols (a criterion bench), pipe `perf script --no-inline` straight in.
Samples are split by their stacks as `perf` unwound them: a sample inside a fiber's stack
(a guest and the host calls it makes) has no frames of the code that started the fiber, so
it counts under the first Rust frame it has. `--phases` also prints the share of samples
under a few steps of a request (any frame matching), each sample counted once, in order.
"""

import collections
import re
import sys

OWNER = re.compile(
    r"^(?:_?<)?(wasmtime\w*|wisp_\w+|tokio\w*|hyper\w*|http_body\w*|http|bytes|tracing\w*|"
    r"futures\w*|rand\w*|criterion)::")
DROP = re.compile(r"drop_in_place<[^>]*?\b(wasmtime\w*|wisp_\w+|tokio|hyper|http)::")
PHASES = [
    ("instantiate", r"InstancePre<T>::instantiate_async"),
    ("drop the store (the pool's reset)", r"drop_in_place<wasmtime::runtime::store::Store<"),
    ("guest and its host calls (fiber)", r"fiber_start|component-trampolines|cabi_entrypoint"),
    ("socket writes", r"write_vectored|__GI___writev"),
    ("socket reads", r"TcpStream::poll_read_priv|__libc_recv"),
    ("new store and WASI context", r"LoadedComponent>::new_store"),
    ("Spin headers", r"set_spin_headers"),
]


def readable(name):
    """A legacy-mangled Rust name (`_ZN...17h<hash>E`) as a path; others as they are."""
    name = re.sub(r"\+0x[0-9a-f]+$", "", name)
    m = re.match(r"_ZN(.*)17h[0-9a-f]{16}E(?:\.llvm\.\d+)?$", name)
    if not m:
        return name
    parts, s, i = [], m.group(1), 0
    while i < len(s) and s[i].isdigit():
        j = i
        while s[j].isdigit():
            j += 1
        length = int(s[i:j])
        parts.append(s[j:j + length])
        i = j + length
    path = "::".join(parts)
    for code, text in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$C$", ","), ("..", "::")):
        path = path.replace(code, text)
    return path


def samples(lines):
    stack = None
    for line in lines:
        if not line.strip():
            if stack:
                yield stack
            stack = None
        elif not line[0].isspace():
            stack = []
        elif stack is not None:
            m = re.match(r"(?:[0-9a-f]+ )?(.*) \((.*)\)$", line.strip())
            if m:
                stack.append((readable(m.group(1)), m.group(2)))
    if stack:
        yield stack


def owner(stack):
    for name, dso in stack:
        if ".cwasm" in dso or name.startswith("component-trampolines"):
            return "guest code"
        m = OWNER.match(name) or DROP.search(name)
        if m:
            crate = m.group(1)
            # wasmtime's runtime crates as one; its WASI host crates by name.
            if crate.startswith("wasmtime") and not crate.startswith("wasmtime_wasi"):
                return "wasmtime"
            return crate
    return "other"


def landed(stack):
    dso = stack[0][1]
    return "kernel" if "kernel" in dso else "libc" if "libc" in dso else "user"


def main():
    by_owner, by_phase, total = collections.Counter(), collections.Counter(), 0
    for stack in samples(sys.stdin):
        total += 1
        by_owner[(owner(stack), landed(stack))] += 1
        for label, pattern in PHASES:
            if any(re.search(pattern, name) for name, _ in stack):
                by_phase[label] += 1
                break
    if not total:
        sys.exit("no samples on stdin")
    crates = collections.Counter()
    for (crate, _), n in by_owner.items():
        crates[crate] += n
    print(f"{total} samples")
    for crate, n in crates.most_common():
        where = ", ".join(f"{w} {100 * by_owner[(crate, w)] / total:.1f}%"
                          for w in ("user", "kernel", "libc") if by_owner[(crate, w)])
        print(f"{100 * n / total:6.2f}%  {crate:12}  ({where})")
    if "--phases" in sys.argv[1:]:
        print("steps (each sample once, first match in this order):")
        for label, _ in PHASES:
            print(f"{100 * by_phase[label] / total:6.2f}%  {label}")


if __name__ == "__main__":
    main()
