use super::*;

/// A fake machine with cores 0-3 online, built once for all tests.
fn system() -> System {
    static TREE: std::sync::OnceLock<numa::FakeTree> = std::sync::OnceLock::new();
    TREE.get_or_init(|| numa::FakeTree::new("config-test").online_cpus("0-3"))
        .system()
}

const GOOD: &str = r#"
[eal]
workers = [1, 2]
control_core = 0
hugepages = "auto"
file_prefix = "t1"

[[ports]]
name = "lan"
device = "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"
ipv4 = ["192.0.2.1/24"]
ipv6 = ["2001:db8:1::1/64"]
mtu = 9000

[[ports]]
name = "wan"
device = "0000:03:00.0"
mac = "02:00:00:00:00:02"
rx_queues = 1

[[routes]]
prefix = "198.18.0.0/15"
port = "wan"
next_hop_mac = "02:00:00:00:01:01"

[[routes]]
prefix = "2001:db8:100::/48"
port = "lan"
next_hop_mac = "02:00:00:00:01:02"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "t.toml", &system())
}

/// Replaces `from` in GOOD with `to` and returns the error, which must exist.
fn err_with(from: &str, to: &str) -> ConfigError {
    assert!(GOOD.contains(from), "test bug: {from:?} not in GOOD");
    parse(&GOOD.replacen(from, to, 1)).expect_err("the change must be refused")
}

fn at(e: &ConfigError) -> (usize, String, String) {
    match e {
        ConfigError::At { line, field, msg, .. } => (*line, field.clone(), msg.clone()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn good_config() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.eal.workers, vec![1, 2]);
    assert_eq!(c.eal.control_core, 0);
    assert_eq!(c.eal.mbuf_cache, 256);
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.ports[0].mtu, 9000);
    assert_eq!(c.ports[0].ipv4[0].to_string(), "192.0.2.1/24");
    assert!(c.ports[1].is_pci());
    assert_eq!(c.ports[1].rx_queues, Some(1));
    assert_eq!(c.ports[1].rx_descriptors, 1024);
    let path = |r: usize| &c.paths[c.groups[c.routes[r].group].paths[0] as usize];
    assert_eq!(path(0).port, 1);
    assert_eq!(c.routes[1].prefix.to_string(), "2001:db8:100::/48");
    assert_eq!(MacAddr(path(1).next_hop_mac.unwrap()).to_string(), "02:00:00:00:01:02");
    assert_eq!(path(1).name, "lan-via-020000000102");
}

#[test]
fn unknown_key() {
    let e = err_with("mtu = 9000", "mtu = 9000\nspeed = 10");
    let (line, field, msg) = at(&e);
    assert_eq!(line, 14);
    assert_eq!(field, "ports[0].speed");
    assert!(msg.contains("unknown field `speed`"), "{msg}");
    assert!(msg.contains("`mtu`"), "should list accepted keys: {msg}");
    assert!(e.to_string().starts_with("t.toml:14:1: ports[0].speed: "), "{e}");
}

#[test]
fn bad_address_and_prefix() {
    let (line, field, msg) = at(&err_with("192.0.2.1/24", "192.0.2.300/24"));
    assert_eq!((line, field.as_str()), (11, "ports[0].ipv4[0]"));
    assert!(
        msg.contains("192.0.2.300") && msg.contains("not a valid address"),
        "{msg}"
    );
    let (_, field, msg) = at(&err_with("192.0.2.1/24", "192.0.2.1/33"));
    assert_eq!(field, "ports[0].ipv4[0]");
    assert!(msg.contains("0 to 32"), "{msg}");
    let (line, field, msg) = at(&err_with("198.18.0.0/15", "198.18.0.1/15"));
    assert_eq!((line, field.as_str()), (22, "routes[0].prefix"));
    assert!(msg.contains("did you mean 198.18.0.0/15"), "{msg}");
    let (_, field, msg) = at(&err_with("2001:db8:100::/48", "2001:db8:100::/200"));
    assert_eq!(field, "routes[1].prefix");
    assert!(msg.contains("0 to 128"), "{msg}");
    let (_, field, msg) = at(&err_with("02:00:00:00:01:01", "02:00:00:00:01"));
    assert_eq!(field, "routes[0].next_hop_mac");
    assert!(msg.contains("MAC"), "{msg}");
}

#[test]
fn undefined_port() {
    let e = err_with("port = \"wan\"", "port = \"wan9\"");
    let (line, field, msg) = at(&e);
    assert_eq!((line, field.as_str()), (23, "routes[0].port"));
    assert!(
        msg.contains("\"wan9\" is not defined") && msg.contains("\"lan\", \"wan\""),
        "{msg}"
    );
}

#[test]
fn duplicates() {
    let (line, field, msg) = at(&err_with("name = \"wan\"", "name = \"lan\""));
    assert_eq!((line, field.as_str()), (16, "ports[1].name"));
    assert!(msg.contains("used twice"), "{msg}");
    let (_, field, msg) = at(&err_with("2001:db8:100::/48", "198.18.0.0/15"));
    assert_eq!(field, "routes[1].prefix");
    assert!(msg.contains("already routed by routes[0]"), "{msg}");
    let (_, field, msg) = at(&err_with("0000:03:00.0", "net_pcap0,rx_pcap=x.pcap"));
    assert_eq!(field, "ports[1].device");
    assert!(msg.contains("already used by port \"lan\""), "{msg}");
    let (_, field, _) = at(&err_with("workers = [1, 2]", "workers = [1, 1]"));
    assert_eq!(field, "eal.workers[1]");
}

#[test]
fn cores() {
    let (line, field, msg) = at(&err_with("workers = [1, 2]", "workers = [1, 7]"));
    assert_eq!((line, field.as_str()), (3, "eal.workers[1]"));
    assert!(
        msg.contains("core 7 does not exist") && msg.contains("online cores: 0,1,2,3"),
        "{msg}"
    );
    let (_, field, msg) = at(&err_with("workers = [1, 2]", "workers = [0, 2]"));
    assert_eq!(field, "eal.workers[0]");
    assert!(msg.contains("control core"), "{msg}");
    let (_, field, _) = at(&err_with("workers = [1, 2]", "workers = []"));
    assert_eq!(field, "eal.workers");
    let (_, field, _) = at(&err_with("control_core = 0", "control_core = 200"));
    assert_eq!(field, "eal.control_core");
}

#[test]
fn ranges_and_types() {
    let (_, field, msg) = at(&err_with("mtu = 9000", "mtu = 9001"));
    assert_eq!(field, "ports[0].mtu");
    assert!(msg.contains("68 to 9000"), "{msg}");
    let (_, field, _) = at(&err_with("mtu = 9000", "mtu = 70000"));
    assert_eq!(field, "ports[0].mtu");
    let (_, field, msg) = at(&err_with("mtu = 9000", "mtu = \"big\""));
    assert_eq!(field, "ports[0].mtu");
    assert!(msg.contains("expected"), "{msg}");
    let (_, field, _) = at(&err_with("rx_queues = 1", "rx_queues = 3"));
    assert_eq!(field, "ports[1].rx_queues");
    let (_, field, _) = at(&err_with("rx_queues = 1", "rx_descriptors = 100"));
    assert_eq!(field, "ports[1].rx_descriptors");
    let (_, field, msg) = at(&err_with("hugepages = \"auto\"", "hugepages = \"maybe\""));
    assert_eq!(field, "eal.hugepages");
    assert!(msg.contains("auto") && msg.contains("off"), "{msg}");
    let (_, field, _) = at(&err_with("file_prefix = \"t1\"", "file_prefix = \"a/b\""));
    assert_eq!(field, "eal.file_prefix");
    let (_, field, msg) = at(&err_with("0000:03:00.0", "eth0"));
    assert_eq!(field, "ports[1].device");
    assert!(msg.contains("PCI address"), "{msg}");
    let (_, field, _) = at(&err_with("mac = \"02:00:00:00:00:02\"", "mac = \"01:00:00:00:00:02\""));
    assert_eq!(field, "ports[1].mac");
}

#[test]
fn own_addresses() {
    let (_, field, msg) = at(&err_with("198.18.0.0/15", "192.0.2.1/32"));
    assert_eq!(field, "routes[0].prefix");
    assert!(msg.contains("address of port \"lan\""), "{msg}");
    let e = parse(&GOOD.replacen("rx_queues = 1", "ipv4 = [\"192.0.2.1/30\"]", 1)).unwrap_err();
    assert!(at(&e).2.contains("already on port \"lan\""), "{e}");
}

#[test]
fn never_routed_space() {
    let (_, field, msg) = at(&err_with("198.18.0.0/15", "239.1.0.0/16"));
    assert_eq!(field, "routes[0].prefix");
    assert!(msg.contains("224.0.0.0/3") && msg.contains("never routed"), "{msg}");
    let (_, field, msg) = at(&err_with("2001:db8:100::/48", "ff02::/16"));
    assert_eq!(field, "routes[1].prefix");
    assert!(msg.contains("ff00::/8"), "{msg}");
    let (_, _, msg) = at(&err_with("2001:db8:100::/48", "fe80::/64"));
    assert!(msg.contains("fe80::/10"), "{msg}");
    let (_, field, _) = at(&err_with("192.0.2.1/24", "224.0.0.1/24"));
    assert_eq!(field, "ports[0].ipv4[0]");
    let (_, field, _) = at(&err_with("2001:db8:1::1/64", "ff02::1/64"));
    assert_eq!(field, "ports[0].ipv6[0]");
    // Shorter prefixes that merely contain such space are fine: the longer entry wins.
    assert!(parse(&GOOD.replacen("198.18.0.0/15", "0.0.0.0/0", 1)).is_ok());
    assert!(parse(&GOOD.replacen("2001:db8:100::/48", "::/0", 1)).is_ok());
}

#[test]
fn syntax_and_missing() {
    let e = parse("[eal\nworkers = [1]").unwrap_err();
    let (line, _, msg) = at(&e);
    assert_eq!(line, 1);
    assert!(msg.starts_with("not valid TOML"), "{msg}");
    let (_, field, msg) = at(&parse("[eal]\nworkers = [1]\n").unwrap_err());
    assert_eq!(field, "ports");
    assert!(msg.contains("no ports"), "{msg}");
    let (_, _, msg) = at(&parse("[[ports]]\nname = \"a\"\ndevice = \"net_null0\"\n").unwrap_err());
    assert!(msg.contains("missing field `eal`"), "{msg}");
    let (_, field, msg) = at(&parse("[eal]\nworkers = [1]\n[[ports]]\nname = \"a\"\n").unwrap_err());
    assert_eq!(field, "ports[0]");
    assert!(msg.contains("missing field `device`"), "{msg}");
}

#[test]
fn io_error() {
    let e = Config::load(FsPath::new("/nonexistent/sluice.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/sluice.toml"));
}

#[test]
fn pci_addresses() {
    assert!(is_pci_address("0000:03:00.0"));
    assert!(is_pci_address("03:00.1"));
    assert!(!is_pci_address("0000:03:00.8"));
    assert!(!is_pci_address("net_null0"));
    assert!(!is_pci_address("0000:3:00.0"));
}

const TRAFFIC: &str = r#"
[site]
location = [48.86, 2.35]

[flows]
capacity = 2000000
udp_idle_s = 30

[[classes]]
name = "voice"
priority = "p0"
dscp = "ef"
meter = { type = "token-bucket", rate = "50Mbit", burst = "64KiB" }
exceed = "drop"

[[classes]]
name = "video"
priority = "p1"
dscp = "af41"
min_rate = "100Mbit"
meter = { type = "trtcm", cir = "200Mbit", pir = "300Mbit", colour_aware = true }
exceed = "remark af42"
violate = "demote p3"

[[classes]]
name = "default"
dscp = 0

[[rules]]
class = "voice"
protocol = "udp"
dst_ports = "16384-32767"
dscp = "ef"

[[rules]]
class = "video"
priority = 10
dst = "198.18.0.0/16"
in_port = "lan"

[[paths]]
name = "aws-use1"
cloud = "aws"
region = "us-east-1"
port = "wan"
next_hop = "192.0.2.10"
next_hop_mac = "02:00:00:00:0a:01"
cost_per_gb = 0.09
bandwidth = "10Gbit"
location = [38.9, -77.0]
latency_ms = 80

[[paths]]
name = "gcp-euw1"
cloud = "gcp"
port = "wan"
next_hop = "192.0.2.20"
next_hop_mac = "02:00:00:00:0a:02"
latency_ms = 12
state = "drained"

[[path_groups]]
name = "internet"
paths = ["aws-use1", "gcp-euw1"]
policy = "active-active"
tolerance_pct = 20

[[routes]]
prefix = "0.0.0.0/0"
group = "internet"
"#;

fn traffic(extra: &str) -> Result<Config, ConfigError> {
    parse(&format!("{GOOD}{TRAFFIC}{extra}"))
}

fn traffic_err(from: &str, to: &str) -> (usize, String, String) {
    assert!(TRAFFIC.contains(from), "test bug: {from:?} not in TRAFFIC");
    let text = format!("{GOOD}{}", TRAFFIC.replacen(from, to, 1));
    at(&parse(&text).expect_err("the change must be refused"))
}

#[test]
fn traffic_sections() {
    use qos::{Action, MeterSpec, Priority};
    let c = traffic("").unwrap();
    assert_eq!(c.site, Some((48.86, 2.35)));
    assert_eq!(c.flows.capacity, 2_000_000);
    assert_eq!(c.flows.udp_idle_s, 30);
    assert_eq!(c.flows.tcp_idle_s, 300);
    // default first (redefined), then the others in file order.
    let names: Vec<&str> = c.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["default", "voice", "video"]);
    assert_eq!(c.classes[0].dscp, Some(0));
    let voice = &c.classes[1];
    assert_eq!(voice.priority, Priority::P0);
    assert_eq!(voice.dscp, Some(46));
    assert_eq!(
        voice.meter,
        MeterSpec::TokenBucket {
            rate_bps: 50_000_000,
            burst_bytes: 65536
        }
    );
    let video = &c.classes[2];
    assert!(video.colour_aware);
    assert_eq!(video.min_bps, 100_000_000);
    assert_eq!(video.exceed, Action::Remark(36));
    assert_eq!(video.violate, Action::Demote(Priority::P3));
    // Default bursts: 10 ms at the rate.
    assert_eq!(
        video.meter,
        MeterSpec::TrTcm {
            cir_bps: 200_000_000,
            cbs_bytes: 250_000,
            pir_bps: 300_000_000,
            pbs_bytes: 375_000
        }
    );
    // Rules in priority order: the video rule (10) before the voice rule (100).
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].class, qos::ClassId(2));
    assert_eq!(c.rules[0].in_port, Some(0));
    assert_eq!(c.rules[1].dst_ports, (16384, 32767));
    assert_eq!(c.rules[1].proto, Some(17));
    // Paths: two configured, then one per direct route's (port, MAC).
    assert_eq!(c.paths.len(), 4);
    assert_eq!(c.paths[0].cloud, routing::Cloud::Aws);
    assert_eq!(c.paths[0].latency_us, 80_000);
    assert_eq!(c.paths[1].admin, routing::AdminState::Drained);
    let g = &c.groups[c.routes[2].group];
    assert_eq!(g.name, "internet");
    assert_eq!(g.paths, vec![0, 1]);
    assert_eq!(g.policy, routing::Policy::ActiveActive { tolerance_pct: 20.0 });
}

#[test]
fn traffic_errors() {
    let (_, f, m) = traffic_err(r#"rate = "50Mbit""#, r#"rate = "50Mbat""#);
    assert_eq!(f, "classes[0].meter.rate");
    assert!(m.contains("unknown unit"), "{m}");
    let (_, f, m) = traffic_err(r#"type = "token-bucket""#, r#"type = "leaky""#);
    assert_eq!(f, "classes[0].meter.type");
    assert!(m.contains("token-bucket, srtcm, trtcm, trtcm-4115"), "{m}");
    let (_, f, m) = traffic_err(r#"pir = "300Mbit""#, r#"pir = "100Mbit""#);
    assert_eq!(f, "classes[1].meter.type");
    assert!(m.contains("peak rate"), "{m}");
    let (_, f, m) = traffic_err(r#"violate = "demote p3""#, r#"violate = "demote p0""#);
    assert_eq!(f, "classes[1].violate");
    assert!(m.contains("lower priority"), "{m}");
    let (_, f, _) = traffic_err(r#"exceed = "drop""#, r#"exceed = "shred""#);
    assert_eq!(f, "classes[0].exceed");
    let (line, f, m) = traffic_err(r#"class = "voice""#, r#"class = "vioce""#);
    assert_eq!(f, "rules[0].class");
    assert!(m.contains("\"voice\""), "{m}");
    assert!(line > 40);
    let (_, f, m) = traffic_err(r#"protocol = "udp""#, r#"protocol = "udpp""#);
    assert_eq!(f, "rules[0].protocol");
    assert!(m.contains("tcp, udp"), "{m}");
    let (_, f, m) = traffic_err(r#"dst_ports = "16384-32767""#, r#"dst_ports = "32767-16384""#);
    assert_eq!(f, "rules[0].dst_ports");
    assert!(m.contains("empty"), "{m}");
    let (_, f, _) = traffic_err(r#"in_port = "lan""#, r#"in_port = "lab""#);
    assert_eq!(f, "rules[1].in_port");
    let (_, f, _) = traffic_err(r#"cloud = "gcp""#, r#"cloud = "oracle""#);
    assert_eq!(f, "paths[1].cloud");
    let (_, f, _) = traffic_err(r#"next_hop = "192.0.2.20""#, r#"next_hop = "192.0.2""#);
    assert_eq!(f, "paths[1].next_hop");
    let (_, f, _) = traffic_err(r#"location = [38.9, -77.0]"#, r#"location = [98.9, -77.0]"#);
    assert_eq!(f, "paths[0].location");
    let (_, f, m) = traffic_err(
        r#"paths = ["aws-use1", "gcp-euw1"]"#,
        r#"paths = ["aws-use1", "azure"]"#,
    );
    assert_eq!(f, "path_groups[0].paths[1]");
    assert!(m.contains("not defined"), "{m}");
    let (_, f, _) = traffic_err(r#"policy = "active-active""#, r#"policy = "cheapest""#);
    assert_eq!(f, "path_groups[0].policy");
    let (_, f, m) = traffic_err(r#"group = "internet""#, r#"group = "intranet""#);
    assert_eq!(f, "routes[2].group");
    assert!(m.contains("\"internet\""), "{m}");
    let (_, f, _) = traffic_err("udp_idle_s = 30", "udp_idle_s = 0");
    assert_eq!(f, "flows.udp_idle_s");
    let (_, f, _) = traffic_err("capacity = 2000000", "capacity = 10");
    assert_eq!(f, "flows.capacity");
    // A route needs exactly one form.
    let e = traffic("[[routes]]\nprefix = \"10.9.0.0/16\"\n").unwrap_err();
    assert!(e.to_string().contains("needs group"), "{e}");
    let e = traffic("[[routes]]\nprefix = \"10.9.0.0/16\"\ngroup = \"internet\"\nport = \"wan\"\n").unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
}

#[test]
fn port_rates() {
    let c = parse(&GOOD.replacen(
        "rx_queues = 1",
        "rx_queues = 1\nrate = \"1Gbit\"\nqueue_packets = 512",
        1,
    ))
    .unwrap();
    assert_eq!(c.ports[1].rate_bps, Some(1_000_000_000));
    assert_eq!(c.ports[1].queue_packets, 512);
    assert_eq!(c.ports[1].ecn_threshold_packets, 128);
    assert_eq!(c.ports[0].rate_bps, None);
    let (_, f, m) = at(&err_with("rx_queues = 1", "rx_queues = 1\nqueue_packets = 512"));
    assert_eq!(f, "ports[1].queue_packets");
    assert!(m.contains("without rate"), "{m}");
    let (_, f, _) = at(&err_with("rx_queues = 1", "rx_queues = 1\nrate = \"10kbit\""));
    assert_eq!(f, "ports[1].rate");
}

#[test]
fn neighbor_settings() {
    let c = traffic("[neighbors]\nretry_ms = 100\ntries = 20\nqueue = 16\n").unwrap();
    assert_eq!(c.neighbors.retry_ns, 100_000_000);
    assert_eq!((c.neighbors.tries, c.neighbors.queue), (20, 16));
    assert_eq!(traffic("").unwrap().neighbors.queue, 64);
    assert_eq!(traffic("[neighbors]\nqueue = 0\n").unwrap().neighbors.queue, 0);
    let (_, f, m) = at(&traffic("[neighbors]\nqueue = 100000\n").unwrap_err());
    assert_eq!(f, "neighbors.queue");
    assert!(m.contains("0 to 2048 packets"), "{m}");
    let (_, f, _) = at(&traffic("[neighbors]\nqueue_len = 8\n").unwrap_err());
    assert_eq!(f, "neighbors.queue_len");
}

#[test]
fn telemetry_settings() {
    let t = parse(GOOD).unwrap().telemetry;
    assert_eq!(t.interval_ms, 1000);
    assert_eq!(t.prometheus, Some("127.0.0.1:9417".parse().unwrap()));
    assert!(!t.prometheus_configured);
    assert_eq!(t.top_flows, 0);
    let with = |s: &str| parse(&format!("{GOOD}\n[telemetry]\n{s}\n"));
    let t = with("interval_ms = 250\nprometheus = \"[::1]:9999\"\ntop_flows = 20")
        .unwrap()
        .telemetry;
    assert_eq!((t.interval_ms, t.top_flows), (250, 20));
    assert_eq!(t.prometheus, Some("[::1]:9999".parse().unwrap()));
    assert!(t.prometheus_configured);
    let t = with("prometheus = \"off\"").unwrap().telemetry;
    assert_eq!((t.prometheus, t.prometheus_configured), (None, true));
    let (_, f, m) = at(&with("prometheus = \"localhost\"").unwrap_err());
    assert_eq!(f, "telemetry.prometheus");
    assert!(m.contains("not an address and port"), "{m}");
    let (_, f, m) = at(&with("top_flows = 21").unwrap_err());
    assert_eq!(f, "telemetry.top_flows");
    assert!(m.contains("at most 20"), "{m}");
    let (_, f, _) = at(&with("interval_ms = 50").unwrap_err());
    assert_eq!(f, "telemetry.interval_ms");
    let (_, f, _) = at(&with("statsd = 1").unwrap_err());
    assert_eq!(f, "telemetry.statsd");
    // IPFIX: off unless a collector is named.
    assert_eq!((t.ipfix, t.ipfix_domain, t.ipfix_template_s), (None, 1, 60));
    let t = with("ipfix = \"127.0.0.1:4739\"\nipfix_domain = 42\nipfix_template_s = 10")
        .unwrap()
        .telemetry;
    assert_eq!(t.ipfix, Some("127.0.0.1:4739".parse().unwrap()));
    assert_eq!((t.ipfix_domain, t.ipfix_template_s), (42, 10));
    let (_, f, m) = at(&with("ipfix = \"collector\"").unwrap_err());
    assert_eq!(f, "telemetry.ipfix");
    assert!(m.contains("127.0.0.1:4739"), "{m}");
    let (_, f, _) = at(&with("ipfix_template_s = 0").unwrap_err());
    assert_eq!(f, "telemetry.ipfix_template_s");
    // OTLP: off unless a collector is named.
    assert_eq!((t.otlp.clone(), t.otlp_interval_ms, t.otlp_flows), (None, 10_000, true));
    let t = with("otlp = \"http://127.0.0.1:4318\"\notlp_headers = { x-api-key = \"k\" }\notlp_resource = { \"deployment.environment\" = \"lab\" }\notlp_interval_ms = 2000\notlp_flows = false")
        .unwrap()
        .telemetry;
    assert_eq!(t.otlp.as_deref(), Some("http://127.0.0.1:4318"));
    assert_eq!(t.otlp_headers, [("x-api-key".to_string(), "k".to_string())]);
    assert_eq!(
        t.otlp_resource,
        [("deployment.environment".to_string(), "lab".to_string())]
    );
    assert_eq!((t.otlp_interval_ms, t.otlp_flows), (2000, false));
    for (bad, says) in [
        ("otlp = \"https://c:4318\"", "https is not supported"),
        ("otlp = \"c:4318\"", "expected the collector's OTLP/HTTP address"),
        ("otlp_headers = { \"bad name\" = \"x\" }", "header name"),
        ("otlp_interval_ms = 10", "out of range"),
    ] {
        let (_, f, m) = at(&with(bad).unwrap_err());
        assert!(f.starts_with("telemetry.otlp"), "{bad}: {f}");
        assert!(m.contains(says), "{bad}: {m}");
    }
    let (_, f, _) = at(&parse(&format!("{GOOD}\n[flows]\nactive_timeout_s = 0\n")).unwrap_err());
    assert_eq!(f, "flows.active_timeout_s");
}

#[test]
fn flow_mode() {
    assert_eq!(parse(GOOD).unwrap().flows.mode, FlowMode::Flow);
    let c = parse(&format!("{GOOD}\n[flows]\nmode = \"packet\"\n")).unwrap();
    assert_eq!(c.flows.mode, FlowMode::Packet);
    assert_eq!(c.flows.mode.name(), "packet");
    let (line, f, m) = at(&parse(&format!("{GOOD}\n[flows]\nmode = \"stateless\"\n")).unwrap_err());
    assert_eq!(f, "flows.mode");
    assert!(m.contains("\"flow\"") && m.contains("\"packet\""), "{m}");
    assert_eq!(line, GOOD.lines().count() + 3);
    // Flow exports have nothing to export without flows.
    for (telemetry, says) in [
        ("ipfix = \"127.0.0.1:4739\"", "telemetry.ipfix"),
        ("top_flows = 10", "telemetry.top_flows"),
    ] {
        let text = format!("{GOOD}\n[flows]\nmode = \"packet\"\n[telemetry]\n{telemetry}\n");
        let (_, f, m) = at(&parse(&text).unwrap_err());
        assert_eq!(f, "flows.mode", "{telemetry}");
        assert!(m.contains(says) && m.contains("\"flow\""), "{telemetry}: {m}");
        // The same telemetry is fine with flows.
        parse(&format!("{GOOD}\n[telemetry]\n{telemetry}\n")).unwrap();
    }
}
