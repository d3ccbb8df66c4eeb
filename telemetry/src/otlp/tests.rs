use super::*;
use std::net::TcpListener;

#[test]
fn urls() {
    let u = Url::parse("http://127.0.0.1:4318").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.prefix.as_str()), ("127.0.0.1", 4318, ""));
    let u = Url::parse("http://collector.example/otlp/").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.prefix.as_str()),
        ("collector.example", 4318, "/otlp")
    );
    let u = Url::parse("http://[::1]:9999").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("::1", 9999));
    assert_eq!(u.to_string(), "http://[::1]:9999");
    assert!(Url::parse("https://x:4318")
        .unwrap_err()
        .contains("https is not supported"));
    assert!(Url::parse("127.0.0.1:4318").is_err());
    assert!(Url::parse("http://:4318").is_err());
    assert!(Url::parse("http://h:port").is_err());
}

#[test]
fn accumulates_the_prometheus_calls() {
    let mut a = Accumulator::new(&[("sluice_rtt_seconds", &[0.001, 0.01])], Duration::from_millis(100));
    a.describe("sluice_port_rx_packets", "Packets received");
    a.counter("sluice_port_rx_packets", &[("port", "lan")], 10);
    a.counter("sluice_port_rx_packets", &[("port", "lan")], 7);
    a.counter("sluice_port_rx_packets", &[("port", "wan")], 3);
    a.gauge("sluice_flows_active", &[], 5.0);
    a.observe("sluice_rtt_seconds", &[("path", "aws")], 0.005, 2);
    a.observe("sluice_rtt_seconds", &[("path", "aws")], 0.5, 1);
    let m = a.metrics(42);
    let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["sluice_flows_active", "sluice_port_rx_packets", "sluice_rtt_seconds"]
    );
    match &m[1].data {
        Some(pb::Data::Sum(s)) => {
            assert!(s.is_monotonic && s.aggregation_temporality == pb::CUMULATIVE);
            assert_eq!(s.data_points.len(), 2);
            assert_eq!(s.data_points[0].value, Some(pb::Number::AsInt(10)), "never goes back");
            assert_eq!(s.data_points[0].time_unix_nano, 42);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m[1].description, "Packets received");
    match &m[2].data {
        Some(pb::Data::Histogram(h)) => {
            let p = &h.data_points[0];
            assert_eq!((p.count, p.bucket_counts.clone()), (3, vec![0, 2, 1]));
            assert_eq!(p.explicit_bounds, [0.001, 0.01]);
            assert!((p.sum.unwrap() - 0.51).abs() < 1e-9);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(m[2].unit, "s");
    // Gauges and counters not set again expire; histograms stay.
    std::thread::sleep(Duration::from_millis(150));
    a.gauge("sluice_flows_active", &[], 6.0);
    let names: Vec<String> = a.metrics(43).into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["sluice_flows_active", "sluice_rtt_seconds"]);
}

/// What this module encodes, the upstream OTLP types decode to the same figures.
#[test]
fn upstream_types_decode_what_is_encoded() {
    use opentelemetry_proto::tonic::collector as up;
    let mut a = Accumulator::new(&[("sluice_rtt_seconds", &[0.001])], Duration::from_secs(60));
    a.counter("sluice_port_rx_packets", &[("port", "lan")], 1234);
    a.gauge("sluice_flows_active", &[], 5.5);
    a.observe("sluice_rtt_seconds", &[], 0.0005, 4);
    let body = pb::ExportMetricsServiceRequest {
        resource_metrics: vec![pb::ResourceMetrics {
            resource: Some(pb::Resource {
                attributes: vec![pb::kv("service.name", "sluice")],
            }),
            scope_metrics: vec![pb::ScopeMetrics {
                scope: None,
                metrics: a.metrics(7),
            }],
        }],
    }
    .encode_to_vec();
    let m = up::metrics::v1::ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    let rm = &m.resource_metrics[0];
    let svc = &rm.resource.as_ref().unwrap().attributes[0];
    assert_eq!(svc.key, "service.name");
    let ms = &rm.scope_metrics[0].metrics;
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
    match &ms[1].data {
        Some(Data::Sum(s)) => {
            assert_eq!(s.data_points[0].value, Some(Value::AsInt(1234)));
            assert_eq!(s.data_points[0].attributes[0].key, "port");
            assert_eq!(s.data_points[0].time_unix_nano, 7);
            assert!(s.is_monotonic);
        }
        other => panic!("{other:?}"),
    }
    match &ms[0].data {
        Some(Data::Gauge(g)) => assert_eq!(g.data_points[0].value, Some(Value::AsDouble(5.5))),
        other => panic!("{other:?}"),
    }
    match &ms[2].data {
        Some(Data::Histogram(h)) => {
            assert_eq!(h.data_points[0].bucket_counts, [4, 0]);
            assert_eq!(h.data_points[0].sum, Some(0.002));
        }
        other => panic!("{other:?}"),
    }

    let span = pb::Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "path.failover".into(),
        kind: pb::SPAN_KIND_INTERNAL,
        start_time_unix_nano: 10,
        end_time_unix_nano: 20,
        attributes: vec![pb::kv("sluice.path", "aws"), pb::kv("sluice.loss_ratio", 0.5)],
        status: Some(pb::Status {
            message: "down".into(),
            code: pb::STATUS_ERROR,
        }),
    };
    let body = pb::ExportTraceServiceRequest {
        resource_spans: vec![pb::ResourceSpans {
            resource: None,
            scope_spans: vec![pb::ScopeSpans {
                scope: None,
                spans: vec![span],
            }],
        }],
    }
    .encode_to_vec();
    let t = up::trace::v1::ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let s = &t.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        (s.name.as_str(), s.start_time_unix_nano, s.end_time_unix_nano),
        ("path.failover", 10, 20)
    );
    assert_eq!((s.trace_id.len(), s.span_id.len(), s.kind), (16, 8, 1));
    assert_eq!(s.status.as_ref().unwrap().code, 2);
    assert_eq!(s.attributes[1].key, "sluice.loss_ratio");

    let log = pb::LogRecord {
        time_unix_nano: 5,
        observed_time_unix_nano: 6,
        severity_number: pb::SEVERITY_INFO,
        severity_text: "INFO".into(),
        body: Some(pb::AnyValue {
            value: Some("flow".into()),
        }),
        attributes: vec![pb::kv("sluice.flow.packets", 30u64)],
        event_name: "sluice.flow".into(),
    };
    let body = pb::ExportLogsServiceRequest {
        resource_logs: vec![pb::ResourceLogs {
            resource: None,
            scope_logs: vec![pb::ScopeLogs {
                scope: None,
                log_records: vec![log],
            }],
        }],
    }
    .encode_to_vec();
    let l = up::logs::v1::ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
    let r = &l.resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(
        (r.time_unix_nano, r.severity_number, r.event_name.as_str()),
        (5, 9, "sluice.flow")
    );
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    assert_eq!(r.attributes[0].value.as_ref().unwrap().value, Some(Any::IntValue(30)));
}

/// A receiver that answers `status` to `n` requests and returns (path, headers, body).
/// (path, head, body) of each request.
type Requests = Vec<(String, String, Vec<u8>)>;

fn receiver(status: u16, n: usize) -> (Url, std::thread::JoinHandle<Requests>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 65536];
            let body_at = loop {
                let k = s.read(&mut buf).unwrap();
                data.extend_from_slice(&buf[..k]);
                if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&data[..body_at]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            while data.len() < body_at + len {
                let k = s.read(&mut buf).unwrap();
                data.extend_from_slice(&buf[..k]);
            }
            let path = head.split(' ').nth(1).unwrap().to_string();
            write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").unwrap();
            got.push((path, head, data[body_at..].to_vec()));
        }
        got
    });
    (Url::parse(&format!("http://127.0.0.1:{port}/base")).unwrap(), t)
}

fn config(url: Url) -> OtlpConfig {
    OtlpConfig {
        url,
        headers: vec![("x-api-key".into(), "secret".into())],
        resource: vec![("deployment.environment".into(), "test".into())],
        timeout: Duration::from_millis(500),
    }
}

#[test]
fn posts_each_signal_and_counts_what_a_collector_refuses() {
    let (url, rx) = receiver(200, 3);
    let mut o = Otlp::start(config(url)).unwrap();
    let tx = o.sender();
    let mut a = Accumulator::new(&[], Duration::from_secs(60));
    a.counter("sluice_reloads", &[], 2);
    tx.metrics(a.metrics(unix_ns()));
    tx.span(pb::Span {
        name: "config.reload".into(),
        ..Default::default()
    });
    tx.log(pb::LogRecord::default());
    o.stop(Duration::from_secs(5));
    let got = rx.join().unwrap();
    let mut paths: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/base/v1/logs", "/base/v1/metrics", "/base/v1/traces"]);
    for (_, head, body) in &got {
        assert!(head.contains("Content-Type: application/x-protobuf\r\n"), "{head}");
        assert!(head.contains("x-api-key: secret\r\n"), "{head}");
        assert!(!body.is_empty());
    }
    let (_, _, body) = got.iter().find(|g| g.0.ends_with("metrics")).unwrap();
    let m = pb::ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    let res = &m.resource_metrics[0].resource.as_ref().unwrap().attributes;
    assert!(res.iter().any(|a| a.key == "deployment.environment"));
    assert!(res.iter().any(|a| a.key == "service.name"));
    let st = o.stats();
    assert_eq!(st.sent.iter().map(|c| c.load(Relaxed)).collect::<Vec<_>>(), [1, 1, 1]);

    // A collector that answers 503, then none at all: dropped and counted, never blocking.
    let (url, rx) = receiver(503, 1);
    let mut o = Otlp::start(config(url.clone())).unwrap();
    o.sender().span(pb::Span::default());
    o.stop(Duration::from_secs(5));
    rx.join().unwrap();
    assert_eq!(o.stats().dropped[Signal::Spans as usize].load(Relaxed), 1);
    assert!(o.stats().last_error.lock().unwrap().contains("503"));
    let mut o = Otlp::start(config(url)).unwrap();
    let t0 = Instant::now();
    for _ in 0..QUEUE * 2 {
        o.sender().log(pb::LogRecord::default());
    }
    assert!(t0.elapsed() < Duration::from_secs(2), "queueing never waits");
    o.stop(Duration::from_secs(10));
    let st = o.stats();
    assert_eq!(st.dropped[Signal::Logs as usize].load(Relaxed), QUEUE as u64 * 2);
    assert_eq!(st.sent[Signal::Logs as usize].load(Relaxed), 0);
}
