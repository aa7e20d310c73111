#!/usr/bin/env python3
"""Writes the linker symbol order that packs the code `wisp up` runs into few pages.

A start of `wisp up` plus its requests executes code from all over the 40 MB binary, and
the kernel maps 64 KiB or more around every page fault on it: the binary's own pages were
16 to 21 MiB of its resident memory while serving hello. Linking the functions that run
next to each other (`lld --symbol-ordering-file`, wired up in `crates/cli/build.rs`) lets
those faults map code that is used instead of its neighbours.

How the functions are found, page by page, on the real release binary:

1. `WISP_LINK_MAP=<map> cargo build --release -p wisp-cli` (the map says which function
   sits at which address; the binary is the same as without it).
2. A copy of the binary, evicted from the page cache, is started while its disk's
   read-ahead is off (`read_ahead_kb` 0, restored afterwards; a file keeps the setting it
   was opened with): each page fault reads and maps exactly its own 4 KiB page, so the
   present pages afterwards are the pages that ran.
3. Phase `start`: start, first responses. Then the code pages are paged out
   (`process_madvise(MADV_PAGEOUT)`) and phase `serve` runs sequential and concurrent
   requests and an idle pause: what serving needs once started.
4. Output: the functions on `serve` pages first, then those on `start` pages only
   between the markers `wisp_startup_code_begin` and `wisp_startup_code_end` (`wisp up`
   unmaps that group once it serves), each group in the original address order.

Every function sharing a touched page is listed, so the order over-includes; run the
script again on a binary linked with the new order to tighten it. Symbol names carry the
hash of their crate's build (versions, features, profile, toolchain): after a `Cargo.lock`
or toolchain change, regenerate the order (stale names are skipped by the linker, which
then just loses the packing). Run as root (pagemap, cache eviction):

    WISP_LINK_MAP=target/wisp.map cargo build --release -p wisp-cli
    cargo build --release -p wisp-test-programs
    scripts/symbol-order.py target/release/wisp target/wisp.map /tmp/order && gzip -9c /tmp/order > crates/cli/symbol-order.txt.gz

For the shim (`--shim`: a containerd of its own, a hello pod). Its four processes share
the binary's pages, which paging out then cannot drop, so what serving runs is taken from
`wisp up`'s order (the same request path): the functions that ran in the pod whose names,
without their crate hashes, are in `wisp up`'s serving group. Run it on a shim linked
without an order: on an ordered one, fewer neighbours run and some serving functions
would fall out of that intersection.

    WISP_NO_SYMBOL_ORDER=1 WISP_LINK_MAP=target/shim.map cargo build --release -p wisp-shim
    scripts/symbol-order.py --shim target/release/containerd-shim-wisp-v1 target/shim.map /tmp/order
    gzip -9c /tmp/order > crates/shim/symbol-order.txt.gz
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PAGE = 4096
MADV_PAGEOUT = 21
SYS_PROCESS_MADVISE = 440
HELLO = "target/guest-programs/wasm32-wasip2/release/hello.wasm"



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path="/"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_ready(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"wisp exited with {proc.returncode} before answering")
        try:
            if get(port) == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("wisp did not answer within 30 s")


def code_mapping(pid, exe):
    """(base, start, end) of the executable's code mapping; base maps file offset 0."""
    base = code = None
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) < 6 or fields[5] != exe:
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if int(fields[2], 16) == 0:
                base = start
            if "x" in fields[1]:
                code = (start, end)
    if base is None or code is None:
        sys.exit(f"no mapping of {exe} in process {pid}")
    return base, code[0], code[1]


def present_pages(pid, start, end):
    """Link-time-relative page numbers of the resident pages in [start, end)."""
    count = (end - start) // PAGE
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        pagemap.seek(start // PAGE * 8)
        data = pagemap.read(count * 8)
    return {
        (start // PAGE) + i
        for i in range(count)
        if int.from_bytes(data[i * 8 : i * 8 + 8], "little") >> 63
    }


def page_out(pid, start, end):
    libc = ctypes.CDLL(None, use_errno=True)

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    pidfd = os.pidfd_open(pid)
    try:
        vec = IoVec(start, end - start)
        if libc.syscall(SYS_PROCESS_MADVISE, pidfd, ctypes.byref(vec), 1, MADV_PAGEOUT, 0) < 0:
            sys.exit(f"process_madvise failed: errno {ctypes.get_errno()}")
    finally:
        os.close(pidfd)


def read_ahead_knob(path):
    """The sysfs `read_ahead_kb` of the block device holding `path`."""
    dev = os.stat(path).st_dev
    device = os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for queue in (os.path.join(device, "queue"), os.path.join(device, "..", "queue")):
        knob = os.path.join(queue, "read_ahead_kb")
        if os.path.exists(knob):
            return knob
    sys.exit(f"no read_ahead_kb for the device of {path} (a block device is needed, not tmpfs)")


def evict(path):
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def text_sections(map_path):
    """[(vma, size, [symbols])] of the input sections in the output section `.text`."""
    sections, in_text = [], False
    input_re = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+\s{9}\S.*:\((\S+)\)$")
    symbol_re = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+[0-9a-f]+\s+\d+\s{17}(\S+)$")
    with open(map_path) as lines:
        for line in lines:
            if re.match(r"^\s*[0-9a-f]+\s+[0-9a-f]+\s+[0-9a-f]+\s+\d+ \S", line):
                in_text = line.split()[-1] == ".text"
                continue
            if not in_text:
                continue
            m = input_re.match(line)
            if m:
                sections.append((int(m[1], 16), int(m[2], 16), []))
                continue
            m = symbol_re.match(line)
            if m and sections:
                sections[-1][2].append(m[2])
    return sections


def symbols_on(pages, sections):
    chosen = []
    for vma, size, symbols in sections:
        first, last = vma // PAGE, (vma + max(size, 1) - 1) // PAGE
        if any(p in pages for p in range(first, last + 1)):
            chosen.extend(symbols)
    return chosen


def exercise(port, seconds):
    """Sequential requests, a 404, then 8 concurrent clients, then an idle pause."""
    for _ in range(50):
        get(port)
    get(port, "/no/such/route")
    stop = time.monotonic() + seconds

    def client():
        while time.monotonic() < stop:
            get(port)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.5)


class ReadAheadOff:
    """Read-ahead off on the device of `path` while in the block (restored afterwards)."""

    def __init__(self, path):
        self.knob = read_ahead_knob(path)

    def __enter__(self):
        with open(self.knob) as f:
            self.saved = f.read().strip()
        with open(self.knob, "w") as f:
            f.write("0")

    def __exit__(self, *_):
        with open(self.knob, "w") as f:
            f.write(self.saved)


def processes_of(exe):
    """The pids running the binary `exe`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/exe") == exe:
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


QUIET = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class WispUp:
    """`wisp up --from hello.wasm`, started with a warm compile cache."""

    name = "wisp"

    def __init__(self, work, probe, port):
        self.args = [probe, "up", "--from", HELLO, "--listen", f"127.0.0.1:{port}",
                     "--cache-dir", os.path.join(work, "cache")]
        self.port = port

    def warm_up(self):
        warm = subprocess.Popen(self.args, **QUIET)
        wait_ready(self.port, warm)
        warm.send_signal(signal.SIGTERM)
        warm.wait()

    def start(self):
        self.proc = subprocess.Popen(self.args, **QUIET)

    def wait_ready(self):
        wait_ready(self.port, self.proc)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


class Shim:
    """`ctr run --runtime io.containerd.wisp.v1` of a hello image, under a containerd of its
    own (installed by scripts/install-containerd.sh), with containerd's precompiled code
    from an earlier container: the shim process and the container's process."""

    name = "containerd-shim-wisp-v1"

    def __init__(self, work, probe, port):
        subprocess.run(["bash", "scripts/install-containerd.sh"], check=True, **QUIET)
        tools = os.environ.get("WISP_TOOLS_DIR", os.path.expanduser("~/.cache/wisp/tools"))
        self.bin = os.path.join(tools, "containerd-trixie/usr/bin")
        self.work, self.port, self.probe = work, port, probe
        with open(os.path.join(work, "config.toml"), "w") as f:
            f.write(f"""version = 2
root = "{work}/root"
state = "{work}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{work}/c.sock"
[ttrpc]
  address = "{work}/t.sock"
[debug]
  address = "{work}/d.sock"
""")
        path = f"{os.path.dirname(probe)}:{self.bin}:{os.environ['PATH']}:/usr/sbin"
        self.containerd = subprocess.Popen(
            [os.path.join(self.bin, "containerd"), "--config", os.path.join(work, "config.toml")],
            env=dict(os.environ, PATH=path), **QUIET)
        for _ in range(100):
            if self.ctr("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        layout = os.path.join(work, "layout")
        subprocess.run([sys.executable, "benches/wasm-image.py", HELLO, layout], check=True)
        subprocess.run(["tar", "-C", layout, "-cf", layout + ".tar", "."], check=True)
        self.ctr("images", "import", "--base-name", "localhost/hello", layout + ".tar")

    def ctr(self, *args, check=True):
        return subprocess.run([os.path.join(self.bin, "ctr"), "--address",
                               os.path.join(self.work, "c.sock"), "--namespace", "probe", *args],
                              check=check, **QUIET)

    def run(self, container):
        self.ctr("run", "-d", "--net-host", "--runtime", "io.containerd.wisp.v1", "--env",
                 f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{self.port}", "--env", "WISP_LOG=warn",
                 "localhost/hello:latest", container, "/")
        self.container = container

    def wait_ready(self):
        for _ in range(600):
            try:
                if get(self.port) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        sys.exit("the shim's container did not answer within 30 s")

    def warm_up(self):
        # The first container precompiles the layer into containerd's content store.
        self.run("warm")
        self.wait_ready()
        self.stop()
        for _ in range(100):
            if not processes_of(self.probe):
                return
            time.sleep(0.1)
        sys.exit("the shim processes of the first container did not exit")

    def start(self):
        self.run("probe")

    def stop(self):
        self.ctr("tasks", "kill", "-s", "SIGKILL", self.container, check=False)
        for _ in range(100):
            if self.ctr("tasks", "delete", self.container, check=False).returncode == 0:
                break
            time.sleep(0.1)
        self.ctr("containers", "delete", self.container, check=False)

    def close(self):
        self.containerd.send_signal(signal.SIGTERM)
        self.containerd.wait()


def code_pages(pids, probe):
    """Per pid: (its code mapping, the link-relative page numbers present in it)."""
    found = {}
    for pid in pids:
        base, start, end = code_mapping(pid, probe)
        found[pid] = ((start, end), {p - base // PAGE for p in present_pages(pid, start, end)})
    return found


def without_hash(symbol):
    """A symbol's name without what depends on its crate's build: the legacy mangling's
    trailing hash, v0 crate disambiguators, LLVM's suffix for promoted locals."""
    symbol = re.sub(r"\.llvm\.\d+$", "", symbol)
    symbol = re.sub(r"17h[0-9a-f]{16}E$", "", symbol)
    return re.sub(r"Cs[0-9A-Za-z]+_", "C", symbol)


def serving_names(order_gz):
    """The names (without hashes) of the serving group of another binary's order."""
    import gzip

    with gzip.open(order_gz, "rt") as f:
        names = f.read().split()
    return {without_hash(s) for s in names[: names.index("wisp_startup_code_begin")]}


def main():
    args = sys.argv[1:]
    scenario, serve_like = WispUp, None
    if args[:1] == ["--shim"]:
        # Many processes share the shim's pages, which paging out cannot then drop: what
        # serving runs is taken from `wisp up`'s order (the same request path).
        scenario, args = Shim, args[1:]
        serve_like = serving_names("crates/cli/symbol-order.txt.gz")
    if len(args) != 3:
        sys.exit(__doc__)
    binary, map_path, out = args
    if os.geteuid() != 0:
        sys.exit("run as root: it reads /proc/PID/pagemap and evicts the binary from the page cache")
    work = tempfile.mkdtemp(prefix="symbol-order-", dir=os.path.dirname(os.path.abspath(binary)))
    run = None
    try:
        # A copy on the same (disk) file system, so its pages can be evicted and refetched.
        os.mkdir(os.path.join(work, "bin"))
        probe = os.path.join(work, "bin", scenario.name)
        shutil.copy2(binary, probe)
        port = free_port()
        run = scenario(work, probe, port)
        run.warm_up()
        evict(probe)
        # Processes keep the setting their binary was opened with.
        with ReadAheadOff(probe):
            run.start()
            run.wait_ready()
        try:
            for _ in range(20):
                get(port)
            pids = processes_of(probe)
            at_start = code_pages(pids, probe)
            if serve_like is None:
                for pid, ((start, end), _) in at_start.items():
                    page_out(pid, start, end)
            left = sum(len(pages) for _, pages in code_pages(pids, probe).values())
            exercise(port, 3)
            serving = code_pages(pids, probe)
        finally:
            run.stop()
    finally:
        if hasattr(run, "close"):
            run.close()
        shutil.rmtree(work, ignore_errors=True)
    start_pages = set().union(*(pages for _, pages in at_start.values()))
    serve_pages = set().union(*(pages for _, pages in serving.values()))
    sections = text_sections(map_path)
    markers = {"wisp_startup_code_begin", "wisp_startup_code_end"}
    serve = [s for s in symbols_on(serve_pages, sections) if s not in markers]
    if serve_like is not None:
        # Everything that ran, split by the other binary's serving functions.
        serve = [s for s in serve if without_hash(s) in serve_like]
        start_pages = serve_pages
    listed = set(serve) | markers
    start_only = [s for s in symbols_on(start_pages, sections) if s not in listed]
    # The markers around the start-only group: `wisp up` unmaps what lies between them
    # once it serves (wisp_engine::release_startup_code).
    order = serve + ["wisp_startup_code_begin"] + start_only + ["wisp_startup_code_end"]
    with open(out, "w") as f:
        f.write("\n".join(order) + "\n")
    kib = PAGE // 1024
    print(f"{len(pids)} process(es); code pages: start {len(start_pages) * kib} KiB, "
          f"{left * kib} KiB left after paging out, "
          f"serve {len(serve_pages) * kib} KiB; {len(sections)} sections in the map")
    print(f"wrote {out}: {len(serve)} serve symbols, then {len(start_only)} start-only symbols")


if __name__ == "__main__":
    main()
