//! Builds the guest workspace `tests/programs` for `wasm32-wasip2` and writes
//! `$OUT_DIR/programs.rs` with one path constant per guest component.
//!
//! The guests are built by a nested `cargo build` into `target/guest-programs`
//! at the repository root, a fixed directory, so every outer profile and
//! command (build, test, clippy) shares one guest build.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `(constant, cargo package, doc comment)` for every guest component.
const GUESTS: &[(&str, &str, &str)] = &[
    (
        "WAGI",
        "wagi",
        "A WASI command (`wasi:cli/run`) for the wagi executor: a CGI program answering by `PATH_INFO` (`/env`, `/echo`, `/status`, `/redirect`, `/silent`, `/exit`, `/panic`, `/stderr`, else `Hello from wagi`); see `tests/programs/wagi/src/main.rs`.",
    ),
    (
        "HELLO",
        "hello",
        "WASI 0.2 `wasi:http/incoming-handler`: answers `200`, `content-type: text/plain`, body `Hello from Wisp\\n`.",
    ),
    (
        "ECHO",
        "echo",
        "WASI 0.2: answers `200 text/plain` with `<METHOD> <path-with-query>`, one `name: value` line per request header (sorted by name, then value), an empty line, then the request body.",
    ),
    (
        "P3_HELLO",
        "p3-hello",
        "WASI 0.3 `wasi:http/handler@0.3.0`: answers `200 text/plain` with `Hello from WASI 0.3 <path-with-query>\\n`.",
    ),
    (
        "TRAP",
        "trap",
        "WASI 0.2: the handler panics (`guest asked to trap`), so the call traps.",
    ),
    (
        "SPIN_LOOP",
        "spin-loop",
        "WASI 0.2: on `/loop…` paths the handler spins forever without I/O (only the host's deadline or a cancellation stops it); elsewhere `200` `Hello from Wisp`.",
    ),
    (
        "FAULTS",
        "faults",
        "WASI 0.2: one misbehaviour per path: `/loop` spins, `/memory` grows memory until it traps, `/recursion` overflows the stack, `/huge?mib=N` streams N MiB (default 64), `/dribble` writes a byte every 100 ms forever, `/no-read` answers `ignored` without reading the body, `/write-forever` writes 64 KiB chunks forever ignoring errors; elsewhere `200` `Hello from faults`.",
    ),
    (
        "MEMHOG",
        "memhog",
        "WASI 0.2: the handler allocates and touches 1 MiB blocks forever, until growing memory fails and the guest traps.",
    ),
    (
        "STDIO_LOG",
        "stdio-log",
        "WASI 0.2: writes `hello stdout\\n` to stdout and `hello stderr\\n` to stderr, then answers `200` with `logged\\n`.",
    ),
    (
        "SANDBOX",
        "sandbox",
        "WASI 0.2: answers `200` with one `probe=result` line per sandbox probe: `env GREETING`, `env count`, `file /static/hello.txt`, `write /static/new.txt`, `read /etc/passwd`, `dir /`, `tcp 127.0.0.1:1`.",
    ),
    (
        "SPIN_SDK_V5",
        "spin-sdk-v5",
        "WASI 0.2, built with the Spin Rust SDK `spin-sdk` 5.2 (`#[http_component]`): answers `200`, `content-type: text/plain`, body `Hello from spin-sdk 5 <path>\\n`. Imports only WASI interfaces.",
    ),
    (
        "SPIN_SDK_V7",
        "spin-sdk-v7",
        "WASI 0.3 `wasi:http/handler@0.3.0`, built with the Spin Rust SDK `spin-sdk` 7.0 (`#[http_service]`): answers `200`, `content-type: text/plain`, body `Hello from spin-sdk 7 <path>\\n`, then `chain: <value>\\n` when the request has an `x-chain` header, which it also returns as the response's `x-chain-back`. Imports only WASI interfaces.",
    ),
    (
        "MIDDLEWARE_A",
        "middleware-a",
        "WASI 0.3 HTTP middleware, Spin Rust SDK `spin-sdk` 7.0 `http-middleware` (exports and imports `wasi:http/handler@0.3.0`): appends `middleware-a` to the request's `x-chain` header, calls the next handler, appends `middleware-a` to the response's `x-chain-back` header; a path ending in `/middleware/variable` is answered by it with `middleware-a variable: <value>` or `middleware-a variable error: <Debug>` for the variable `greeting` (`spin:variables/variables@3.0.0`).",
    ),
    (
        "MIDDLEWARE_B",
        "middleware-b",
        "`middleware-a`'s source built under the name `middleware-b`, which it appends and answers with instead.",
    ),
    (
        "CAPS_V5",
        "caps-v5",
        "WASI 0.2, Spin Rust SDK `spin-sdk` 5.2 (`#[http_component]`): exercises Spin host capabilities and asserts inside the guest, answering `200` with the documented body or `500` `<step>: <reason>` (routes match `spin-path-info`; query values are `%XX`-decoded). Routes: `GET /kv/check?store=L` (`fermyon:spin/key-value@2.0.0`, `ok`), `GET /kv/open?store=L` (`opened` or `error: <kind>`), `GET /kv/get?store=L&key=K` (raw value, `404 missing`), `PUT /kv/set?store=L&key=K` (body as value, `stored`), `GET /wasi-kv/check?store=L` (`wasi:keyvalue/{store,batch,atomics}@0.2.0-draft2`, `ok`), `POST /wasi-kv/incr?store=L&key=K&delta=N` (new value), `POST /wasi-kv/cas-append?store=L&key=K&item=X` (appends `X,` by compare-and-swap; number of attempts), `GET /var?name=N` (`fermyon:spin/variables@2.0.0`; value or `error: <kind>: <msg>`), `GET /config?name=N` (`wasi:config/store@0.2.0-draft-2024-09-27`; value, `404 none`), `GET /config/all` (`k=v` lines sorted by key), `GET /sqlite/check?db=L` (`fermyon:spin/sqlite@2.0.0`: value round-trips, syntax and UNIQUE errors; `ok`), `GET /sqlite/open?db=L` (`opened` or `error: <kind>`), `GET /sqlite3/check?db=L` (`spin:sqlite/sqlite@3.0.0` `last-insert-rowid` and `changes`; `ok`), `POST /sqlite/counter?db=L` (upserted counter value), `GET /http?url=U[&method=M]` (one `wasi:http/outgoing-handler` request, no redirects followed, relative URLs allowed: `status <code>\\nlocation: <value or ->\\n\\n<body>` or `error: <ErrorCode>`), `GET /http-many?url=U&n=N` (`sent N` or `failed after K: <ErrorCode>`), `GET /redis/check?addr=A&prefix=P` (`fermyon:spin/redis@2.0.0` set/get/incr/sets/execute/type-error/del/publish on keys `P:*`; reads `P:from-test`, writes `P:from-guest`; `ok <from-test value>`), `GET /redis/open?addr=A` (`opened` or `error: <Error>`).",
    ),
    (
        "CAPS_V7",
        "caps-v7",
        "WASI 0.3 `wasi:http/handler@0.3.0`, Spin Rust SDK `spin-sdk` 7.0 (`#[http_service]`): the `caps-v5` conventions through the SDK's async APIs. Routes: `GET /kv/check?store=L` (`spin:key-value/key-value@3.0.0`, `get-keys` through its stream; `ok`), `GET /kv/open?store=L`, `GET /kv/get?store=L&key=K`, `PUT /kv/set?store=L&key=K` (as in `caps-v5`), `GET /var?name=N` (`spin:variables/variables@3.0.0`), `GET /sqlite/check?db=L` (`spin:sqlite/sqlite@3.1.0` async functions: value round-trips, `last-insert-rowid`, `changes`, syntax and UNIQUE errors; `ok`), `GET /http?url=U[&method=M]` (the `wasi:http@0.3.0` client: `status <code>\\nlocation: <value or ->\\n\\n<body>` or `error: <ErrorCode>`), `GET /redis/check?addr=A&prefix=P` and `GET /redis/open?addr=A` (as in `caps-v5`, through `spin:redis/redis@3.0.0`).",
    ),
    (
        "REDIS_HANDLER",
        "redis-handler",
        "WASI 0.2, Spin Rust SDK `spin-sdk` 5.2 `#[redis_component]` (exports `fermyon:spin/inbound-redis`): prints `got <payload>` per message; `fail` returns an error, `trap` panics, `set <address> <key> <value>` writes through outbound Redis (`fermyon:spin/redis@2.0.0`); `sleep <ms>` sleeps that long.",
    ),
    (
        "REDIS_SUBSCRIBER_V7",
        "redis-subscriber-v7",
        "WASI 0.3, Spin Rust SDK `spin-sdk` 7 `#[redis_subscriber]` (exports `spin:redis/inbound-redis@3.0.0`, async): prints `got <payload>` per message; `fail` returns an error, `set <address> <key> <value>` writes through outbound Redis (`spin:redis/redis@3.0.0`).",
    ),
    (
        "CRON_TICK",
        "cron-tick",
        "Exports `handle-cron-event` of the `fermyon:spin-cron@2.0.0` world (Spin's cron trigger plugin): prints `tick <timestamp> start` / `tick <timestamp> end`; env `TICK_SLEEP_MS=N` sleeps between them, `TICK_FAIL=1` returns an error.",
    ),
    (
        "NET_V5",
        "net-v5",
        "WASI 0.2, Spin Rust SDK `spin-sdk` 5.2 (`#[http_component]`): outbound networking. Routes: `POST /mqtt/publish?address=A&username=U&password=P&topic=T&qos=Q[&count=N][&keep_alive=K]` (`fermyon:spin/mqtt@2.0.0`: publishes the request body N times; `published N` or `error: <Debug>`), `GET /tcp/echo?addr=HOST:PORT&message=M` (`std::net::TcpStream` over `wasi:sockets@0.2`, names looked up: `echo <reply>`, `denied`, or `error: <ErrorKind>: <msg>`), `GET /tcp/listen?addr=IP:PORT` (`std::net::TcpListener::bind`: `listening`, `denied`, or `error: ...`).",
    ),
    (
        "NET_V7",
        "net-v7",
        "WASI 0.3 `wasi:http/handler@0.3.0`, Spin Rust SDK `spin-sdk` 7.0 (`#[http_service]`): the `net-v5` routes through `spin:mqtt/mqtt@3.0.0` (async) and a `wasi:sockets/types@0.3.0` `tcp-socket` (`GET /tcp/echo?addr=IP:PORT&message=M`, IP addresses only).",
    ),
    (
        "RDBMS_V5",
        "rdbms-v5",
        "WASI 0.2, Spin Rust SDK `spin-sdk` 5.2 (`#[http_component]`): outbound PostgreSQL and MySQL through `spin_sdk::pg` (`fermyon:spin/postgres@2.0.0`), `pg3` (`spin:postgres@3.0.0`), `pg4` (`spin:postgres@4.0.0`) and `mysql` (`fermyon:spin/mysql@2.0.0`), selected by `iface=pg2|pg3|pg4|mysql`, connection string in `address`. Routes: `GET /open` (`opened` or `error: <Debug>`), `POST /write?table=T` (row 1 of the documented values; `written`), `GET /read?table=T` (checks column types and rows 1 and 2 exactly; `ok`), `GET /error` (`SELECT * FROM wisp_no_such_table`: `error: <Debug>`), `GET /reuse` (server connection id across two opens: `same <id>` or `different <a> <b>`), `GET /tx` (as `/reuse`, the first connection dropped inside a transaction); `500` `<step>: <reason>` on a failed check.",
    ),
    (
        "RDBMS_V7",
        "rdbms-v7",
        "WASI 0.3 `wasi:http/handler@0.3.0`, Spin Rust SDK `spin-sdk` 7.0 (`#[http_service]`): the `rdbms-v5` routes through `spin:postgres@4.2.0` async functions (`iface=pg`, rows read from the `query-async` stream) and `spin:mysql@3.0.0` (`iface=mysql`), plus `GET /stream?n=N` (streams 1..=N checking count and sum, drops a second stream after 3 rows, then `SELECT 1` on the same connection: `rows N sum S, partial read ok`).",
    ),
    (
        "DEP_ADDER",
        "dep-adder",
        "A component dependency (Spin SIP 020), not an HTTP component: exports `test:calc/adder@0.1.0` (`tests/programs/wit-calc/calc.wit`, world `dep`) and the same functions as the plain-named `offset-adder` (whose `add` is `a + b + 100`, for `export = \"offset-adder\"`). `add(a, b)` is `a + b`; `env(name)` is `std::env::var(name)` as the dependency sees it; `fetch(url)` sends one `GET` through `wasi:http/outgoing-handler@0.2` (`status <code>` or `error: <ErrorCode as Debug>`); `kv()` opens the Spin key-value store `default` (`fermyon:spin/key-value@2.0.0`) and reads key `k` (`ok: <value or none>` or `error: <Error as Debug>`).",
    ),
    (
        "DEP_MAIN",
        "dep-main",
        "WASI 0.2 `wasi:http/incoming-handler` that imports `test:calc/adder@0.1.0` (world `main`; satisfy it with [`DEP_ADDER`] as a `[component.<id>.dependencies]` entry). Routes match `spin-path-info` (else the request path), all `200 text/plain`: `/sum` (`sum=5`, from `add(2, 3)`), `/env/<NAME>` (`main=<value|none> dep=<value|none>`: the component's own variable, then the dependency's `env`), `/fetch?<url>` (the dependency's `fetch(url)`; the raw query is the URL), `/kv` (the dependency's `kv()`); anything else `404` `no route <path>`.",
    ),
    (
        "SPIN1_HTTP",
        "spin1-http",
        "A Spin 1.x HTTP component: exports the unversioned `fermyon:spin/inbound-http` and imports the unversioned `config`, `http`, `key-value`, `sqlite`, `redis`, `postgres`, `mysql` and `llm` (`wit/spin1`, world `http-component`), as spin-sdk 1.x builds one. Routes by the path of the request's `uri`: `/hello` (method, uri, `spin-path-info`, `spin-full-url`, body length, params count), `/echo` (the body, with its `content-type`), `/config?key=K`, `/kv`, `/sqlite`, `/outbound?url=U`, `/redis?addr=A`, `/pg?address=A&table=T`, `/mysql?address=A&table=T` (one line per call), `/llm`, `/status?code=N`; see `tests/programs/spin1-http/src/lib.rs`.",
    ),
    (
        "TOUCH4MIB",
        "touch4mib",
        "WASI 0.2: allocates 4 MiB per request and writes one byte per 4 KiB page; answers `200` with `touched 4194304 bytes sum=130560\\n`.",
    ),
];

/// Variables an outer cargo sets that must not steer the nested guest build:
/// flags and wrappers meant for the host target, the outer target directory,
/// the outer jobserver, and a pinned `rustc` (the toolchain file decides).
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Prefixes of variables scrubbed for the same reason (`CARGO_BUILD_*` covers
/// `CARGO_BUILD_TARGET`, `CARGO_BUILD_RUSTFLAGS`, `CARGO_BUILD_TARGET_DIR`).
const SCRUBBED_PREFIXES: &[&str] = &[
    "CARGO_BUILD_",
    "CARGO_PROFILE_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("the repository root is two levels above crates/test-programs");
    let programs = repo.join("tests/programs");
    let target_dir = repo.join("target/guest-programs");
    let out_dir = PathBuf::from(env("OUT_DIR"));

    emit_rerun_if_changed(&programs, true);

    // The middleware guests on their own: their spin-sdk feature (`http-middleware`) would
    // otherwise be unified into every spin-sdk 7 guest's build and add its import there.
    let middleware = ["middleware-a", "middleware-b"];
    // The legacy-ABI guest is a wasm32-wasip1 core module only.
    let mut others = vec!["--workspace", "--exclude", "spin-legacy-abi"];
    for package in middleware {
        others.extend(["--exclude", package]);
    }
    nested_build(&programs, &target_dir, "wasm32-wasip2", &others);
    nested_build(
        &programs,
        &target_dir,
        "wasm32-wasip2",
        &middleware
            .into_iter()
            .flat_map(|p| ["-p", p])
            .collect::<Vec<_>>(),
    );
    // The same hello guest as a core module (wasm32-wasip1 with wit-bindgen metadata), to
    // test that core modules are componentized at load time; the wagi guest as the
    // core module a CGI-style wagi handler usually is; the Spin 1.x guest as the core
    // module spin-sdk 1.x builds; and the handler written against Spin's pre-component ABI.
    nested_build(
        &programs,
        &target_dir,
        "wasm32-wasip1",
        &[
            "-p",
            "hello",
            "-p",
            "wagi",
            "-p",
            "spin1-http",
            "-p",
            "spin-legacy-abi",
        ],
    );

    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    let mut code = String::new();
    let mut all = String::new();
    for (constant, package, doc) in GUESTS {
        let path = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(
            path.is_file(),
            "the guest build succeeded but {} is missing; is `{package}` a member of \
             tests/programs/Cargo.toml with `crate-type = [\"cdylib\"]` (or a `[[bin]]`)?",
            path.display()
        );
        let path = path.to_str().expect("guest paths are UTF-8");
        writeln!(code, "/// {doc}").unwrap();
        writeln!(code, "///").unwrap();
        writeln!(code, "/// Built from `tests/programs/{package}`.").unwrap();
        writeln!(code, "pub const {constant}: &str = {path:?};").unwrap();
        writeln!(all, "    ({package:?}, {constant}),").unwrap();
    }
    let wasip1 = target_dir.join("wasm32-wasip1/release/hello.wasm");
    assert!(wasip1.is_file(), "{} is missing", wasip1.display());
    writeln!(
        code,
        "/// The `hello` guest built for `wasm32-wasip1`: a core module (not a component) carrying \
         wit-bindgen component-type metadata and importing `wasi_snapshot_preview1`.\n\
         pub const HELLO_WASIP1: &str = {:?};",
        wasip1.to_str().expect("guest paths are UTF-8")
    )
    .unwrap();
    let wagi = target_dir.join("wasm32-wasip1/release/wagi.wasm");
    assert!(wagi.is_file(), "{} is missing", wagi.display());
    writeln!(
        code,
        "/// The `wagi` guest built for `wasm32-wasip1`: a core module exporting `_start` (a \
         WASI preview1 command) with no wit-bindgen metadata, as wagi handlers are built.\n\
         pub const WAGI_WASIP1: &str = {:?};",
        wagi.to_str().expect("guest paths are UTF-8")
    )
    .unwrap();
    let spin1 = target_dir.join("wasm32-wasip1/release/spin1_http.wasm");
    assert!(spin1.is_file(), "{} is missing", spin1.display());
    writeln!(
        code,
        "/// The `spin1-http` guest built for `wasm32-wasip1`: a core module with the Spin 1.x \
         world in its wit-bindgen metadata, as spin-sdk 1.x apps ship.\n\
         pub const SPIN1_HTTP_WASIP1: &str = {:?};",
        spin1.to_str().expect("guest paths are UTF-8")
    )
    .unwrap();
    let legacy = target_dir.join("wasm32-wasip1/release/spin_legacy_abi.wasm");
    assert!(legacy.is_file(), "{} is missing", legacy.display());
    writeln!(
        code,
        "/// The `spin-legacy-abi` guest: a wasm32-wasip1 core module with no wit-bindgen \
         metadata, written against Spin's pre-component ABI (wit-bindgen 0.2) as Spin's \
         TinyGo-based Go SDK lays it out.\n\
         pub const SPIN_LEGACY_ABI_WASIP1: &str = {:?};",
        legacy.to_str().expect("guest paths are UTF-8")
    )
    .unwrap();
    writeln!(
        code,
        "/// Every guest as `(package name, path to its .wasm component)`."
    )
    .unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str)] = &[\n{all}];").unwrap();
    std::fs::write(out_dir.join("programs.rs"), code).expect("writing $OUT_DIR/programs.rs");
}

/// `cargo build --release --target <target> [extra]` of the guest workspace.
fn nested_build(programs: &Path, target_dir: &Path, target: &str, extra: &[&str]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .current_dir(programs)
        .arg("build")
        .arg("--release")
        .args(["--target", target])
        .args(extra)
        .arg("--manifest-path")
        .arg(programs.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if SCRUBBED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            command.env_remove(name.as_ref());
        }
    }

    // Our stdout carries `cargo:` instructions to the outer cargo, so the
    // nested build's output all goes to stderr, where it shows up when this
    // script fails (or always, with `cargo build -vv`).
    command.stdout(std::io::stderr());
    let status = command.status().unwrap_or_else(|e| {
        panic!(
            "could not run `{}` to build the guest programs in {}: {e}",
            cargo.to_string_lossy(),
            programs.display()
        )
    });
    if !status.success() {
        panic!(
            "building the guest programs in {} for {target} failed ({status}); see the compiler \
             output above. If the target is missing, run `rustup target add {target}` \
             (rust-toolchain.toml at the repository root lists it, so a rustup-managed toolchain \
             installs it on first use). To reproduce by hand: \
             `cargo build --release --target {target} --manifest-path tests/programs/Cargo.toml`",
            programs.display()
        );
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// Re-run when anything in the guest workspace changes, without watching
/// `target/`: cargo scans a watched directory recursively, so the root is
/// walked file by file and `target` is skipped.
fn emit_rerun_if_changed(dir: &Path, is_root: bool) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").path())
        .collect();
    entries.sort();
    if !is_root {
        // Watching a member's directory also notices added or removed files.
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    for path in entries {
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            emit_rerun_if_changed(&path, false);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
