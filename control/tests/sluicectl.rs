//! `sluicectl` without a daemon: usage errors, completions, help, and a clear message with
//! its own exit status when nothing listens. (Against a running `sluiced`:
//! dataplane/tests/ctl.rs.)

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sluicectl");

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn offline_behaviour() {
    let (code, out, _) = run(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("sluicectl") && out.contains("neighbors"));
    let (code, _, err) = run(&["show", "nonsense"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["show", "p"]);
    assert_eq!(code, 2, "ambiguous: {err}");
    let (code, out, _) = run(&["show", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("paths") && out.contains("runtime"));
    let (code, _, err) = run(&["--socket", "/nonexistent/sluice.sock", "sh", "pa"]);
    assert_eq!(code, 3);
    assert!(err.contains("is sluiced running?"), "{err}");
    let (code, _, err) = run(&["route", "add", "10.0.0.0/8", "grp", "x"]);
    assert_eq!(code, 2, "{err}");
}
