//! Configuration errors stop `sluiced` before anything starts (no EAL), with exit status 2
//! and a message naming the file, the line, the field and what would be accepted.

mod common;

use common::*;
use std::time::Duration;

const GOOD: &str = r#"[eal]
workers = [1]
control_core = 0
file_prefix = "cfgerr"

[[ports]]
name = "lan"
device = "net_null0"
ipv4 = ["192.0.2.1/24"]

[[ports]]
name = "wan"
device = "net_null1"

[[routes]]
prefix = "198.18.0.0/16"
port = "wan"
next_hop_mac = "02:00:00:00:0b:01"
"#;

fn refused(dir: &TestDir, name: &str, text: &str) -> String {
    let path = dir.write(&format!("{name}.toml"), text);
    let out = run(
        dir,
        name,
        &["--config", path.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), 2, "{name}: exit status\n{}", out.stderr);
    assert!(
        !out.stderr.contains("EAL:"),
        "{name}: EAL must not start:\n{}",
        out.stderr
    );
    let msg = out.stderr.trim().to_string();
    assert!(
        msg.contains(&format!("{}:", path.display())),
        "{name}: names the file: {msg}"
    );
    msg
}

#[test]
fn each_error_is_clear() {
    let dir = TestDir::new("cfgerr");
    let cases = [
        (
            "unknown_key",
            GOOD.replace("name = \"wan\"", "name = \"wan\"\nspeed = 10"),
            ":13:1: ports[1].speed: unknown field `speed`",
        ),
        (
            "bad_address",
            GOOD.replace("192.0.2.1/24", "192.0.2.300/24"),
            ":9:8: ports[0].ipv4[0]: invalid IPv4 address/prefix",
        ),
        (
            "bad_prefix",
            GOOD.replace("198.18.0.0/16", "198.18.0.0/40"),
            ":16:10: routes[0].prefix: invalid IPv4 prefix \"198.18.0.0/40\"",
        ),
        (
            "undefined_port",
            GOOD.replace("port = \"wan\"", "port = \"dmz\""),
            ":17:8: routes[0].port: port \"dmz\" is not defined (defined ports: \"lan\", \"wan\")",
        ),
        (
            "duplicate_name",
            GOOD.replace("name = \"wan\"", "name = \"lan\""),
            ":12:8: ports[1].name: port name \"lan\" is used twice",
        ),
        (
            "no_such_core",
            GOOD.replace("workers = [1]", "workers = [1, 97]"),
            ":2:15: eal.workers[1]: core 97 does not exist",
        ),
        ("bad_toml", GOOD.replace("[eal]", "[eal"), ":1:"),
    ];
    for (name, text, needle) in cases {
        let msg = refused(&dir, name, &text);
        assert!(msg.contains(needle), "{name}: expected {needle:?} in\n{msg}");
    }
}

#[test]
fn check_config_flag() {
    let dir = TestDir::new("checkcfg");
    let path = dir.write("good.toml", GOOD);
    let out = run(
        &dir,
        "ok",
        &["--config", path.to_str().unwrap(), "--check-config"],
        Duration::from_secs(20),
    );
    out.assert_ok();
    assert!(
        out.stdout
            .contains("OK (2 ports, 1 routes, 1 workers, 1 classes, 0 rules, 1 paths in 1 groups)"),
        "{}",
        out.stdout
    );
    let missing = run(
        &dir,
        "missing",
        &["--config", "/nonexistent/x.toml"],
        Duration::from_secs(20),
    );
    assert_eq!(missing.code(), 2);
    assert!(
        missing
            .stderr
            .contains("/nonexistent/x.toml: cannot read the configuration"),
        "{}",
        missing.stderr
    );
}

/// The README's multi-cloud example is a valid configuration (on a machine with cores 0
/// and 1; its PCI devices are not opened by --check-config).
#[test]
fn multicloud_example_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/multicloud.toml");
    let out = std::process::Command::new(common::SLUICED)
        .args(["--check-config", "-c", example])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("303 routes") && stdout.contains("5 classes") && stdout.contains("5 paths in 6 groups"),
        "{stdout}"
    );
}

/// `--print-plan` on this machine: the example's plan places every RX queue once, on a
/// worker of the configuration, sizes the pool and reads this machine's hugepages; the
/// human view says the same. Nothing starts (no EAL).
#[test]
fn print_plan_for_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/multicloud.toml");
    let run = |json: bool| {
        let mut args = vec!["--print-plan", "-c", example];
        if json {
            args.push("--json");
        }
        let out = std::process::Command::new(common::SLUICED)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("EAL"), "{stderr}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let p: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let workers = p["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!((&workers[0]["cpu"], &p["control"]["cpu"]), (&1.into(), &0.into()));
    let mut polled: Vec<String> = workers
        .iter()
        .flat_map(|w| w["rx"].as_array().unwrap().iter())
        .map(|r| format!("{}/{}", r["port"].as_str().unwrap(), r["queue"]))
        .collect();
    polled.sort();
    assert_eq!(polled, ["dc/0", "site/0", "wan/0"]);
    let pool = &p["pools"][0];
    assert!(pool["mbufs"].as_u64().unwrap() >= 8191, "{pool}");
    assert!(pool["hugepages_needed_mib"].as_u64().unwrap() > 192, "{pool}");
    for w in p["warnings"].as_array().unwrap() {
        assert!(!w["fix"].as_str().unwrap().is_empty(), "{w}");
    }
    let text = run(false);
    assert!(
        text.starts_with("lcore plan: 1 worker; control thread on core 0")
            && text.contains("worker on core 1 (node 0) polls site/0, wan/0, dc/0"),
        "{text}"
    );
}

/// `sluiced doctor` on this machine, without starting EAL: the example's PCI NICs are not
/// here, so each is a FAIL with its fix and the exit status is 1; a virtual-device
/// configuration finds its driver library and fails nothing.
#[test]
fn doctor_on_this_machine() {
    let doctor = |args: &[&str]| {
        let out = std::process::Command::new(common::SLUICED)
            .arg("doctor")
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("EAL"), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        (out.status.code(), v)
    };
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/multicloud.toml");
    let (code, v) = doctor(&["-c", example]);
    assert_eq!(code, Some(1), "{v}");
    let nics: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "nic")
        .collect();
    assert_eq!(nics.len(), 3, "{v}");
    for f in nics {
        assert_eq!(f["level"], "FAIL", "{f}");
        assert!(f["fix"].as_str().unwrap().contains("scripts/bind-nics.sh"), "{f}");
    }
    let dir = TestDir::new("doctor");
    let cfg = dir.write(
        "memif.toml",
        &GOOD.replace(
            "net_null0",
            &format!("net_memif0,role=server,socket={}/m.sock", dir.path.display()),
        ),
    );
    let (code, v) = doctor(&["-c", cfg.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v}");
    let pmd = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "pmd")
        .unwrap();
    assert_eq!(pmd["level"], "OK", "{pmd}");
    // Linked in (a static DPDK), or found in DPDK's plugin directory (a shared one).
    let what = pmd["what"].as_str().unwrap();
    let expect = if dpdk_sys::LINKED_STATIC {
        "net_memif: linked into sluiced"
    } else {
        "librte_net_memif.so"
    };
    assert!(what.contains(expect), "{pmd}");
    // A bad configuration is a usage error, not a finding.
    let bad = dir.write("bad.toml", "[eal]\nworkers = []\n");
    let out = std::process::Command::new(common::SLUICED)
        .args(["doctor", "-c", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("eal.workers"));
}
