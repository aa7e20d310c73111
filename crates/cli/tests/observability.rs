//! Metrics as an operator sees them: a real Prometheus (Debian's `prometheus`, installed
//! by `scripts/test-services.sh`) scrapes `wisp up --metrics-listen`, and PromQL through
//! its HTTP API returns the counts of the traffic the test sent, per component.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{KillOnDrop, Upstream, Wisp, app_dir, encode, request, toml_path};
use wisp_test_programs as programs;

/// A manifest for app `name`: one HTTP route per `(route, id, source, extra)`, `extra`
/// being lines of the component's table.
fn manifest(name: &str, components: &[(&str, &str, &str, &str)]) -> String {
    let mut text = format!("spin_manifest_version = 2\n[application]\nname = \"{name}\"\n");
    for (route, id, source, extra) in components {
        text += &format!(
            "\n[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{id}\"\n\n[component.{id}]\nsource = {}\n{extra}\n",
            toml_path(source)
        );
    }
    text
}

/// A free loopback port (bound and released: Prometheus takes only an address).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus scraping `target` every second, its data in `dir`.
struct Prometheus {
    addr: SocketAddr,
    _process: KillOnDrop,
}

impl Prometheus {
    fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: wisp\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let process = Command::new(support::installed(
            &["prometheus", "/usr/bin/prometheus"],
            "prometheus",
        ))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
        let prometheus = Prometheus {
            addr,
            _process: KillOnDrop(process),
        };
        let started = Instant::now();
        while support::try_request(addr, "GET", "/-/ready", &[], b"")
            .map_or(true, |r| r.status != 200)
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "prometheus did not get ready; its log:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        prometheus
    }

    /// An instant query's result: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let response = request(
            self.addr,
            "GET",
            &format!("/api/v1/query?query={}", encode(promql)),
            &[],
            b"",
        );
        assert_eq!(response.status, 200, "{promql}: {}", response.text());
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        body["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{promql}: no result in {body}"))
            .iter()
            .map(|series| {
                let value = series["value"][1].as_str().unwrap().parse().unwrap();
                (series["metric"].clone(), value)
            })
            .collect()
    }

    /// The single value of `promql`, once Prometheus has scraped what `ready` accepts
    /// (waits up to 30 s for the scrapes to catch up with the traffic).
    fn value_once(&self, promql: &str, ready: impl Fn(f64) -> bool) -> f64 {
        let started = Instant::now();
        loop {
            let result = self.query(promql);
            let value = match result.as_slice() {
                [(_, value)] => Some(*value),
                _ => None,
            };
            if let Some(value) = value
                && ready(value)
            {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{promql}: still {result:?} after 30 s"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// [`Self::value_once`] for an exact value.
    fn wait_for(&self, promql: &str, expected: f64) {
        self.value_once(promql, |value| value == expected);
    }
}

#[test]
fn prometheus_scrapes_requests_faults_cpu_and_capability_use_per_component() {
    let upstream = Upstream::start(|_| ("200 OK", String::new(), b"upstream".to_vec()));
    let grants = format!(
        "allowed_outbound_hosts = [\"{}\"]\nkey_value_stores = [\"default\"]\nsqlite_databases = [\"default\"]",
        upstream.base()
    );
    let manifest = manifest(
        "observed",
        &[
            ("/hello", "hello", programs::HELLO, ""),
            ("/trap", "trap", programs::TRAP, ""),
            ("/fault/...", "faults", programs::FAULTS, ""),
            ("/caps/...", "caps", programs::CAPS_V5, &grants),
        ],
    );
    let dir = app_dir(&manifest);
    let state = dir.path().join("state");
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--request-timeout",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert!(
        wisp.wait_for_output("Metrics: http://"),
        "no metrics address:\n{}",
        wisp.stderr()
    );
    let metrics: SocketAddr = wisp
        .stderr()
        .lines()
        .find_map(|line| {
            line.strip_prefix("Metrics: http://")?
                .strip_suffix("/metrics")
        })
        .expect("the metrics line")
        .parse()
        .unwrap();
    let prometheus_dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(prometheus_dir.path(), metrics);

    let get = |path: &str| wisp.get(path);
    for _ in 0..5 {
        assert_eq!(get("/hello").status, 200);
    }
    assert_eq!(get("/trap").status, 500);
    assert_eq!(get("/fault/loop").status, 504);
    let denied = get(&format!("/caps/http?url={}", encode("http://127.0.0.1:9/")));
    assert_eq!(denied.text(), "error: HttpRequestDenied");
    let granted = get(&format!(
        "/caps/http?url={}",
        encode(&format!("{}/ok", upstream.base()))
    ));
    assert!(
        granted.text().starts_with("status 200"),
        "{}",
        granted.text()
    );
    for _ in 0..2 {
        assert_eq!(get("/caps/kv/check?store=default").text(), "ok");
    }
    let counter = request(
        wisp.addr,
        "POST",
        "/caps/sqlite/counter?db=default",
        &[],
        b"",
    );
    assert_eq!(counter.status, 200, "{}", counter.text());

    let requests = |component: &str, outcome: &str| {
        format!(
            r#"sum(wisp_requests_total{{app="observed",component="{component}",trigger="http",outcome="{outcome}"}})"#
        )
    };
    prometheus.wait_for(&requests("hello", "ok"), 5.0);
    prometheus.wait_for(&requests("trap", "trap"), 1.0);
    prometheus.wait_for(&requests("faults", "deadline"), 1.0);
    prometheus.wait_for(&requests("caps", "ok"), 5.0);
    prometheus.wait_for(
        r#"wisp_requests_total{component="faults",status="5xx",outcome="deadline"}"#,
        1.0,
    );
    prometheus.wait_for(
        r#"wisp_requests_total{component="trap",status="5xx",outcome="trap"}"#,
        1.0,
    );
    prometheus.wait_for(
        r#"wisp_outbound_requests_total{component="caps",kind="http",outcome="denied"}"#,
        1.0,
    );
    prometheus.wait_for(
        r#"wisp_outbound_requests_total{component="caps",kind="http",outcome="ok"}"#,
        1.0,
    );
    prometheus.wait_for(
        r#"wisp_request_duration_seconds_count{component="hello"}"#,
        5.0,
    );
    prometheus.wait_for(
        r#"wisp_instantiate_duration_seconds_count{component="hello"}"#,
        5.0,
    );
    prometheus.wait_for(
        r#"wisp_instance_memory_peak_bytes_count{component="hello"}"#,
        5.0,
    );
    prometheus.wait_for(r#"sum(wisp_instances_active{app="observed"})"#, 0.0);
    prometheus.wait_for(r#"up{job="wisp"}"#, 1.0);

    // The guest's own key-value and SQL calls, counted as the direct scrape counts them.
    let scraped = request(metrics, "GET", "/metrics", &[], b"").text();
    let direct = |series: &str| -> f64 {
        scraped
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} is not in:\n{scraped}"))
    };
    let kv_sets = direct(r#"wisp_kv_operations_total{app="observed",component="caps",op="set"}"#);
    assert!(kv_sets >= 2.0, "{kv_sets}");
    prometheus.wait_for(
        r#"wisp_kv_operations_total{component="caps",op="set"}"#,
        kv_sets,
    );
    let statements = direct(r#"wisp_sqlite_statements_total{app="observed",component="caps"}"#);
    assert!(statements >= 1.0, "{statements}");
    prometheus.wait_for(
        r#"wisp_sqlite_statements_total{component="caps"}"#,
        statements,
    );

    // The looping guest burnt CPU until its 1 s deadline, never more than its wall time
    // (much less on a busy machine: after 5 ms it runs in the idle scheduling class, and a
    // CI run once measured 0.086 s beside the Chromium test); hello's five instances
    // together less still.
    let looped =
        prometheus.value_once(r#"wisp_cpu_seconds_total{component="faults"}"#, |v| v > 0.0);
    assert!(looped < 1.5, "faults CPU {looped} s");
    let hello = prometheus.value_once(r#"wisp_cpu_seconds_total{component="hello"}"#, |v| v > 0.0);
    assert!(
        hello < looped,
        "hello CPU {hello} s vs the loop's {looped} s"
    );
    // The request log shows each request's CPU beside its wall time.
    assert!(
        wisp.stderr().lines().any(|l| l.contains("GET /hello 200")
            && l.contains(" cpu=")
            && l.ends_with("ms component=hello")),
        "{}",
        wisp.stderr()
    );
    // The compile cache: every component either came from it or was compiled once.
    let hits = prometheus.value_once("sum(wisp_compile_cache_hits_total)", |_| true);
    let misses = prometheus.value_once("wisp_compile_cache_misses_total", |_| true);
    assert_eq!(hits + misses, 4.0, "4 components loaded");
    // Process metrics.
    let resident = prometheus.value_once("process_resident_memory_bytes", |v| v > 0.0);
    assert!(resident > 1e6, "{resident}");
}

#[test]
fn the_dashboard_renders_every_component_and_follows_the_traffic() {
    let manifest = manifest(
        "watched",
        &[
            ("/hello", "hello", programs::HELLO, ""),
            ("/trap", "trap", programs::TRAP, ""),
        ],
    );
    let dir = app_dir(&manifest);
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert!(
        wisp.wait_for_output("Dashboard: http://"),
        "{}",
        wisp.stderr()
    );
    let url = wisp
        .stderr()
        .lines()
        .find_map(|line| line.strip_prefix("Dashboard: ").map(str::to_owned))
        .expect("the dashboard line");
    let metrics: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/dashboard")
        .parse()
        .unwrap();

    // The page loads nothing from elsewhere: its policy allows only itself, and its files
    // name no other origin.
    let page = request(metrics, "GET", "/dashboard", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    for file in ["/dashboard", "/dashboard.js", "/dashboard.css"] {
        let text = request(metrics, "GET", file, &[], b"").text();
        assert!(!text.is_empty());
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "{file} names another origin"
        );
    }

    let get = |path: &str| wisp.get(path);
    for _ in 0..3 {
        assert_eq!(get("/hello").status, 200);
    }
    assert_eq!(get("/trap").status, 500);
    let first = support::chromium(&url, 3000, &["--dump-dom"]);
    assert!(
        first.contains("live, updated"),
        "the page did not update:\n{first}"
    );
    let hello = support::rows_with(&first, r#"data-component="hello""#);
    assert_eq!(hello.len(), 1, "{first}");
    assert!(
        hello[0].starts_with(r#"data-app="watched" data-component="hello" data-requests="3""#),
        "{}",
        hello[0]
    );
    let trap = support::rows_with(&first, r#"data-component="trap""#);
    assert_eq!(trap.len(), 1, "{first}");
    assert!(trap[0].contains(r#"data-requests="1""#), "{}", trap[0]);
    assert!(
        trap[0].contains(r#"<td class="n errors bad">trap 1</td>"#),
        "{}",
        trap[0]
    );

    // More traffic: the counts the page shows follow.
    for _ in 0..4 {
        assert_eq!(get("/hello").status, 200);
    }
    let second = support::chromium(&url, 3000, &["--dump-dom"]);
    let hello = support::rows_with(&second, r#"data-component="hello""#);
    assert!(hello[0].contains(r#"data-requests="7""#), "{}", hello[0]);

    // A screenshot for the docs.
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    support::chromium(
        &url,
        3000,
        &[
            "--window-size=1280,400",
            &format!("--screenshot={}", screenshot.display()),
        ],
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
}

use opentelemetry_proto::tonic::trace::v1::Span;
use std::io::{BufReader, Write};
use wisp_test_programs::otlp::{Collector, hex, read_head};

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
        .map(|v| match v {
            opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => s.clone(),
            opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

#[test]
fn traces_reach_an_otlp_collector_with_their_parents_and_the_propagated_traceparent() {
    let collector = Collector::start();
    // An upstream that records the traceparent each request carried.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(&stream);
            if let Some(head) = read_head(&mut reader) {
                let traceparent = head
                    .iter()
                    .find(|(n, _)| n == "traceparent")
                    .map(|(_, v)| v.clone());
                recorded
                    .lock()
                    .unwrap()
                    .push(traceparent.unwrap_or_default());
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                );
            }
        }
    });
    let upstream_base = format!("http://127.0.0.1:{}", upstream_addr.port());
    let redis_url = std::env::var("WISP_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/9".to_owned());
    let redis_host = redis_url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let grants = format!(
        "allowed_outbound_hosts = [\"{upstream_base}\", \"redis://{redis_host}\"]\nkey_value_stores = [\"default\"]"
    );
    let postgres_url = std::env::var("WISP_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        "postgres://wisp:wisp@127.0.0.1:5432/wisp_test?sslmode=disable".to_owned()
    });
    let mysql_url = std::env::var("WISP_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://wisp:wisp@127.0.0.1:3306/wisp_test".to_owned());
    let server_of = |url: &str| {
        let (scheme, rest) = url.split_once("://").unwrap();
        let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
        format!("{scheme}://{}", rest.split(['/', '?']).next().unwrap())
    };
    let db_grants = format!(
        "allowed_outbound_hosts = [\"{}\", \"{}\"]",
        server_of(&postgres_url),
        server_of(&mysql_url)
    );
    // A cron job and a Redis trigger beside the HTTP routes: each tick and each message
    // is a trace of its own.
    let channel = support::unique("wisp-traced-events");
    let text = manifest(
        "traced",
        &[
            ("/caps/...", "caps", programs::CAPS_V5, &grants),
            ("/db/...", "db", programs::RDBMS_V5, &db_grants),
        ],
    ) + &format!(
        "\n[[trigger.cron]]\ncomponent = \"tick\"\ncron_expression = \"* * * * * *\"\n\n[component.tick]\nsource = {}\n",
        toml_path(programs::CRON_TICK)
    ) + &format!(
        "\n[application.trigger.redis]\naddress = \"{redis_url}\"\n\n[[trigger.redis]]\nchannel = \"{channel}\"\ncomponent = \"handler\"\n\n[component.handler]\nsource = {}\nallowed_outbound_hosts = [\"redis://{redis_host}\"]\n",
        toml_path(programs::REDIS_HANDLER)
    );
    let dir = app_dir(&text);
    let state = dir.path().join("state");
    let mut command = support::wisp_command();
    command
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.addr),
        )
        .env("OTEL_SERVICE_NAME", "traced-test")
        .arg("up")
        .args([
            "-f",
            dir.path().join("spin.toml").to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
    let wisp = Wisp::spawn(command).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"));
    assert!(
        wisp.stderr().contains(&format!(
            "Tracing: OTLP spans to http://{}/v1/traces",
            collector.addr
        )),
        "{}",
        wisp.stderr()
    );

    // A request that continues the caller's trace and calls the upstream.
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    let caller_span = "b7ad6b7169203331";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let called = request(
        wisp.addr,
        "GET",
        &format!("/caps/http?url={}", encode(&format!("{upstream_base}/x"))),
        &[("traceparent", &traceparent)],
        b"",
    );
    assert!(called.text().starts_with("status 200"), "{}", called.text());
    // A request without one: a trace of its own, with the key-value calls in it.
    assert_eq!(wisp.get("/caps/kv/check?store=default").text(), "ok");

    let spans = collector.wait_for(|spans| {
        let kv = spans.iter().any(|(_, s)| s.name == "key_value");
        let client = spans
            .iter()
            .any(|(_, s)| hex(&s.trace_id) == caller_trace && s.kind == 3);
        kv && client
    });
    assert!(
        spans
            .iter()
            .all(|(service, _)| service.contains("traced-test")),
        "service.name"
    );
    let in_trace: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| hex(&s.trace_id) == caller_trace)
        .collect();
    let server = in_trace
        .iter()
        .find(|s| s.kind == 2)
        .expect("the server span");
    assert_eq!(
        hex(&server.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, "GET /caps/...");
    assert_eq!(
        attribute(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        attribute(server, "http.route").as_deref(),
        Some("/caps/...")
    );
    let instantiate = in_trace
        .iter()
        .find(|s| s.name == "instantiate")
        .expect("the instantiate span");
    assert_eq!(instantiate.parent_span_id, server.span_id);
    let client = in_trace
        .iter()
        .find(|s| s.kind == 3)
        .expect("the client span");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        attribute(client, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(client.start_time_unix_nano >= server.start_time_unix_nano);
    // The upstream saw the client span as its parent.
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [format!("00-{caller_trace}-{}-01", hex(&client.span_id))]
    );

    let kv: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "key_value")
        .collect();
    let kv_trace = kv[0].trace_id.clone();
    assert_ne!(hex(&kv_trace), caller_trace, "a new trace");
    let kv_server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.trace_id == kv_trace && s.kind == 2)
        .expect("its server span");
    assert!(kv_server.parent_span_id.is_empty(), "a root span");
    assert!(kv.iter().all(|s| s.parent_span_id == kv_server.span_id));
    let operations: Vec<String> = kv
        .iter()
        .filter_map(|s| attribute(s, "db.operation.name"))
        .collect();
    assert!(
        operations.iter().any(|op| op == "set") && operations.iter().any(|op| op == "get"),
        "{operations:?}"
    );
    // The request log names the trace.
    assert!(
        wisp.stderr().contains(&format!("trace_id={caller_trace}")),
        "{}",
        wisp.stderr()
    );

    // Outbound Redis: a client span for the connect and one per command, named by the
    // command, children of the request's server span.
    let prefix = support::unique("wisp-traced");
    let mut redis_client = support::Redis::connect(&redis_url).unwrap_or_else(|e| {
        panic!("this test needs Redis at {redis_url} ({e}); run scripts/test-services.sh")
    });
    redis_client
        .command(&["SET", &format!("{prefix}:from-test"), "set by the test"])
        .unwrap();
    let redis = wisp.get(&format!(
        "/caps/redis/check?addr={}&prefix={prefix}",
        encode(&redis_url)
    ));
    for suffix in ["from-test", "from-guest", "s"] {
        let _ = redis_client.command(&["DEL", &format!("{prefix}:{suffix}")]);
    }
    assert_eq!(
        redis.text(),
        "ok set by the test",
        "the guest's redis round trip"
    );
    // A call the grants do not allow: a failed client span, and a log line with the trace.
    let denied = wisp.get(&format!(
        "/caps/http?url={}",
        encode("http://127.0.0.1:1/x")
    ));
    assert!(denied.text().starts_with("error:"), "{}", denied.text());
    // PostgreSQL and MySQL: a span for the connect and one per statement, a failed
    // statement failed with the server's message.
    let pg = wisp.get(&format!(
        "/db/error?iface=pg3&address={}",
        encode(&postgres_url)
    ));
    assert!(pg.text().starts_with("error:"), "{}", pg.text());
    let mysql = wisp.get(&format!(
        "/db/reuse?iface=mysql&address={}",
        encode(&mysql_url)
    ));
    assert_eq!(mysql.status, 200, "{}", mysql.text());
    let spans = collector.wait_for(|spans| {
        let databases = ["postgresql", "mysql"].iter().all(|system| {
            spans.iter().any(|(_, s)| {
                attribute(s, "db.system.name").as_deref() == Some(*system) && s.name == "query"
            })
        });
        let redis = spans
            .iter()
            .any(|(_, s)| attribute(s, "db.system.name").as_deref() == Some("redis"));
        let denied = spans
            .iter()
            .any(|(_, s)| attribute(s, "wisp.outcome").as_deref() == Some("denied"));
        let cron = spans.iter().any(|(_, s)| s.name.starts_with("cron "));
        redis && denied && cron && databases
    });
    let redis_spans: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| attribute(s, "db.system.name").as_deref() == Some("redis"))
        .collect();
    let redis_trace = redis_spans[0].trace_id.clone();
    let redis_server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.trace_id == redis_trace && s.kind == 2)
        .expect("the redis request's server span");
    assert!(
        redis_spans
            .iter()
            .all(|s| s.parent_span_id == redis_server.span_id && s.kind == 3),
        "client children of the server span"
    );
    let names: Vec<&str> = redis_spans.iter().map(|s| s.name.as_str()).collect();
    for expected in ["connect", "SET", "GET", "SADD", "SMEMBERS"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    // The guest's one failing command (INCR on a non-number) is the one failed span.
    let failed: Vec<(&str, &str)> = redis_spans
        .iter()
        .filter_map(|s| {
            s.status
                .as_ref()
                .filter(|st| st.code == 2)
                .map(|st| (s.name.as_str(), st.message.as_str()))
        })
        .collect();
    assert_eq!(failed, [("INCR", "type error")]);
    let denied_span = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| attribute(s, "wisp.outcome").as_deref() == Some("denied"))
        .unwrap();
    assert_eq!(denied_span.kind, 3);
    let status = denied_span.status.as_ref().expect("a failed status");
    assert_eq!(status.code, 2, "error");
    assert!(
        status.message.contains("allowed_outbound_hosts"),
        "{status:?}"
    );
    let denied_trace = hex(&denied_span.trace_id);
    // The denial's own line (not only the request log line) names the trace.
    assert!(
        wisp.wait_for_output(&format!("to grant it trace_id={denied_trace}")),
        "the denial's log line names its trace: {}",
        wisp.stderr()
    );
    for (system, port) in [("postgresql", "5432"), ("mysql", "3306")] {
        let of_system: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| attribute(s, "db.system.name").as_deref() == Some(system))
            .collect();
        let server = spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| s.trace_id == of_system[0].trace_id && s.kind == 2)
            .expect("the request's server span");
        assert_eq!(server.name, "GET /db/...");
        assert!(
            of_system
                .iter()
                .all(|s| s.parent_span_id == server.span_id && s.kind == 3)
        );
        assert!(of_system.iter().any(|s| s.name == "connect"), "{system}");
        let query = of_system.iter().find(|s| s.name == "query").unwrap();
        if !postgres_url.contains("127.0.0.1:5432") || !mysql_url.contains("127.0.0.1:3306") {
            continue;
        }
        assert_eq!(attribute(query, "server.port").as_deref(), Some(port));
        assert_eq!(
            attribute(query, "server.address").as_deref(),
            Some("127.0.0.1")
        );
    }
    let pg_failed = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| {
            attribute(s, "db.system.name").as_deref() == Some("postgresql") && s.name == "query"
        })
        .and_then(|s| s.status.clone())
        .expect("the failed query's status");
    assert!(
        pg_failed.message.contains("wisp_no_such_table"),
        "{pg_failed:?}"
    );
    // A cron tick: a root span of its own trace, with the component named.
    let tick = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "cron * * * * * *")
        .expect("a tick's span");
    assert!(tick.parent_span_id.is_empty(), "a root span");
    assert_eq!(attribute(tick, "wisp.component").as_deref(), Some("tick"));
    assert_eq!(attribute(tick, "wisp.app").as_deref(), Some("traced"));
    assert!(tick.status.is_none() || tick.status.as_ref().unwrap().code != 2);

    // A Redis message: a consumer span starts its trace, and the handler's outbound
    // Redis calls are its children. Published until the trigger has subscribed
    // (PUBLISH answers how many subscribers got it).
    let key = format!("{prefix}:from-event");
    let message = format!("set {redis_url} {key} traced");
    let started = Instant::now();
    while redis_client
        .command(&["PUBLISH", &channel, &message])
        .unwrap()
        .as_deref()
        == Some(b"0")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never subscribed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let process_name = format!("process {channel}");
    let spans = collector.wait_for(|spans| {
        spans.iter().any(|(_, s)| s.name == process_name)
            && spans.iter().any(|(_, s)| {
                s.name == "SET"
                    && spans
                        .iter()
                        .any(|(_, p)| p.name == process_name && p.span_id == s.parent_span_id)
            })
    });
    let _ = redis_client.command(&["DEL", &key]);
    let consumer = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == process_name)
        .unwrap();
    assert_eq!(consumer.kind, 5, "a consumer span");
    assert!(consumer.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        attribute(consumer, "messaging.destination.name").as_deref(),
        Some(channel.as_str())
    );
    assert_eq!(
        attribute(consumer, "messaging.system").as_deref(),
        Some("redis")
    );
    assert_eq!(
        attribute(consumer, "wisp.component").as_deref(),
        Some("handler")
    );
    let children: Vec<&str> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == consumer.span_id)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        children.contains(&"connect") && children.contains(&"SET"),
        "{children:?}"
    );
}
