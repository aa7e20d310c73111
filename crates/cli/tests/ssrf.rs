//! SSRF, tried for real: each test builds a network namespace of its own (`ip netns`, torn
//! down afterwards) whose loopback device carries a "public" address (`11.22.33.44`, global
//! but existing only inside the namespace), a private one, a unique-local IPv6 one and the
//! cloud metadata address, and whose own DNS server (Debian's `dnsmasq`, bound inside the
//! namespace) gives granted names any of those answers. `wisp up` runs inside the namespace
//! (`ip netns exec`, which also gives it the namespace's `resolv.conf`), and so does a
//! sentinel listener on every address, which counts each connection by the address it
//! reached.
//!
//! Every forbidden case (a granted name resolving to loopback, metadata, private or
//! unique-local addresses, an IPv4-mapped answer, a name whose answer changes between
//! requests, a redirect, numeric IPv4 spellings, IPv6 zone ids, userinfo tricks) must be
//! refused with **zero** connections reaching the sentinel on a forbidden address; the
//! allowed cases must still reach it. The same for outbound HTTP, Redis, PostgreSQL, MySQL,
//! MQTT and `wasi:sockets` TCP. Each test prints its table of cases with
//! `cargo test -p wisp-cli --test ssrf -- --nocapture`.
//!
//! Needs root, `ip` (iproute2), `dnsmasq` (dnsmasq-base) and `redis-server`;
//! `scripts/test.sh` installs them.

mod support;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use support::{KillOnDrop, Redis, Wisp, encode, request, toml_path};
use wisp_test_programs as programs;

/// A globally routable address that exists only on the namespace's loopback device.
const PUBLIC: &str = "11.22.33.44";
/// The port the sentinel listens on, on every address of the namespace.
const SENTINEL_PORT: u16 = 7000;
/// The port of the real Redis server on [`PUBLIC`].
const REDIS_PORT: u16 = 6379;

/// Addresses added to the namespace's loopback device (it has `127.0.0.1` and `::1`).
const EXTRA_ADDRESSES: &[&str] = &[
    "11.22.33.44/32",
    "10.77.0.1/32",
    "169.254.169.254/32",
    "fd77::1/128",
    "fe80::1/64",
];

/// The namespace's DNS: `name.ssrf.test` → address (a name may have several).
const RECORDS: &[(&str, &str)] = &[
    ("public", PUBLIC),
    ("loopback", "127.0.0.1"),
    ("loopback6", "::1"),
    ("mapped", "::ffff:127.0.0.1"),
    ("metadata", "169.254.169.254"),
    ("private", "10.77.0.1"),
    ("ula", "fd77::1"),
    ("mixed", "127.0.0.1"),
    ("mixed", PUBLIC),
    ("rebind", PUBLIC),
];

/// Names whose every answer is forbidden once the operator blocks `private`.
const FORBIDDEN_NAMES: &[&str] = &[
    "loopback",
    "loopback6",
    "mapped",
    "metadata",
    "private",
    "ula",
];

/// Spellings of forbidden addresses, tried by components granted every host (`*`) on the
/// sentinel's port, so only the resolved-address check stands between them and the
/// sentinel. Each is `host` as it appears in a URL authority.
const FORBIDDEN_SPELLINGS: &[&str] = &[
    "127.0.0.1",
    "2130706433", // decimal
    "0177.0.0.1", // octal
    "0x7f.0.0.1", // hex
    "0x7f000001",
    "127.1",
    "0.0.0.0",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]", // deprecated IPv4-compatible
    "169.254.169.254",
    "0xa9fea9fe",     // 169.254.169.254 in hex
    "[fe80::1%25lo]", // zone id, percent-encoded as in a URL
    "10.77.0.1",
    "[fd77::1]",
];

fn ssrf_name(short: &str) -> String {
    format!("{short}.ssrf.test")
}

// ---------------------------------------------------------------------------
// The namespace

static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

/// A network namespace with its own DNS and sentinel. The creating thread (the test)
/// moves into it, so the test's own sockets live there too; dropping it moves the
/// thread back and deletes the namespace.
struct Lab {
    name: String,
    dir: tempfile::TempDir,
    hosts_file: PathBuf,
    dns_log: PathBuf,
    dns: Option<KillOnDrop>,
    redis: Option<KillOnDrop>,
    sentinel: Sentinel,
    home: File,
}

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args([
            "-c",
            &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the ssrf tests need {tool} (Debian package {package}); run scripts/test.sh, which installs it"
    );
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Lab {
    fn start() -> Lab {
        assert!(
            rustix::process::geteuid().is_root(),
            "the ssrf tests create network namespaces and must run as root"
        );
        require("ip", "iproute2");
        require("dnsmasq", "dnsmasq-base");
        require("redis-server", "redis-server");
        let name = format!(
            "wisp-ssrf-{}-{}",
            std::process::id(),
            NAMESPACES.fetch_add(1, Ordering::Relaxed)
        );
        sweep_stale_namespaces();
        let home = File::open("/proc/thread-self/ns/net").expect("open this thread's netns");
        let dir = tempfile::tempdir().unwrap();
        let hosts_file = dir.path().join("hosts");
        let dns_log = dir.path().join("dns.log");
        write_records(&hosts_file, RECORDS);
        // Built before the namespace exists, so a failure from here on removes it.
        let mut lab = Lab {
            name,
            hosts_file,
            dns_log,
            dir,
            dns: None,
            redis: None,
            sentinel: Sentinel::default(),
            home,
        };
        ip(&["netns", "add", &lab.name]);
        ip(&["-n", &lab.name, "link", "set", "lo", "up"]);
        for address in EXTRA_ADDRESSES {
            ip(&["-n", &lab.name, "addr", "add", address, "dev", "lo"]);
        }
        let etc = lab.etc_dir();
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n",
        )
        .unwrap();

        let netns = File::open(Path::new("/run/netns").join(&lab.name)).expect("open the netns");
        move_into_link_name_space(netns.as_fd(), Some(LinkNameSpaceType::Network))
            .expect("enter the netns");
        lab.sentinel = Sentinel::start();

        let dns = lab
            .exec("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
            ])
            .args([
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
            ])
            // Names under ssrf.test without a record of the asked type get an empty
            // answer, not a refusal.
            .args(["--local=/ssrf.test/", "--user=root", "--log-queries"])
            .arg(format!("--addn-hosts={}", lab.hosts_file.display()))
            .arg(format!("--log-facility={}", lab.dns_log.display()))
            // Its own pid file: the default one is shared by every dnsmasq on the machine.
            .arg(format!(
                "--pid-file={}",
                lab.dir.path().join("dnsmasq.pid").display()
            ))
            .spawn()
            .expect("start dnsmasq");
        lab.dns = Some(KillOnDrop(dns));
        lab.wait_for_answer("public", PUBLIC);
        control(&lab);
        lab
    }

    fn etc_dir(&self) -> PathBuf {
        Path::new("/etc/netns").join(&self.name)
    }

    /// `ip netns exec <ns> <program>`: inside the namespace, with its `resolv.conf`.
    fn exec(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .stdin(Stdio::null());
        command
    }

    /// What the namespace's resolver answers for `short.ssrf.test`.
    fn resolve(&self, short: &str) -> String {
        let output = self
            .exec("getent")
            .args(["ahostsv4", &ssrf_name(short)])
            .output()
            .expect("run getent");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn wait_for_answer(&self, short: &str, address: &str) {
        let start = Instant::now();
        while !self.resolve(short).contains(address) {
            if start.elapsed() > Duration::from_secs(30) {
                let pid = self.dns.as_ref().map(|d| d.id());
                let state =
                    pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok());
                panic!(
                    "the namespace's dnsmasq (pid {pid:?}, /proc stat {state:?}) did not answer {short} with {address}; log:\n{}",
                    std::fs::read_to_string(&self.dns_log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Changes the DNS records and waits until the resolver gives `short` its new answer.
    fn rebind(&self, short: &str, address: &str) {
        let records: Vec<(&str, &str)> = RECORDS
            .iter()
            .map(|&(name, old)| (name, if name == short { address } else { old }))
            .collect();
        write_records(&self.hosts_file, &records);
        let pid = self.dns.as_ref().unwrap().id();
        support::signal(pid, "-HUP");
        self.wait_for_answer(short, address);
    }

    /// DNS queries of `qtype` for `short.ssrf.test` seen so far.
    fn dns_queries(&self, qtype: &str, short: &str) -> usize {
        let needle = format!("query[{qtype}] {} ", ssrf_name(short));
        std::fs::read_to_string(&self.dns_log)
            .unwrap_or_default()
            .matches(&needle)
            .count()
    }

    /// A real Redis server on the public address.
    fn start_redis(&mut self) {
        let redis = self
            .exec("redis-server")
            .args(["--bind", PUBLIC, "--port", &REDIS_PORT.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.redis = Some(KillOnDrop(redis));
        let start = Instant::now();
        let url = format!("redis://{PUBLIC}:{REDIS_PORT}");
        let mut redis = loop {
            match Redis::connect(&url) {
                Ok(redis) => break redis,
                Err(e) => assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "redis did not start: {e}"
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // The value `/redis/check` expects to find, written by the test.
        redis
            .command(&["SET", "ssrf:from-test", "set by the test"])
            .expect("SET in the namespace's redis");
    }

    /// `wisp up` inside the namespace.
    fn up(&self, manifest: &str, runtime_config: Option<&str>) -> Wisp {
        let app = self.dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("spin.toml"), manifest).unwrap();
        let mut command = self.exec(env!("CARGO_BIN_EXE_wisp"));
        command.env_remove("WISP_MANIFEST");
        command.arg("up").arg("-f").arg(app.join("spin.toml"));
        if let Some(config) = runtime_config {
            let path = app.join("runtime-config.toml");
            std::fs::write(&path, config).unwrap();
            command.arg("--runtime-config-file").arg(path);
        }
        Wisp::spawn(command).unwrap_or_else(|(status, stderr)| {
            panic!("wisp up in the namespace exited with {status}:\n{stderr}")
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.redis.take();
        self.dns.take();
        let _ = move_into_link_name_space(self.home.as_fd(), Some(LinkNameSpaceType::Network));
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(self.etc_dir());
    }
}

/// Removes the namespaces (and their `/etc/netns` files) of test processes that died
/// without cleaning up (killed, or timed out).
fn sweep_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("wisp-ssrf-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let _ = Command::new("ip").args(["netns", "delete", &name]).status();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&name));
    }
}

fn write_records(path: &Path, records: &[(&str, &str)]) {
    let text: String = records
        .iter()
        .map(|(name, address)| format!("{address} {}\n", ssrf_name(name)))
        .collect();
    std::fs::write(path, text).unwrap();
}

// ---------------------------------------------------------------------------
// The sentinel

/// A listener on every address of the namespace (port [`SENTINEL_PORT`]) that records
/// the local address each connection reached. It answers HTTP with `reached <address>`
/// (or a redirect to loopback for `/redirect`), echoes other bytes once the peer stops
/// sending, and closes after a second of silence (so database clients waiting for a
/// greeting fail fast).
#[derive(Default, Clone)]
struct Sentinel {
    /// Each connection: the local address it reached and the peer it came from.
    reached: Arc<Mutex<Vec<(IpAddr, SocketAddr)>>>,
}

impl Sentinel {
    fn start() -> Sentinel {
        let listener = TcpListener::bind(("::", SENTINEL_PORT)).expect("bind the sentinel");
        let sentinel = Sentinel::default();
        let reached = sentinel.reached.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let local = stream.local_addr().unwrap().ip().to_canonical();
                let peer = stream.peer_addr().unwrap();
                let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                reached.lock().unwrap().push((local, peer));
                std::thread::spawn(move || answer(stream, local));
            }
        });
        sentinel
    }

    /// The addresses reached since the last call. A barrier connection of the test's own
    /// goes through the same accept queue last, so a connection made just before (even
    /// one dropped at once) is counted here and not blamed on the next case.
    fn take(&self) -> Vec<IpAddr> {
        let barrier = TcpStream::connect(("127.0.0.1", SENTINEL_PORT)).expect("barrier");
        let me = barrier.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut reached = self.reached.lock().unwrap();
            if let Some(at) = reached.iter().position(|(_, peer)| *peer == me) {
                let mut before: Vec<IpAddr> = reached.drain(..=at).map(|(ip, _)| ip).collect();
                before.pop();
                return before;
            }
            drop(reached);
            assert!(
                Instant::now() < deadline,
                "the sentinel never saw the barrier"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn answer(mut stream: TcpStream, local: IpAddr) {
    stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let mut ended = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                ended = true;
                break;
            }
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                if data.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let reply = if data.starts_with(b"GET /redirect ") {
        format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{SENTINEL_PORT}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .into_bytes()
    } else if data.windows(5).any(|w| w == b"HTTP/") {
        let body = format!("reached {local}");
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    } else if ended {
        data
    } else {
        Vec::new()
    };
    let _ = stream.write_all(&reply);
}

// ---------------------------------------------------------------------------
// The app

/// One line of a test's table: what was tried, what the guest got, where it connected.
struct Case {
    what: String,
    answer: String,
    reached: Vec<IpAddr>,
}

#[derive(Default)]
struct Table {
    cases: Vec<Case>,
}

impl Table {
    fn record(&mut self, what: String, answer: String, reached: Vec<IpAddr>) -> &Case {
        let answer = answer.trim().replace('\n', " | ");
        self.cases.push(Case {
            what,
            answer,
            reached,
        });
        self.cases.last().unwrap()
    }

    fn print(&self, title: &str) {
        let refused = self.cases.iter().filter(|c| c.reached.is_empty()).count();
        println!(
            "\n{title}: {} cases, {refused} with 0 connections",
            self.cases.len()
        );
        for case in &self.cases {
            let reached: Vec<String> = case.reached.iter().map(ToString::to_string).collect();
            println!(
                "  {:<58} reached [{}]  {}",
                case.what,
                reached.join(", "),
                case.answer
            );
        }
    }
}

fn grants(entries: &[String]) -> String {
    let quoted: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    format!("allowed_outbound_hosts = [{}]", quoted.join(", "))
}

/// Every scheme the tests use, granted for each named host on `port`.
fn named_grants(schemes: &[&str], names: &[&str], port: u16) -> Vec<String> {
    schemes
        .iter()
        .flat_map(|scheme| {
            names
                .iter()
                .map(move |name| format!("{scheme}://{}:{port}", ssrf_name(name)))
        })
        .collect()
}

/// The app: for each guest, a component granted the test names one by one (`strict`) and
/// one granted every host on the sentinel's port (`wild`).
fn manifest() -> String {
    let mut names: Vec<&str> = RECORDS.iter().map(|(name, _)| *name).collect();
    names.dedup();
    let wild = |schemes: &[&str]| -> Vec<String> {
        schemes
            .iter()
            .map(|scheme| format!("{scheme}://*:{SENTINEL_PORT}"))
            .collect()
    };
    let mut strict_caps = named_grants(&["http", "redis"], &names, SENTINEL_PORT);
    strict_caps.push(format!("redis://{}:{REDIS_PORT}", ssrf_name("public")));
    let components = [
        ("strict-caps", programs::CAPS_V5, strict_caps),
        ("wild-caps", programs::CAPS_V5, wild(&["http", "redis"])),
        (
            "strict-db",
            programs::RDBMS_V5,
            named_grants(&["postgres", "mysql"], &names, SENTINEL_PORT),
        ),
        ("wild-db", programs::RDBMS_V5, wild(&["postgres", "mysql"])),
        (
            "strict-net",
            programs::NET_V5,
            named_grants(&["mqtt", "tcp"], &names, SENTINEL_PORT),
        ),
        ("wild-net", programs::NET_V5, wild(&["mqtt", "tcp"])),
    ];
    let mut manifest = String::from("spin_manifest_version = 2\n[application]\nname = \"ssrf\"\n");
    for (id, source, entries) in components {
        manifest.push_str(&format!(
            "\n[[trigger.http]]\nroute = \"/{id}/...\"\ncomponent = \"{id}\"\n\n[component.{id}]\nsource = {}\n{}\n",
            toml_path(source),
            grants(&entries)
        ));
    }
    manifest
}

/// The non-HTTP outbound kinds, each with the guest that makes such calls.
const SERVICE_KINDS: [(&str, &str); 5] = [
    ("caps", "redis"),
    ("db", "postgres"),
    ("db", "mysql"),
    ("net", "mqtt"),
    ("net", "tcp"),
];

const BLOCK_PRIVATE: &str = "[outbound_networking]\nblock_networks = [\"private\"]\n";

/// Talks to the app's components and records where each call connected.
struct Attacker<'a> {
    lab: &'a Lab,
    wisp: &'a Wisp,
    table: Table,
}

impl<'a> Attacker<'a> {
    fn new(lab: &'a Lab, wisp: &'a Wisp) -> Self {
        Attacker {
            lab,
            wisp,
            table: Table::default(),
        }
    }

    fn get(&self, path: &str) -> String {
        let response = request(self.wisp.addr, "GET", path, &[], b"");
        format!("{} {}", response.status, response.text())
    }

    fn post(&self, path: &str) -> String {
        let response = request(self.wisp.addr, "POST", path, &[], b"payload");
        format!("{} {}", response.status, response.text())
    }

    fn record(&mut self, what: String, answer: String) -> &Case {
        let reached = self.lab.sentinel.take();
        self.table.record(what, answer, reached)
    }

    /// One outbound call of `kind` from `component` to `host` (as in a URL authority,
    /// without the port) on `port`.
    fn call(&mut self, component: &str, kind: &str, host: &str, port: u16) -> &Case {
        let answer = match kind {
            "http" => self.get(&format!(
                "/{component}/http?url={}",
                encode(&format!("http://{host}:{port}/"))
            )),
            "redis" => self.get(&format!(
                "/{component}/redis/open?addr={}",
                encode(&format!("redis://{host}:{port}"))
            )),
            "postgres" => self.get(&format!(
                "/{component}/open?iface=pg3&address={}",
                encode(&format!("postgres://wisp:wisp@{host}:{port}/wisp"))
            )),
            "mysql" => self.get(&format!(
                "/{component}/open?iface=mysql&address={}",
                encode(&format!("mysql://wisp:wisp@{host}:{port}/wisp"))
            )),
            "mqtt" => self.post(&format!(
                "/{component}/mqtt/publish?address={}&username=wisp&password=wisp&topic=t&qos=0",
                encode(&format!("mqtt://{host}:{port}?client_id=ssrf"))
            )),
            "tcp" => self.get(&format!(
                "/{component}/tcp/echo?addr={}&message=hello",
                encode(&format!("{}:{port}", host.replace("%25", "%")))
            )),
            other => panic!("unknown kind {other}"),
        };
        self.record(format!("{component} {kind} {host}:{port}"), answer)
    }

    fn assert_refused(&mut self, component: &str, kind: &str, host: &str) {
        let case = self.call(component, kind, host, SENTINEL_PORT);
        assert!(
            case.reached.is_empty(),
            "{}: connected to {:?} (answer {:?})",
            case.what,
            case.reached,
            case.answer
        );
        assert!(
            !case.answer.contains("reached") && !case.answer.contains("echo hello"),
            "{}: the guest got an answer from the sentinel: {:?}",
            case.what,
            case.answer
        );
    }

    fn assert_reaches_public(&mut self, component: &str, kind: &str, host: &str) -> String {
        let case = self.call(component, kind, host, SENTINEL_PORT);
        let public: IpAddr = PUBLIC.parse().unwrap();
        assert_eq!(
            case.reached,
            vec![public],
            "{}: expected one connection to {PUBLIC} (answer {:?})",
            case.what,
            case.answer
        );
        case.answer.clone()
    }
}

/// Checks the sentinel can be reached on every address the tests forbid, so a refusal
/// in the tests is Wisp's doing, not an unreachable address.
fn control(lab: &Lab) {
    let mut addresses: Vec<SocketAddr> = [
        "127.0.0.1",
        "0.0.0.0",
        "::1",
        "10.77.0.1",
        "169.254.169.254",
        "fd77::1",
        PUBLIC,
    ]
    .iter()
    .map(|a| SocketAddr::new(a.parse().unwrap(), SENTINEL_PORT))
    .collect();
    // `fe80::1` on `lo`, whose interface index is 1 in every namespace.
    addresses.push(SocketAddr::V6(SocketAddrV6::new(
        "fe80::1".parse().unwrap(),
        SENTINEL_PORT,
        0,
        1,
    )));
    for addr in &addresses {
        TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("control: the sentinel is unreachable on {addr}: {e}"));
    }
    assert_eq!(
        lab.sentinel.take().len(),
        addresses.len(),
        "control connections counted"
    );
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn outbound_http_never_reaches_a_forbidden_address() {
    let lab = Lab::start();
    let wisp = lab.up(&manifest(), Some(BLOCK_PRIVATE));
    let mut attacker = Attacker::new(&lab, &wisp);

    // Allowed: the public name, a name with a public and a loopback answer (only the
    // public one is dialled), spellings of the public name.
    for host in ["public", "mixed"] {
        let answer = attacker.assert_reaches_public("strict-caps", "http", &ssrf_name(host));
        assert!(answer.contains(&format!("reached {PUBLIC}")), "{answer}");
    }
    attacker.assert_reaches_public("strict-caps", "http", "PUBLIC.ssrf.test");
    attacker.assert_reaches_public("wild-caps", "http", PUBLIC);

    // Granted names whose answers are forbidden addresses.
    for name in FORBIDDEN_NAMES {
        for component in ["strict-caps", "wild-caps"] {
            attacker.assert_refused(component, "http", &ssrf_name(name));
        }
    }
    // Forbidden addresses however they are spelt, with every host granted.
    for spelling in FORBIDDEN_SPELLINGS {
        attacker.assert_refused("wild-caps", "http", spelling);
    }
    // Userinfo tricks: the host is what follows the last `@`, so these are refused...
    for host in [
        format!("public.ssrf.test:{SENTINEL_PORT}@127.0.0.1"),
        "public.ssrf.test@127.0.0.1".to_owned(),
        "public.ssrf.test%40127.0.0.1".to_owned(),
        "127.0.0.1#@public.ssrf.test".to_owned(),
        "127.0.0.1\\@public.ssrf.test".to_owned(),
    ] {
        attacker.assert_refused("strict-caps", "http", &host);
    }
    // ...and these go to the granted public name, whatever the userinfo says.
    for host in [
        "127.0.0.1%23@public.ssrf.test",
        "127.0.0.1:7000@public.ssrf.test",
    ] {
        attacker.assert_reaches_public("strict-caps", "http", host);
    }
    // A redirect to loopback is returned to the guest, never followed.
    let answer = attacker.get(&format!(
        "/strict-caps/http?url={}",
        encode(&format!("http://public.ssrf.test:{SENTINEL_PORT}/redirect"))
    ));
    let case = attacker.record("strict-caps http public → 302 to loopback".into(), answer);
    assert_eq!(case.reached, vec![PUBLIC.parse::<IpAddr>().unwrap()]);
    assert!(
        case.answer.contains("status 302"),
        "the guest sees the redirect: {:?}",
        case.answer
    );

    attacker
        .table
        .print("outbound HTTP, block_networks = [\"private\"]");
}

#[test]
fn a_name_rebound_to_loopback_is_refused_at_the_next_call() {
    let lab = Lab::start();
    let wisp = lab.up(&manifest(), Some(BLOCK_PRIVATE));
    let mut attacker = Attacker::new(&lab, &wisp);
    let rebind = ssrf_name("rebind");
    attacker.assert_reaches_public("strict-caps", "http", &rebind);
    attacker.assert_reaches_public("strict-net", "tcp", &rebind);
    attacker.assert_reaches_public("strict-caps", "redis", &rebind);

    lab.rebind("rebind", "127.0.0.1");
    // dnsmasq writes its log a moment after answering.
    let settle = || std::thread::sleep(Duration::from_millis(300));
    settle();
    let before = lab.dns_queries("A", "rebind");
    attacker.assert_refused("strict-caps", "http", &rebind);
    attacker.assert_refused("strict-net", "tcp", &rebind);
    attacker.assert_refused("strict-caps", "redis", &rebind);
    attacker.assert_refused("strict-db", "postgres", &rebind);
    attacker.assert_refused("strict-net", "mqtt", &rebind);
    settle();
    // Every refused call asked DNS afresh (for TCP, the guest's own lookup; the blocked
    // address is refused at connect before any grant is looked up): no earlier answer was
    // cached into a permission. The address checked is the address dialled, so there is
    // no second answer to differ.
    let queries = lab.dns_queries("A", "rebind") - before;

    // Back to public: the grant follows DNS, nothing stale was kept either way.
    lab.rebind("rebind", PUBLIC);
    attacker.assert_reaches_public("strict-caps", "http", &rebind);
    attacker
        .table
        .print("rebinding, block_networks = [\"private\"]");
    println!("A queries for {rebind} during the 5 refused calls: {queries}");
    assert!(
        queries >= 5,
        "each refused call asked DNS (saw {queries} queries)"
    );
}

#[test]
fn redis_databases_mqtt_and_tcp_never_reach_a_forbidden_address() {
    let mut lab = Lab::start();
    lab.start_redis();
    let wisp = lab.up(&manifest(), Some(BLOCK_PRIVATE));
    let mut attacker = Attacker::new(&lab, &wisp);
    let kinds = SERVICE_KINDS;
    // Allowed: each protocol reaches the public address (only Redis has a real server
    // there; the others reach the sentinel and fail at the protocol).
    for (guest, kind) in kinds {
        if kind != "redis" {
            for name in ["public", "mixed"] {
                attacker.assert_reaches_public(&format!("strict-{guest}"), kind, &ssrf_name(name));
            }
            attacker.assert_reaches_public(&format!("wild-{guest}"), kind, PUBLIC);
        }
    }
    let answer = attacker.get(&format!(
        "/strict-caps/redis/check?addr={}&prefix=ssrf",
        encode(&format!("redis://public.ssrf.test:{REDIS_PORT}"))
    ));
    let case = attacker.record(
        "strict-caps redis check on the public server".into(),
        answer,
    );
    assert!(case.answer.starts_with("200"), "{:?}", case.answer);

    for (guest, kind) in kinds {
        for name in FORBIDDEN_NAMES {
            for component in [format!("strict-{guest}"), format!("wild-{guest}")] {
                attacker.assert_refused(&component, kind, &ssrf_name(name));
            }
        }
        for spelling in FORBIDDEN_SPELLINGS {
            attacker.assert_refused(&format!("wild-{guest}"), kind, spelling);
        }
    }
    attacker
        .table
        .print("Redis, PostgreSQL, MySQL, MQTT, TCP; block_networks = [\"private\"]");
    // Refusals whose WIT error cannot carry the reason still log it for the operator.
    let log = wisp.stderr();
    assert!(
        log.contains("redis address refused: redis://loopback.ssrf.test:7000 resolves only to blocked addresses (127.0.0.1)"),
        "{log}"
    );
}

#[test]
fn without_operator_config_metadata_and_link_local_stay_closed() {
    let lab = Lab::start();
    let wisp = lab.up(&manifest(), None);
    let mut attacker = Attacker::new(&lab, &wisp);
    let kinds = std::iter::once(("caps", "http")).chain(SERVICE_KINDS);
    for (guest, kind) in kinds {
        attacker.assert_refused(&format!("strict-{guest}"), kind, &ssrf_name("metadata"));
        for spelling in [
            "169.254.169.254",
            "0xa9fea9fe",
            "[::ffff:169.254.169.254]",
            "[fe80::1%25lo]",
            "0.0.0.0",
        ] {
            attacker.assert_refused(&format!("wild-{guest}"), kind, spelling);
        }
    }
    // The operator did not block private networks, so a granted loopback name works:
    // the default is Spin's, and `block_networks` is how an operator closes it.
    let case = attacker.call("strict-caps", "http", &ssrf_name("loopback"), SENTINEL_PORT);
    assert_eq!(case.reached, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    attacker
        .table
        .print("metadata and link-local with no runtime config");
}
