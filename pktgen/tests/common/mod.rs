//! Helpers for tests that run `sluice-pktgen` as child processes: a private directory,
//! unique EAL file prefixes, time bounds, reaping, and one test at a time (each process
//! busy-polls a core, and the machine has two).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const PKTGEN: &str = env!("CARGO_BIN_EXE_sluice-pktgen");

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for the whole test: DPDK tests take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct TestDir {
    pub path: PathBuf,
    pub name: String,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let name = format!("{name}_{}", std::process::id());
        let path = std::env::temp_dir().join(format!("sluice-pg-{name}"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path, name }
    }
    pub fn file(&self, f: &str) -> PathBuf {
        self.path.join(f)
    }
    pub fn prefix(&self, role: &str) -> String {
        format!("pg_{}_{role}", self.name)
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
        let ours = format!("pg_{}_", self.name);
        if let Ok(rd) = std::fs::read_dir("/dev/hugepages") {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&ours) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// A running `sluice-pktgen`; dropping it kills and reaps it.
pub struct Proc {
    child: Option<Child>,
    pub role: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

pub struct Done {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Done {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "sluice-pktgen failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn json(&self) -> serde_json::Value {
        self.ok();
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// `sluiced`, built beside `sluice-pktgen` by `cargo test --workspace`.
pub fn sluiced() -> PathBuf {
    let p = std::path::Path::new(PKTGEN).with_file_name("sluiced");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo build --workspace) first",
        p.display()
    );
    p
}

impl Proc {
    /// Starts `sluice-pktgen` with `args` plus a unique file prefix.
    pub fn start(dir: &TestDir, role: &str, args: &[&str]) -> Proc {
        let prefix = dir.prefix(role);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--file-prefix", &prefix]);
        Proc::start_program(dir, role, std::path::Path::new(PKTGEN), &all)
    }

    /// Starts `sluiced` with `args` (its file prefix is in its configuration).
    pub fn start_sluiced(dir: &TestDir, role: &str, args: &[&str]) -> Proc {
        Proc::start_program(dir, role, &sluiced(), args)
    }

    pub fn start_program(dir: &TestDir, role: &str, program: &std::path::Path, args: &[&str]) -> Proc {
        let stdout = dir.file(&format!("{role}.stdout"));
        let stderr = dir.file(&format!("{role}.stderr"));
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Proc {
            child: Some(child),
            role: role.into(),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether it is still running (one that exited is reaped here; `wait` still reports
    /// how).
    pub fn running(&mut self) -> bool {
        let c = self.child.as_mut().expect("not waited for yet");
        matches!(c.try_wait(), Ok(None))
    }

    pub fn wait(mut self, limit: Duration) -> Done {
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {limit:?}\n--- stderr\n{}",
                    self.role,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Done {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until `role`'s log says `what`; whether it did within `limit`.
pub fn said(dir: &TestDir, role: &str, what: &str, limit: Duration) -> bool {
    let log = dir.file(&format!("{role}.stderr"));
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains(what) {
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

pub fn run(dir: &TestDir, role: &str, args: &[&str], limit: Duration) -> Done {
    Proc::start(dir, role, args).wait(limit)
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Runs a shell command, returning whether it succeeded.
pub fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// `sluicectl --socket SOCK ARGS`, which must succeed; its standard output.
pub fn sluicectl(sock: &std::path::Path, args: &[&str]) -> String {
    let bin = std::path::Path::new(PKTGEN).with_file_name("sluicectl");
    let o = Command::new(&bin)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (build the workspace first)", bin.display()));
    assert!(
        o.status.success(),
        "sluicectl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into()
}
