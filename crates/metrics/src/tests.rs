use super::*;
use http::Request;

/// The value of the series whose line starts with `series ` (name and labels exactly as
/// encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn requests_are_counted_by_component_trigger_status_and_outcome() {
    let metrics = Metrics::new();
    let hello = metrics.component("shop", "hello");
    let cron = metrics.component("shop", "tick");
    for _ in 0..3 {
        hello.request("http", Some(200), Outcome::Ok, Duration::from_millis(2));
    }
    hello.request("http", Some(404), Outcome::Ok, Duration::from_millis(1));
    hello.request("http", Some(504), Outcome::Deadline, Duration::from_secs(1));
    cron.request("cron", None, Outcome::Trap, Duration::from_millis(3));
    let text = metrics.encode();
    let requests = |labels: &str| value(&text, &format!("wisp_requests_total{{{labels}}}"));
    assert_eq!(
        requests(r#"app="shop",component="hello",trigger="http",status="2xx",outcome="ok""#),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        requests(r#"app="shop",component="hello",trigger="http",status="4xx",outcome="ok""#),
        Some(1.0)
    );
    assert_eq!(
        requests(r#"app="shop",component="hello",trigger="http",status="5xx",outcome="deadline""#),
        Some(1.0)
    );
    assert_eq!(
        requests(r#"app="shop",component="tick",trigger="cron",status="",outcome="trap""#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"wisp_request_duration_seconds_count{app="shop",component="hello"}"#
        ),
        Some(5.0)
    );
    // 3 × 2 ms + 1 ms + 1 s.
    let sum = value(
        &text,
        r#"wisp_request_duration_seconds_sum{app="shop",component="hello"}"#,
    )
    .expect("a sum");
    assert!((sum - 1.007).abs() < 1e-9, "{sum}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with EOF");
}

#[test]
fn instances_cpu_memory_and_operations_are_recorded() {
    let metrics = Metrics::new();
    let component = metrics.component("app", "c");
    let alive = component.instance_alive();
    let waiting = component.waiting_for_slot();
    let text = metrics.encode();
    assert_eq!(
        value(&text, r#"wisp_instances_active{app="app",component="c"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"wisp_instance_slots_waiting{app="app",component="c"}"#
        ),
        Some(1.0)
    );
    drop((alive, waiting));
    component.instantiated(Duration::from_micros(40));
    component.instance_ended(Some(3 << 20), Duration::from_millis(200));
    component.instance_ended(Some(1 << 20), Duration::from_millis(200));
    component.instance_ended(None, Duration::from_millis(100));
    component.outbound(OutboundKind::Http, OutboundOutcome::Denied);
    component.outbound(OutboundKind::Postgres, OutboundOutcome::Ok);
    component.kv_operation("get");
    component.kv_operation("get");
    component.sqlite_statement();
    metrics.compiled(None);
    metrics.compiled(Some("disk"));
    let text = metrics.encode();
    let at = |series: &str| value(&text, series);
    assert_eq!(
        at(r#"wisp_instances_active{app="app",component="c"}"#),
        Some(0.0)
    );
    assert_eq!(
        at(r#"wisp_instance_slots_waiting{app="app",component="c"}"#),
        Some(0.0)
    );
    assert_eq!(
        at(r#"wisp_cpu_seconds_total{app="app",component="c"}"#),
        Some(0.5)
    );
    assert_eq!(
        at(r#"wisp_instance_memory_peak_bytes_count{app="app",component="c"}"#),
        Some(2.0)
    );
    // 1 MiB falls in the 1 MiB bucket, 3 MiB only from the 4 MiB one up.
    assert_eq!(
        at(r#"wisp_instance_memory_peak_bytes_bucket{le="1048576.0",app="app",component="c"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        at(r#"wisp_instance_memory_peak_bytes_bucket{le="4194304.0",app="app",component="c"}"#),
        Some(2.0)
    );
    assert_eq!(
        at(r#"wisp_instantiate_duration_seconds_count{app="app",component="c"}"#),
        Some(1.0)
    );
    assert_eq!(
        at(r#"wisp_outbound_requests_total{app="app",component="c",kind="http",outcome="denied"}"#),
        Some(1.0)
    );
    assert_eq!(
        at(r#"wisp_outbound_requests_total{app="app",component="c",kind="pg",outcome="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        at(r#"wisp_kv_operations_total{app="app",component="c",op="get"}"#),
        Some(2.0)
    );
    assert_eq!(
        at(r#"wisp_sqlite_statements_total{app="app",component="c"}"#),
        Some(1.0)
    );
    assert_eq!(at("wisp_compile_cache_misses_total"), Some(1.0));
    assert_eq!(
        at(r#"wisp_compile_cache_hits_total{tier="disk"}"#),
        Some(1.0)
    );
}

#[test]
fn process_metrics_are_read_from_proc() {
    let text = Metrics::new().encode();
    let resident = value(&text, "process_resident_memory_bytes").expect("resident memory");
    assert!(resident > 1_000_000.0, "{resident}");
    let fds = value(&text, "process_open_fds").expect("open fds");
    assert!(fds >= 3.0, "{fds}");
    let start = value(&text, "process_start_time_seconds").expect("start time");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now + 1.0 && start > now - 86_400.0 * 30.0,
        "{start} vs {now}"
    );
    assert!(
        value(&text, "process_cpu_seconds_total").is_some(),
        "{text}"
    );
    assert!(value(&text, "process_threads").expect("threads") >= 1.0);
}

#[test]
fn disabled_metrics_record_nothing() {
    let metrics = Metrics::disabled();
    let component = metrics.component("app", "c");
    assert!(!component.is_enabled());
    component.request("http", Some(200), Outcome::Ok, Duration::from_millis(1));
    let _alive = component.instance_alive();
    assert_eq!(metrics.encode(), "");
}

#[test]
fn only_get_and_head_of_metrics_are_answered() {
    let metrics = Metrics::new();
    let request = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("a valid request")
    };
    let ok = metrics_response(&metrics, &request("GET", "/metrics"));
    assert_eq!(ok.status(), http::StatusCode::OK);
    assert_eq!(ok.headers()[http::header::CONTENT_TYPE], CONTENT_TYPE);
    assert_eq!(
        metrics_response(&metrics, &request("GET", "/")).status(),
        http::StatusCode::NOT_FOUND
    );
    let post = metrics_response(&metrics, &request("POST", "/metrics"));
    assert_eq!(post.status(), http::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()[http::header::ALLOW], "GET, HEAD");
}

#[test]
fn a_forgotten_app_loses_its_series_and_the_others_keep_theirs() {
    let metrics = Metrics::new();
    for app in ["gone", "kept"] {
        let component = metrics.component(app, "c");
        component.request("http", Some(200), Outcome::Ok, Duration::from_millis(1));
        component.request("cron", None, Outcome::Trap, Duration::from_millis(1));
        component.outbound(OutboundKind::Mqtt, OutboundOutcome::Error);
        component.kv_operation("cas");
        component.instance_ended(Some(1 << 20), Duration::from_millis(1));
    }
    metrics.forget_app("gone");
    let text = metrics.encode();
    assert!(!text.contains(r#"app="gone""#), "{text}");
    for series in [
        r#"wisp_requests_total{app="kept",component="c",trigger="cron",status="",outcome="trap"} 1"#,
        r#"wisp_outbound_requests_total{app="kept",component="c",kind="mqtt",outcome="error"} 1"#,
        r#"wisp_kv_operations_total{app="kept",component="c",op="cas"} 1"#,
        r#"wisp_cpu_seconds_total{app="kept",component="c"} 0.001"#,
    ] {
        assert!(
            text.lines().any(|line| line == series),
            "{series} in:\n{text}"
        );
    }
}

#[test]
fn a_new_version_without_a_component_drops_its_series() {
    let metrics = Metrics::new();
    for component in ["kept", "dropped"] {
        let handle = metrics.component("app", component);
        handle.request("http", Some(200), Outcome::Ok, Duration::from_millis(1));
        handle.outbound(OutboundKind::Http, OutboundOutcome::Denied);
    }
    let other = metrics.component("other", "dropped");
    other.request("http", Some(200), Outcome::Ok, Duration::from_millis(1));
    let old_version = metrics.component("app", "dropped");
    metrics.retain_components("app", ["kept", "added"]);
    // A request the old version was still finishing records again: the next replace
    // takes what it recreated.
    old_version.request("http", Some(500), Outcome::Trap, Duration::from_millis(1));
    assert!(
        metrics
            .encode()
            .contains(r#"app="app",component="dropped""#)
    );
    metrics.retain_components("app", ["kept", "added"]);
    // Unknown apps are left alone.
    metrics.retain_components("never-seen", []);
    let text = metrics.encode();
    assert!(!text.contains(r#"app="app",component="dropped""#), "{text}");
    for series in [
        r#"wisp_requests_total{app="app",component="kept",trigger="http",status="2xx",outcome="ok"} 1"#,
        r#"wisp_outbound_requests_total{app="app",component="kept",kind="http",outcome="denied"} 1"#,
        r#"wisp_requests_total{app="other",component="dropped",trigger="http",status="2xx",outcome="ok"} 1"#,
    ] {
        assert!(
            text.lines().any(|line| line == series),
            "{series} in:\n{text}"
        );
    }
    // Forgetting the app later forgets what is left of it.
    metrics.forget_app("app");
    assert!(!metrics.encode().contains(r#"app="app""#));
}
