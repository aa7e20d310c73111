use super::*;

#[test]
fn traceparent_round_trips_and_bad_ones_start_a_new_trace() {
    let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let context = SpanContext::parse(header).expect("a valid traceparent");
    assert!(context.sampled);
    assert_eq!(context.traceparent(), header);
    assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    let unsampled = SpanContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    assert_eq!(unsampled.map(|c| c.sampled), Some(false));
    // A later version may append fields.
    assert!(
        SpanContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xyz").is_some()
    );
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
    ] {
        assert_eq!(SpanContext::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn fresh_ids_differ() {
    let ids: std::collections::HashSet<[u8; 16]> =
        (0..1000).map(|_| context::new_trace_id()).collect();
    assert_eq!(ids.len(), 1000);
    assert!((0..1000).all(|_| context::new_span_id() != [0; 8]));
}

#[test]
fn samplers_keep_their_share_and_follow_the_caller() {
    let ratio = Sampler::Ratio(0.1);
    let kept = (0..20_000)
        .filter(|_| ratio.samples(&context::new_trace_id(), None))
        .count();
    assert!((1_600..2_400).contains(&kept), "{kept} of 20000 at 10%");
    let id = context::new_trace_id();
    assert!(!Sampler::Ratio(0.0).samples(&id, None));
    assert!(Sampler::Ratio(1.0).samples(&id, None));
    let parent_based = Sampler::ParentBased(ParentBasedRoot::AlwaysOff);
    assert!(parent_based.samples(&id, Some(true)));
    assert!(!parent_based.samples(&id, None));
    assert!(!Sampler::ParentBased(ParentBasedRoot::AlwaysOn).samples(&id, Some(false)));
    assert!(Sampler::AlwaysOn.samples(&id, Some(false)));
}

#[test]
fn configuration_comes_from_the_standard_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    assert!(
        TraceConfig::from_vars(vars(&[])).unwrap().is_none(),
        "off without an endpoint"
    );
    let config = TraceConfig::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
        ("OTEL_SERVICE_NAME", "shop"),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20x, tenant=a",
        ),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(config.endpoint, "http://127.0.0.1:4318/v1/traces");
    assert_eq!(config.service_name, "shop");
    assert_eq!(
        config.sampler,
        Sampler::ParentBased(ParentBasedRoot::Ratio(0.01))
    );
    assert_eq!(
        config.headers,
        [
            ("authorization".to_owned(), "Bearer x".to_owned()),
            ("tenant".to_owned(), "a".to_owned())
        ]
    );
    let traces_only = TraceConfig::from_vars(vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:9999/custom",
        ),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(traces_only.endpoint, "http://127.0.0.1:9999/custom");
    assert_eq!(traces_only.service_name, "wisp");
    assert_eq!(
        traces_only.sampler,
        Sampler::ParentBased(ParentBasedRoot::AlwaysOn)
    );
    for (bad, needle) in [
        (
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4318")][..],
            "http:// or https://",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ][..],
            "http/protobuf only",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
                ("OTEL_TRACES_SAMPLER", "sometimes"),
            ][..],
            "use always_on",
        ),
        (
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "2"),
            ][..],
            "between 0 and 1",
        ),
    ] {
        let pairs: &'static [(&'static str, &'static str)] = bad;
        let err = TraceConfig::from_vars(vars(pairs)).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// A tracer whose ended spans land in the returned receiver.
fn in_memory(sampler: Sampler) -> (Tracing, tokio::sync::mpsc::Receiver<proto::Span>) {
    let (spans, received) = tokio::sync::mpsc::channel(16);
    let tracing = Tracing(Some(Arc::new(Inner {
        endpoint: "memory".to_owned(),
        sampler,
        spans,
    })));
    (tracing, received)
}

#[test]
fn event_spans_start_their_own_trace_and_children_record_failures() {
    let (tracing, mut received) = in_memory(Sampler::AlwaysOn);
    let tick = tracing
        .event_span(EventKind::Scheduled, || "cron * * * * * *".to_owned())
        .expect("sampled");
    let message = tracing
        .event_span(EventKind::Message, || "process orders".to_owned())
        .expect("sampled");
    assert_ne!(tick.context().trace_id, message.context().trace_id);
    let parent = message.parent();
    end_with(Some(parent.client_child("GET")), &Ok::<(), String>(()));
    end_with(
        Some(parent.client_child("connect")),
        &Err::<(), _>("refused: not granted"),
    );
    end_with(None, &Err::<(), _>("nothing recorded"));
    drop(message);
    drop(tick);
    let spans: Vec<proto::Span> = std::iter::from_fn(|| received.try_recv().ok()).collect();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["GET", "connect", "process orders", "cron * * * * * *"]
    );
    let message = &spans[2];
    assert_eq!(message.kind, proto::span::SpanKind::Consumer as i32);
    assert!(message.parent_span_id.is_empty());
    assert_eq!(spans[3].kind, proto::span::SpanKind::Internal as i32);
    for child in &spans[..2] {
        assert_eq!(child.parent_span_id, message.span_id);
        assert_eq!(child.trace_id, message.trace_id);
        assert_eq!(child.kind, proto::span::SpanKind::Client as i32);
    }
    assert!(spans[0].status.is_none());
    let failed = spans[1].status.as_ref().expect("failed");
    assert_eq!(failed.message, "refused: not granted");
    assert_eq!(failed.code, proto::status::StatusCode::Error as i32);
    assert_eq!(
        trace_suffix(
            trace_id(Some(
                &tracing.event_span(EventKind::Message, String::new).unwrap()
            ))
            .as_deref()
        )
        .len(),
        " trace_id=".len() + 32
    );
    assert_eq!(trace_suffix(None), "");
    // A dropped trace makes no span and never calls `name`.
    let (off, _) = in_memory(Sampler::Ratio(0.0));
    assert!(
        off.event_span(EventKind::Message, || unreachable!("not sampled"))
            .is_none()
    );
}
