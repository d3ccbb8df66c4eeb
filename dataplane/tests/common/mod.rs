//! Helpers for tests that run `sluiced` as a child process: a private directory, a unique
//! EAL file prefix, a time bound, and a guard that always kills and reaps the child.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SLUICED: &str = env!("CARGO_BIN_EXE_sluiced");

/// A directory of the test's own, removed afterwards.
pub struct TestDir {
    pub path: PathBuf,
    pub name: String,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let name = format!("{name}_{}", std::process::id());
        let path = std::env::temp_dir().join(format!("sluice-test-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path, name }
    }
    pub fn file(&self, f: &str) -> PathBuf {
        self.path.join(f)
    }
    /// A unique EAL file prefix for one process of this test.
    pub fn prefix(&self, role: &str) -> String {
        format!("t_{}_{role}", self.name)
    }
    pub fn write(&self, f: &str, text: &str) -> PathBuf {
        let p = self.file(f);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
        // Hugepage files EAL left behind for this test's prefixes (memif regions outlive
        // rte_eal_cleanup): they would hold hugepages until the machine reboots.
        let ours = format!("t_{}_", self.name);
        if let Ok(rd) = std::fs::read_dir("/dev/hugepages") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&ours) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A running `sluiced`; dropping it kills and reaps it.
pub struct Daemon {
    child: Option<Child>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
    pub fn assert_ok(&self) {
        assert_eq!(
            self.code(),
            0,
            "sluiced failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

impl Daemon {
    pub fn start(dir: &TestDir, role: &str, args: &[&str]) -> Daemon {
        let stdout = dir.file(&format!("{role}.stdout"));
        let stderr = dir.file(&format!("{role}.stderr"));
        let child = Command::new(SLUICED)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn sluiced");
        Daemon {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Waits until the daemon's log holds `needle`; fails the test after `limit`, or
    /// at once if the daemon exits first.
    #[allow(dead_code)]
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if log.contains(needle) {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && start.elapsed() < limit,
                "no \"{needle}\" in the log within {limit:?} (exited: {exited:?})\n--- stderr\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit; kills it and fails the test after `limit`.
    pub fn wait(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "sluiced did not exit within {limit:?}\n--- stderr\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Finished {
            status,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `sluiced` to completion with a time bound.
pub fn run(dir: &TestDir, role: &str, args: &[&str], limit: Duration) -> Finished {
    Daemon::start(dir, role, args).wait(limit)
}

/// Writes a pcap holding `frames`.
pub fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = dataplane::pcap::PcapWriter::create(path).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write(i as u64, f).unwrap();
    }
    w.finish().unwrap();
}

pub fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    dataplane::pcap::read_all(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

pub fn stats(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Asserts every pool got all its mbufs back.
pub fn assert_no_leak(stats: &serde_json::Value) {
    let pools = stats["mempools"].as_array().expect("mempools in stats");
    assert!(!pools.is_empty());
    for p in pools {
        assert_eq!(p["in_use_after"], p["in_use_before"], "mbuf leak in {p}");
        assert_eq!(p["leak"], false);
    }
}

/// The `[eal]` section tests use: one worker on core 1, control on core 0, hugepages when
/// the machine has them.
pub fn eal_section(prefix: &str) -> String {
    format!("[eal]\nworkers = [1]\ncontrol_core = 0\nhugepages = \"auto\"\nfile_prefix = \"{prefix}\"\n")
}

/// RFC 1071 checksum, written independently of the code under test.
pub fn inet_checksum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        s += ((c[0] as u32) << 8) | c.get(1).copied().unwrap_or(0) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Signals our own child with kill(1), keeping the tests free of unsafe code.
pub fn send_signal(pid: i32, sig: i32) -> i32 {
    std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.code().unwrap_or(1))
        .unwrap_or(1)
}
