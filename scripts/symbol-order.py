#!/usr/bin/env python3
"""Writes the linker symbol order that packs the code `wisp up` runs into few pages.

A start of `wisp up` plus its requests executes code from all over the 40 MB binary, and
the kernel maps 64 KiB or more around every page fault on it: the binary's own pages were
16 to 21 MiB of its resident memory while serving hello. Linking the functions that run
next to each other (`lld --symbol-ordering-file`, wired up in `crates/cli/link_order.rs`) lets
those faults map code that is used instead of its neighbours.

How the functions are found, page by page, on the real release binary:

1. `WISP_LINK_MAP=<map> cargo build --release -p wisp-cli` (the map says which function
   sits at which address; the binary is the same as without it).
2. A copy of the binary, evicted from the page cache, is started while its disk's
   read-ahead is off (`read_ahead_kb` 0, restored afterwards; a file keeps the setting it
   was opened with): each page fault reads and maps exactly its own 4 KiB page, so the
   present pages afterwards are the pages that ran.
3. Phase `start`: start until the port takes connections, no request (of two apps in
   turn: a component given by `--from`, and the README's example by its `spin.toml`). Then
   the code pages are paged out (`process_madvise(MADV_PAGEOUT)`), phase `first` sends
   the first 20 requests, the pages are paged out again, and phase `serve` runs sequential
   and concurrent requests and an idle pause: what the serving process needs once
   started. (The shim's scenario has no `first` phase: its start includes the requests.)
4. Output: the functions on `serve` pages first, then the other functions on `first`
   pages (a connection's and a pool slot's first use: kept mapped, next to the serving
   code), then those on other pages that ran, between the markers
   `wisp_startup_code_begin` and `wisp_startup_code_end` (`wisp up` unmaps that group
   once it serves), each group in the original address order.

Every function sharing a touched page is listed, so the order over-includes; run the
script again on a binary linked with the new order to tighten it. Symbol names carry the
hash of their crate's build (versions, features, profile, toolchain): after a `Cargo.lock`,
toolchain or release-profile change, regenerate the order (stale names are skipped by the
linker, which then just loses the packing). Wisp's own crates build in one codegen unit
each, so edits to them rename nothing but what they add or rename (`--stale` below). The
names also depend on which packages one `cargo build` builds (features are unified across
them): build the binary alone, as below, as users do. Run as root (pagemap, cache
eviction):

    WISP_LINK_MAP=target/wisp.map cargo build --release -p wisp-cli
    cargo build --release -p wisp-test-programs
    cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml
    scripts/symbol-order.py target/release/wisp target/wisp.map /tmp/order && gzip -9c /tmp/order > crates/cli/symbol-order.txt.gz

For the shim (`--shim`: a containerd of its own, a hello pod). Its four processes share
pages of the binary, and a page still mapped by another process cannot be paged out, so the
serving process's pages after serving are what serving ran plus some start-up pages it
shares. Run it on a shim linked without an order: an ordered one's processes unmap their
start-up code (the container's, once serving; the shim's, 5 s after the create if idle), which
`WISP_KEEP_STARTUP_CODE=1` in this script's environment does not reach:

    WISP_NO_SYMBOL_ORDER=1 WISP_LINK_MAP=target/shim.map cargo build --release -p wisp-shim
    scripts/symbol-order.py --shim target/release/containerd-shim-wisp-v1 target/shim.map /tmp/order
    gzip -9c /tmp/order > crates/shim/symbol-order.txt.gz

How stale a checked-in order is for today's code (the names the linker will skip: with
2.7% of them gone, RSS after the first request was 0.8 MiB higher, docs/performance.md):

    WISP_LINK_MAP=target/wisp.map cargo build --release -p wisp-cli
    scripts/symbol-order.py --stale target/wisp.map crates/cli/symbol-order.txt.gz
"""

import ctypes
import gzip
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


def wait_ready(port, proc, path):
    """Waits for a 200 on `path`, while `proc` (the server, or the containerd under it) runs."""
    for _ in range(600):
        if proc.poll() is not None:
            sys.exit(f"{proc.args[0]} exited with {proc.returncode} before an answer")
        try:
            if get(port, path) == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"no answer on port {port} within 30 s")


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


def exercise(port, path, seconds):
    """Sequential requests, a 404, then 8 concurrent clients, then an idle pause."""
    for _ in range(50):
        get(port, path)
    get(port, "/no/such/route")
    stop = time.monotonic() + seconds

    def client():
        while time.monotonic() < stop:
            get(port, path)

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
# A binary linked with an order unmaps its start-up code once serving: keep it, so every
# page the start ran is still there to see.
os.environ["WISP_KEEP_STARTUP_CODE"] = "1"


class WispUp:
    """`wisp up` of hello, started with a warm compile cache: a component given by
    `--from`, and the README's example app by its `spin.toml`."""

    name = "wisp"
    apps = [(["--from", HELLO], "/"), (["-f", "examples/hello/spin.toml"], "/hello")]

    def __init__(self, work, probe, port, app):
        from_args, self.path = app
        self.args = [probe, "up", *from_args, "--listen", f"127.0.0.1:{port}",
                     "--cache-dir", os.path.join(work, "cache")]
        self.port = port

    def warm_up(self):
        warm = subprocess.Popen(self.args, **QUIET)
        wait_ready(self.port, warm, self.path)
        warm.send_signal(signal.SIGTERM)
        warm.wait()

    def start(self):
        self.proc = subprocess.Popen(self.args, **QUIET)

    def wait_ready(self):
        wait_ready(self.port, self.proc, self.path)

    # The start-up is probed without a request, the first requests apart from it.
    first_requests_apart = True

    def wait_started(self):
        """Until the port takes connections, no request sent: the start-up alone."""
        for _ in range(600):
            if self.proc.poll() is not None:
                sys.exit(f"{self.proc.args[0]} exited with {self.proc.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                # What follows the bind (the summary, the start of the accept loop) runs too.
                time.sleep(0.2)
                return
            except OSError:
                time.sleep(0.01)
        sys.exit(f"{self.proc.args[0]} did not listen on 127.0.0.1:{self.port} within 6 s")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()

    def serving_pid(self):
        return self.proc.pid


class Shim:
    """`ctr run --runtime io.containerd.wisp.v1` of a hello image, under a containerd of its
    own (installed by scripts/install-containerd.sh), with containerd's precompiled code
    from an earlier container: the shim process and the container's process."""

    name = "containerd-shim-wisp-v1"
    apps = [None]
    path = "/"

    def __init__(self, work, probe, port, _app):
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

    def ctr(self, *args, check=True, output=False):
        return subprocess.run([os.path.join(self.bin, "ctr"), "--address",
                               os.path.join(self.work, "c.sock"), "--namespace", "probe", *args],
                              check=check, text=True,
                              **(dict(capture_output=True) if output else QUIET))

    def run(self, container):
        self.ctr("run", "-d", "--net-host", "--runtime", "io.containerd.wisp.v1", "--env",
                 f"SPIN_HTTP_LISTEN_ADDR=127.0.0.1:{self.port}", "--env", "WISP_LOG=warn",
                 # The container's process idles 5 s at most here, but keeps all pages anyway.
                 "--env", "WISP_KEEP_STARTUP_CODE=1",
                 "localhost/hello:latest", container, "/")
        self.container = container

    def wait_ready(self):
        wait_ready(self.port, self.containerd, self.path)

    # A pod's start includes its first requests (containerd's set-up runs beside them).
    first_requests_apart = False
    wait_started = wait_ready

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

    def serving_pid(self):
        """The container's process (its task's pid)."""
        for line in self.ctr("tasks", "ls", output=True).stdout.splitlines()[1:]:
            fields = line.split()
            if fields[0] == self.container:
                return int(fields[1])
        sys.exit(f"no task {self.container} in `ctr tasks ls`")


def code_pages(pids, probe):
    """Per pid: (its code mapping, the link-relative page numbers present in it)."""
    found = {}
    for pid in pids:
        base, start, end = code_mapping(pid, probe)
        found[pid] = ((start, end), {p - base // PAGE for p in present_pages(pid, start, end)})
    return found


def page_out_code(found):
    """Pages out the code mappings of `code_pages`'s answer."""
    for pid, ((start, end), _) in found.items():
        page_out(pid, start, end)


def probe_once(scenario, app, binary):
    """One start of a copy of `binary` with read-ahead off: the code pages (link-relative
    page numbers, all processes together) that the start ran, and that serving ran."""
    work = tempfile.mkdtemp(prefix="symbol-order-", dir=os.path.dirname(os.path.abspath(binary)))
    run = None
    try:
        # A copy on the same (disk) file system, so its pages can be evicted and refetched.
        os.mkdir(os.path.join(work, "bin"))
        probe = os.path.join(work, "bin", scenario.name)
        shutil.copy2(binary, probe)
        port = free_port()
        run = scenario(work, probe, port, app)
        run.warm_up()
        evict(probe)
        # Processes keep the setting their binary was opened with.
        with ReadAheadOff(probe):
            run.start()
            run.wait_started()
        try:
            pids = processes_of(probe)
            first = {}
            if run.first_requests_apart:
                # The first requests on their own: what they run beyond the start-up.
                at_start = code_pages(pids, probe)
                page_out_code(at_start)
                for _ in range(20):
                    get(port, run.path)
                first = code_pages(pids, probe)
            else:
                for _ in range(20):
                    get(port, run.path)
                at_start = code_pages(pids, probe)
            page_out_code(at_start)
            left = sum(len(pages) for _, pages in code_pages(pids, probe).values())
            exercise(port, run.path, 3)
            serving = code_pages(pids, probe)
            server = run.serving_pid()
        finally:
            run.stop()
    finally:
        if hasattr(run, "close"):
            run.close()
        shutil.rmtree(work, ignore_errors=True)
    # Pages still mapped in other processes too cannot be paged out: the serving process's
    # pages are what serving ran plus some of those; every process's count as ran.
    ran = set().union(*(pages for _, pages in at_start.values()))
    ran |= set().union(*(pages for _, pages in serving.values()))
    first_pages = set().union(*(pages for _, pages in first.values()))
    ran |= first_pages
    serve_pages = serving[server][1]
    kib = PAGE // 1024
    print(f"{app}: {len(pids)} process(es); code pages: ran {len(ran) * kib} KiB, "
          f"first requests {len(first_pages) * kib} KiB, "
          f"{left * kib} KiB left after paging out, serving {len(serve_pages) * kib} KiB")
    return ran, first_pages, serve_pages


def stale(map_path, order_path):
    """Prints how many of the order's names the build behind `map_path` no longer has: the
    linker skips those, so their code lands wherever the default layout puts it."""
    opener = gzip.open if order_path.endswith(".gz") else open
    with opener(order_path, "rt") as f:
        order = [name for name in f.read().split() if not name.startswith("wisp_startup_code_")]
    linked = {symbol for _, _, symbols in text_sections(map_path) for symbol in symbols}
    missing = [name for name in order if name not in linked]
    promoted = sum(".llvm." in name for name in missing)
    share = 100 * len(missing) / max(len(order), 1)
    print(f"{len(missing)} of {len(order)} names ({share:.1f}%) are not in this build "
          f"({promoted} of them LLVM-promoted locals, renamed by any change to their crate)")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--stale"] and len(args) == 3:
        stale(args[1], args[2])
        return
    scenario = WispUp
    if args[:1] == ["--shim"]:
        scenario, args = Shim, args[1:]
    if len(args) != 3:
        sys.exit(__doc__)
    binary, map_path, out = args
    if os.geteuid() != 0:
        sys.exit("run as root: it reads /proc/PID/pagemap and evicts the binary from the page cache")
    ran_pages, first_pages, serve_pages = set(), set(), set()
    for app in scenario.apps:
        ran, first, serving = probe_once(scenario, app, binary)
        ran_pages |= ran
        first_pages |= first
        serve_pages |= serving
    sections = text_sections(map_path)
    markers = {"wisp_startup_code_begin", "wisp_startup_code_end"}
    serve = [s for s in symbols_on(serve_pages, sections) if s not in markers]
    listed = set(serve) | markers
    # What only the first requests ran (a connection's and a pool slot's first use), next
    # to the serving code and outside the group unmapped once serving: the first request
    # after that unmapping finds it together instead of spread over the start-up code.
    first_only = [s for s in symbols_on(first_pages, sections) if s not in listed]
    listed |= set(first_only)
    start_only = [s for s in symbols_on(ran_pages, sections) if s not in listed]
    # The markers around the start-only group: `wisp up` unmaps what lies between them
    # once it serves (wisp_engine::release_startup_code).
    order = (serve + first_only + ["wisp_startup_code_begin"] + start_only
             + ["wisp_startup_code_end"])
    with open(out, "w") as f:
        f.write("\n".join(order) + "\n")
    print(f"{len(sections)} sections in the map")
    print(f"wrote {out}: {len(serve)} serve symbols, {len(first_only)} first-request "
          f"symbols, then {len(start_only)} start-only symbols")


if __name__ == "__main__":
    main()
