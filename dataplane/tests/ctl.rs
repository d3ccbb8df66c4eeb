//! The control socket and `sluicectl` against a running `sluiced`: every command in both
//! views, abbreviations, changes applied and refused (a refused change leaves the running
//! configuration byte-identical), config save and reload, socket permissions, a second
//! instance and a stale socket, and bad clients: malformed JSON, unknown commands,
//! oversized requests and many clients at once.

mod common;

use common::{send_signal, Daemon, TestDir, SLUICED};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn sluicectl() -> PathBuf {
    let p = Path::new(SLUICED).with_file_name("sluicectl");
    assert!(p.exists(), "{} is missing: build the workspace first", p.display());
    p
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl(sock: &Path, args: &[&str]) -> Out {
    let o = Command::new(sluicectl())
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .expect("run sluicectl");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn ok(sock: &Path, args: &[&str]) -> String {
    let o = ctl(sock, args);
    assert_eq!(o.code, 0, "sluicectl {args:?}: {}{}", o.stdout, o.stderr);
    o.stdout
}

fn json(sock: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(sock, &a)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
}

/// One raw request line; the raw answer line.
fn raw(sock: &Path, line: &[u8]) -> Value {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(line).unwrap();
    let mut answer = String::new();
    BufReader::new(&s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?}: {e}"))
}

fn config(dir: &TestDir, sock: &Path) -> String {
    format!(
        r#"# written by the ctl test
[eal]
workers = [1]
control_core = 0
hugepages = "auto"
file_prefix = "{prefix}"
[control]
socket = "{sock}"
[[ports]]
name = "lan"
device = "net_memif0,role=server,id=0,socket={d}/lan.sock,socket-abstract=no"
ipv4 = ["192.0.2.1/24"]
[[ports]]
name = "wan"
device = "net_memif1,role=server,id=0,socket={d}/wan.sock,socket-abstract=no"
ipv4 = ["100.64.0.1/24"]
[[classes]]
name = "gold"
meter = {{ type = "token-bucket", rate = "1Gbit" }}
[[paths]]
name = "aws"
cloud = "aws"
port = "wan"
next_hop = "100.64.0.2"
[[paths]]
name = "gcp"
cloud = "gcp"
port = "wan"
next_hop = "100.64.0.3"
next_hop_mac = "02:00:00:00:00:03"
probe = "none"
[[path_groups]]
name = "clouds"
paths = ["aws", "gcp"]
[[routes]]
prefix = "198.51.100.0/24"
group = "clouds"
[telemetry]
prometheus = "127.0.0.1:0"
# Nobody listens there: records are dropped and counted, nothing else changes.
ipfix = "127.0.0.1:9"
otlp = "http://127.0.0.1:9"
"#,
        prefix = dir.prefix("d"),
        sock = sock.display(),
        d = dir.path.display()
    )
}

fn wait_for_socket(sock: &Path, d: &Daemon) {
    let t0 = Instant::now();
    while UnixStream::connect(sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no control socket: {}",
            std::fs::read_to_string(&d.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_command_bad_clients_and_refused_changes() {
    let dir = TestDir::new("ctl");
    let sock = dir.file("ctl.sock");
    // A stale socket from a crashed instance is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let cfg = dir.write("sluice.toml", &config(&dir, &sock));
    let d = Daemon::start(&dir, "d", &["--config", cfg.to_str().unwrap(), "--link-wait", "0"]);
    wait_for_socket(&sock, &d);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // A second instance on the same socket refuses to start, before taking DPDK.
    let second = Command::new(SLUICED)
        .args(["--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ne!(second.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another running sluiced"));

    // Every show, both views.
    for what in [
        "ports",
        "workers",
        "runtime",
        "errors",
        "classes",
        "queues",
        "paths",
        "routes",
        "flows",
        "probes",
        "neighbors",
        "config",
        "version",
    ] {
        let human = ok(&sock, &["show", what]);
        assert!(!human.trim().is_empty(), "show {what} printed nothing");
        let _ = json(&sock, &["show", what]);
    }
    // The daemon answers, so it is fully up. Every thread of it runs on the control core (0) or is the worker (on 1).
    let mut tasks = 0;
    let mut prom_on = None;
    let mut ipfix_on = None;
    let mut otlp_on = None;
    for t in std::fs::read_dir(format!("/proc/{}/task", d.pid())).unwrap().flatten() {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let name = status
            .lines()
            .find_map(|l| l.strip_prefix("Name:"))
            .unwrap_or("")
            .trim()
            .to_string();
        let Some(cpus) = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")) else {
            continue;
        };
        assert!(
            ["0", "1"].contains(&cpus.trim()),
            "thread {name} may run on {}",
            cpus.trim()
        );
        if name == "sluice-prom" {
            prom_on = Some(cpus.trim().to_string());
        }
        if name == "sluice-ipfix" {
            ipfix_on = Some(cpus.trim().to_string());
        }
        if name == "sluice-otlp" {
            otlp_on = Some(cpus.trim().to_string());
        }
        tasks += 1;
    }
    assert!(
        tasks >= 4,
        "the main thread, the worker, EAL's own and the metrics endpoint"
    );
    assert_eq!(
        prom_on.as_deref(),
        Some("0"),
        "the metrics endpoint's thread is on the control core"
    );
    assert_eq!(
        ipfix_on.as_deref(),
        Some("0"),
        "the IPFIX exporter's thread is on the control core"
    );
    assert_eq!(
        otlp_on.as_deref(),
        Some("0"),
        "the OTLP exporter's thread is on the control core"
    );
    assert_eq!(json(&sock, &["show", "ports"]).as_array().unwrap().len(), 2);
    assert!(ok(&sock, &["show", "version"]).contains("DPDK"));
    // Unique prefixes abbreviate, on both levels; an ambiguous one is refused.
    assert_eq!(json(&sock, &["sh", "pa"])["paths"][0]["name"], "aws");
    assert_eq!(json(&sock, &["show", "neigh"])[0]["ip"], "100.64.0.2");
    assert_ne!(ctl(&sock, &["show", "p"]).code, 0, "ports, paths, probes");
    assert!(ok(&sock, &["show", "routes", "198.51.100.9"]).contains("clouds"));
    assert!(ok(&sock, &["show", "routes", "203.0.113.1"]).contains("no route"));
    let flows = ok(&sock, &["show", "flows", "--top", "5"]);
    assert!(
        flows.contains("0 live flows") && flows.contains("ended flows"),
        "{flows}"
    );
    assert!(ok(&sock, &["clear", "counters"]).contains("cleared"));
    assert!(ok(&sock, &["completions", "bash"]).contains("sluicectl"));
    // Interactive: commands from stdin.
    let mut child = Command::new(sluicectl())
        .arg("--socket")
        .arg(&sock)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sh ver\nshow neighbors\nquit\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("DPDK") && out.contains("100.64.0.2"), "{out}");

    // A refused change leaves the running configuration byte-identical.
    let before = json(&sock, &["show", "config"])["text"].as_str().unwrap().to_string();
    assert_eq!(before, std::fs::read_to_string(&cfg).unwrap());
    let refused = ctl(&sock, &["route", "add", "203.0.113.0/24", "group", "nope"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("\"nope\" is not defined"), "{}", refused.stderr);
    for bad in [
        vec!["class", "set", "gold", "rate", "fast"],
        vec!["path", "drain", "nope"],
        vec!["route", "del", "10.9.9.0/24"],
    ] {
        assert_eq!(ctl(&sock, &bad).code, 1, "{bad:?}");
    }
    assert_eq!(json(&sock, &["show", "config"])["text"], before.as_str());
    let g0 = json(&sock, &["show", "version"])["generation"].as_u64().unwrap();

    // Changes that validate run at once, each as a new generation.
    assert!(ok(&sock, &["route", "add", "203.0.113.0/24", "group", "clouds"]).contains("ok: route add"));
    assert_eq!(json(&sock, &["show", "routes", "203.0.113.7"])["group"], "clouds");
    ok(&sock, &["path", "drain", "aws"]);
    assert_eq!(json(&sock, &["show", "paths"])["paths"][0]["state"], "drained");
    ok(&sock, &["class", "set", "gold", "rate", "2Gbit"]);
    let classes = json(&sock, &["show", "classes"]);
    assert!(
        classes[1]["meter"].as_str().unwrap().contains("2000000000"),
        "{classes}"
    );
    assert_eq!(
        json(&sock, &["show", "version"])["generation"].as_u64().unwrap(),
        g0 + 3
    );
    let text = json(&sock, &["show", "config"])["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("# written by the ctl test"), "comments survive");
    assert!(text.contains("state = \"drained\""));
    // Saved, it survives a restart: here, a reload of the saved file changes nothing.
    let saved = dir.file("saved.toml");
    ok(&sock, &["config", "save", saved.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
    assert!(ok(&sock, &["reload", saved.to_str().unwrap()]).contains("reloaded"));
    assert_eq!(json(&sock, &["show", "config"])["text"], text.as_str());
    ok(&sock, &["path", "restore", "aws"]);

    // Bad clients get errors and change nothing.
    let e = raw(&sock, b"this is not json\n");
    assert_eq!(e["ok"], false);
    assert!(e["error"].as_str().unwrap().contains("not a JSON request"));
    let e = raw(&sock, b"{\"version\":1,\"command\":[\"frobnicate\"]}\n");
    assert!(e["error"].as_str().unwrap().contains("unknown command"), "{e}");
    let e = raw(&sock, b"{\"version\":9,\"command\":[\"show\",\"version\"]}\n");
    assert!(e["error"].as_str().unwrap().contains("version 9"), "{e}");
    let e = raw(&sock, b"{\"version\":1,\"command\":[\"show\",\"paths\",\"extra\"]}\n");
    assert_eq!(e["ok"], false);
    // An oversized request is refused and the connection closed.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&vec![b'x'; 200 * 1024]);
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.contains("request longer than"), "{answer:?}");
    // Many clients at once, each answered.
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || raw(&sock, b"{\"version\":1,\"command\":[\"show\",\"version\"]}\n"))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap()["ok"], true);
    }
    // A client that connects and says nothing does not hold up others.
    let _idle = UnixStream::connect(&sock).unwrap();
    assert_eq!(json(&sock, &["show", "version"])["protocol"], 1);

    send_signal(d.pid(), libc::SIGTERM);
    let f = d.wait(Duration::from_secs(30));
    f.assert_ok();
    assert!(!sock.exists(), "the socket is removed at exit");
    // Unreachable daemon: a clear message and its own exit status.
    let gone = ctl(&sock, &["show", "version"]);
    assert_eq!(gone.code, 3);
    assert!(gone.stderr.contains("is sluiced running?"));
}

/// Packet mode: `show flows` says there are none to show (and why) instead of an empty
/// list; everything else answers as in flow mode.
#[test]
fn packet_mode_has_no_flows_to_show() {
    let dir = TestDir::new("ctl-packet");
    let sock = dir.file("ctl.sock");
    // No IPFIX: packet mode refuses flow exports.
    let text = config(&dir, &sock).replace("ipfix = \"127.0.0.1:9\"\n", "") + "[flows]\nmode = \"packet\"\n";
    let cfg = dir.write("sluice.toml", &text);
    let d = Daemon::start(&dir, "d", &["--config", cfg.to_str().unwrap(), "--link-wait", "0"]);
    wait_for_socket(&sock, &d);
    let o = ctl(&sock, &["show", "flows"]);
    assert_ne!(o.code, 0, "show flows in packet mode: {}", o.stdout);
    assert!(o.stderr.contains("flows.mode is \"packet\""), "{}", o.stderr);
    for what in ["runtime", "paths", "routes", "errors"] {
        let _ = json(&sock, &["show", what]);
    }
    send_signal(d.pid(), libc::SIGTERM);
    let out = d.wait(Duration::from_secs(30));
    out.assert_ok();
    assert!(out.stdout.contains("no leak"), "{}", out.stdout);
}
