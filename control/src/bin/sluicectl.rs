//! `sluicectl`: the operator's CLI for a running `sluiced`, over its control socket.
//! Every command has a human view and `--json`; commands abbreviate to any unique prefix
//! (`sh pa` is `show paths`); `sluicectl` alone (or `interactive`) reads commands from
//! stdin; `completions SHELL` prints a completion script.

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use control::ctl;
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

const EXIT_REFUSED: i32 = 1;
/// The fast path's stages in pipeline order.
const STAGES: &[&str] = &["rx", "parse_classify", "shape", "route", "mark", "tx"];
const EXIT_USAGE: i32 = 2;
const EXIT_UNREACHABLE: i32 = 3;

#[derive(Parser)]
#[command(
    name = "sluicectl",
    version,
    about = "Control a running sluiced",
    infer_subcommands = true
)]
struct Cli {
    /// The control socket (default: $SLUICE_SOCKET, else that of file prefix --prefix).
    #[arg(long, short, global = true)]
    socket: Option<PathBuf>,
    /// The instance's EAL file prefix, to find its default socket.
    #[arg(long, default_value = "sluice", global = true)]
    prefix: String,
    /// Print the daemon's JSON answer instead of the human view.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show state and counters.
    #[command(infer_subcommands = true)]
    Show {
        #[command(subcommand)]
        what: Show,
    },
    /// Clear counters (shows count from now; the daemon's totals stay for its report).
    #[command(infer_subcommands = true)]
    Clear {
        #[command(subcommand)]
        what: Clear,
    },
    /// Change a class's meter or minimum.
    #[command(infer_subcommands = true)]
    Class {
        #[command(subcommand)]
        op: ClassOp,
    },
    /// Add or delete a route.
    #[command(infer_subcommands = true)]
    Route {
        #[command(subcommand)]
        op: RouteOp,
    },
    /// Drain a path (its flows move, it takes no new ones) or restore it.
    #[command(infer_subcommands = true)]
    Path {
        #[command(subcommand)]
        op: PathOp,
    },
    /// Reload the configuration file (or FILE).
    Reload { file: Option<PathBuf> },
    /// Save the running configuration.
    #[command(infer_subcommands = true)]
    Config {
        #[command(subcommand)]
        op: ConfigOp,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Read commands from stdin, one per line.
    Interactive,
}

#[derive(Subcommand)]
enum Show {
    Ports,
    Workers,
    /// Per worker and stage: packets, bursts, cycles per packet.
    Runtime,
    /// Drops by stage and reason, and what the control plane could not use.
    Errors,
    Classes,
    Queues,
    /// State, RTT, jitter, loss and share of new flows of every path.
    Paths,
    /// The routes, or the route ADDR takes and its group's choice.
    Routes {
        addr: Option<String>,
    },
    /// The largest live flows (up to 20 per worker) and ended flows kept, largest first.
    Flows {
        #[arg(long)]
        top: Option<usize>,
    },
    Probes,
    Neighbors,
    /// The running configuration.
    Config,
    Version,
}

#[derive(Subcommand)]
enum Clear {
    Counters,
}

#[derive(Clone, Copy, ValueEnum)]
enum Setting {
    Rate,
    Burst,
    Min,
}

#[derive(Subcommand)]
enum ClassOp {
    /// class set NAME rate|burst|min VALUE (e.g. 200Mbit, 64KiB)
    Set {
        name: String,
        setting: Setting,
        value: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GroupWord {
    Group,
}

#[derive(Subcommand)]
enum RouteOp {
    /// route add PREFIX group GROUP
    Add {
        prefix: String,
        #[arg(value_enum)]
        group_word: GroupWord,
        group: String,
    },
    /// route del PREFIX
    Del { prefix: String },
}

#[derive(Subcommand)]
enum PathOp {
    Drain { name: String },
    Restore { name: String },
}

#[derive(Subcommand)]
enum ConfigOp {
    Save { file: Option<PathBuf> },
}

fn words(cmd: &Cmd) -> Vec<String> {
    let v: Vec<&str> = match cmd {
        Cmd::Show { what } => {
            let w = match what {
                Show::Ports => "ports",
                Show::Workers => "workers",
                Show::Runtime => "runtime",
                Show::Errors => "errors",
                Show::Classes => "classes",
                Show::Queues => "queues",
                Show::Paths => "paths",
                Show::Routes { addr } => {
                    let mut v = vec!["show".to_string(), "routes".into()];
                    v.extend(addr.iter().cloned());
                    return v;
                }
                Show::Flows { top } => {
                    let mut v = vec!["show".to_string(), "flows".into()];
                    if let Some(n) = top {
                        v.extend(["--top".to_string(), n.to_string()]);
                    }
                    return v;
                }
                Show::Probes => "probes",
                Show::Neighbors => "neighbors",
                Show::Config => "config",
                Show::Version => "version",
            };
            vec!["show", w]
        }
        Cmd::Clear { what: Clear::Counters } => vec!["clear", "counters"],
        Cmd::Class {
            op: ClassOp::Set { name, setting, value },
        } => {
            let s = match setting {
                Setting::Rate => "rate",
                Setting::Burst => "burst",
                Setting::Min => "min",
            };
            return ["class", "set", name, s, value].iter().map(|s| s.to_string()).collect();
        }
        Cmd::Route { op } => {
            return match op {
                RouteOp::Add { prefix, group, .. } => vec![
                    "route".into(),
                    "add".into(),
                    prefix.clone(),
                    "group".into(),
                    group.clone(),
                ],
                RouteOp::Del { prefix } => vec!["route".into(), "del".into(), prefix.clone()],
            }
        }
        Cmd::Path { op } => {
            return match op {
                PathOp::Drain { name } => vec!["path".into(), "drain".into(), name.clone()],
                PathOp::Restore { name } => vec!["path".into(), "restore".into(), name.clone()],
            }
        }
        Cmd::Reload { file } => {
            let mut v = vec!["reload".to_string()];
            v.extend(file.iter().map(|f| absolute(f)));
            return v;
        }
        Cmd::Config {
            op: ConfigOp::Save { file },
        } => {
            let mut v = vec!["config".to_string(), "save".into()];
            v.extend(file.iter().map(|f| absolute(f)));
            return v;
        }
        Cmd::Completions { .. } | Cmd::Interactive => vec![],
    };
    v.into_iter().map(String::from).collect()
}

/// Files are named to the daemon as absolute paths (it does not share our directory).
fn absolute(f: &std::path::Path) -> String {
    std::path::absolute(f)
        .unwrap_or_else(|_| f.to_path_buf())
        .display()
        .to_string()
}

fn socket(cli: &Cli) -> PathBuf {
    cli.socket
        .clone()
        .or_else(|| {
            std::env::var_os("SLUICE_SOCKET")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| control::config::default_socket(&cli.prefix))
}

/// Sends one request; the daemon's answer, or why there is none.
fn call(sock: &std::path::Path, w: &[String]) -> Result<Value, (i32, String)> {
    let mut s = UnixStream::connect(sock).map_err(|e| {
        (
            EXIT_UNREACHABLE,
            format!(
                "cannot connect to {} ({e}); is sluiced running? (--socket / SLUICE_SOCKET)",
                sock.display()
            ),
        )
    })?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let io = |e: std::io::Error| (EXIT_UNREACHABLE, format!("{}: {e}", sock.display()));
    s.write_all(format!("{}\n", ctl::request(w)).as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(io)?;
    let v: Value =
        serde_json::from_str(&line).map_err(|e| (EXIT_UNREACHABLE, format!("bad answer from sluiced: {e}")))?;
    if v["ok"] == Value::Bool(true) {
        Ok(v["result"].clone())
    } else {
        Err((EXIT_REFUSED, v["error"].as_str().unwrap_or("refused").to_string()))
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// A table of `rows` with (header, key) columns; keys may be `a.b` paths.
fn table(rows: &[Value], cols: &[(&str, &str)]) -> String {
    let get = |r: &Value, k: &str| k.split('.').fold(r.clone(), |v, p| v[p].clone());
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|(_, k)| cell(&get(r, k))).collect())
        .collect();
    let width: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|c| c[i].len()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |vals: Vec<&str>| {
        let mut l: String = vals
            .iter()
            .zip(&width)
            .enumerate()
            .map(|(i, (v, w))| if i == 0 { format!("{v:<w$}") } else { format!("{v:>w$}") })
            .collect::<Vec<_>>()
            .join("  ");
        l.truncate(l.trim_end().len());
        l + "\n"
    };
    out.push_str(&line(cols.iter().map(|(h, _)| *h).collect()));
    for c in &cells {
        out.push_str(&line(c.iter().map(String::as_str).collect()));
    }
    out
}

fn map_rows(m: &Value) -> Vec<Value> {
    m.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
                .collect()
        })
        .unwrap_or_default()
}

fn human(w: &[String], r: &Value) -> String {
    let arr = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match (w[0].as_str(), w.get(1).map(String::as_str)) {
        ("show", Some("ports")) => table(
            &arr(r),
            &[
                ("port", "name"),
                ("driver", "driver"),
                ("link", "link"),
                ("mac", "mac"),
                ("rx_packets", "rx_packets"),
                ("tx_packets", "tx_packets"),
                ("rx_missed", "rx_missed"),
                ("rx_errors", "rx_errors"),
                ("tx_errors", "tx_errors"),
            ],
        ),
        ("show", Some("workers")) => table(
            &arr(r),
            &[
                ("worker", "worker"),
                ("lcore", "lcore"),
                ("busy%", "busy_pct"),
                ("rx_packets", "rx_packets"),
                ("tx_packets", "tx_packets"),
                ("drops", "drops"),
            ],
        ),
        ("show", Some("runtime")) => {
            let mut out = String::new();
            for wk in arr(&r["workers"]) {
                out.push_str(&format!(
                    "worker {} (lcore {}), busy {:.1} %\n",
                    wk["worker"],
                    wk["lcore"],
                    wk["busy_pct"].as_f64().unwrap_or(0.0)
                ));
                let l = &wk["latency"];
                if l["samples"].as_u64().unwrap_or(0) > 0 {
                    let us = |k: &str| l[k].as_f64().map_or("-".to_string(), |v| format!("{v:.2}"));
                    out.push_str(&format!(
                        "  latency (µs, {} packets): min {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
                        l["samples"],
                        us("min_us"),
                        us("p50_us"),
                        us("p90_us"),
                        us("p99_us"),
                        us("p999_us"),
                        us("max_us")
                    ));
                } else {
                    out.push_str("  latency: no packets sent yet\n");
                }
                let rows: Vec<Value> = STAGES
                    .iter()
                    .map(|k| {
                        let mut v = wk["stages"][*k].clone();
                        v["stage"] = (*k).into();
                        v
                    })
                    .collect();
                out.push_str(&table(
                    &rows,
                    &[
                        ("stage", "stage"),
                        ("packets", "packets"),
                        ("bursts", "bursts"),
                        ("cycles/pkt", "cycles_per_packet"),
                    ],
                ));
            }
            out
        }
        ("show", Some("errors")) => {
            let nonzero: Vec<Value> = map_rows(&r["drops"]).into_iter().filter(|v| v["value"] != 0).collect();
            let mut out = String::from("drops by reason\n");
            out.push_str(&if nonzero.is_empty() {
                "  none\n".into()
            } else {
                table(&nonzero, &[("reason", "name"), ("packets", "value")])
            });
            out.push_str("drops by stage\n");
            let by_stage: Vec<Value> = STAGES
                .iter()
                .map(|k| serde_json::json!({"name": k, "value": r["drops_by_stage"][*k]}))
                .collect();
            out.push_str(&table(&by_stage, &[("stage", "name"), ("packets", "value")]));
            let cp = &r["control_plane"];
            let listed = |v: &Value| match v.as_object() {
                Some(o) if !o.is_empty() => o.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
                _ => "none".into(),
            };
            out.push_str(&format!(
                "control plane: malformed: {}; unhandled: {}; tx dropped {}, unsendable {}\n",
                listed(&cp["malformed"]),
                listed(&cp["unhandled"]),
                cp["tx_dropped"],
                cp["unsendable"]
            ));
            out
        }
        ("show", Some("classes")) => table(
            &arr(r),
            &[
                ("class", "name"),
                ("prio", "priority"),
                ("conform", "conform_packets"),
                ("exceed", "exceed_packets"),
                ("violate", "violate_packets"),
                ("conform_bytes", "conform_bytes"),
                ("meter", "meter"),
            ],
        ),
        ("show", Some("queues")) => table(
            &arr(r),
            &[
                ("port", "port"),
                ("prio", "priority"),
                ("enqueued", "enqueued"),
                ("dropped", "dropped"),
                ("ce_marked", "ce_marked"),
            ],
        ),
        ("show", Some("paths")) => {
            let mut out = table(
                &arr(&r["paths"]),
                &[
                    ("path", "name"),
                    ("cloud", "cloud"),
                    ("port", "port"),
                    ("state", "state"),
                    ("rtt_us", "rtt_ewma_us"),
                    ("jitter_us", "jitter_us"),
                    ("loss%", "loss_pct"),
                    ("new_flows%", "new_flow_share_pct"),
                    ("next_hop", "next_hop"),
                    ("mac", "next_hop_mac"),
                ],
            );
            let ev = arr(&r["events"]);
            if !ev.is_empty() {
                out.push_str("recent changes\n");
                out.push_str(&table(
                    &ev[ev.len().saturating_sub(10)..],
                    &[
                        ("at_ms", "at_ms"),
                        ("path", "path"),
                        ("from", "from"),
                        ("to", "to"),
                        ("reason", "reason"),
                    ],
                ));
            }
            out
        }
        ("show", Some("routes")) => {
            let rows = if r.is_array() { arr(r) } else { vec![r.clone()] };
            let rows: Vec<Value> = rows
                .into_iter()
                .map(|mut v| {
                    let chosen: Vec<String> = arr(&v["chosen"])
                        .iter()
                        .map(|c| format!("{}:{}", cell(&c["path"]), c["weight"]))
                        .collect();
                    v["chosen_text"] = chosen.join(" ").into();
                    v
                })
                .collect();
            let mut cols = vec![
                ("prefix", "prefix"),
                ("group", "group"),
                ("policy", "policy"),
                ("chosen", "chosen_text"),
                ("kept", "kept"),
            ];
            if !r.is_array() {
                cols.insert(0, ("address", "address"));
                if r["prefix"].is_null() {
                    return format!("{}: no route (dropped as no_route)\n", cell(&r["address"]));
                }
            }
            table(&rows, &cols)
        }
        ("show", Some("flows")) => {
            let cols = [
                ("src", "src"),
                ("dst", "dst"),
                ("sport", "src_port"),
                ("dport", "dst_port"),
                ("proto", "proto"),
                ("class", "class"),
                ("path", "path"),
                ("packets", "packets"),
                ("bytes", "bytes"),
                ("end", "end"),
            ];
            let mut out = format!(
                "{} live flows; largest (as of each worker's last walk of its table):\n",
                r["live_flows"]
            );
            out.push_str(&table(&arr(&r["live"]), &cols[..9]));
            out.push_str(&format!("{} ended flows kept; largest:\n", r["ended_flows_kept"]));
            out.push_str(&table(&arr(&r["ended"]), &cols));
            out
        }
        ("show", Some("probes")) => {
            let mut out = format!(
                "every {} ms ±{} %, timeout {}, down after {}, up after {} and {} ms held down, window {}, STAMP port {}\n",
                r["interval_ms"], r["jitter_pct"],
                if r["timeout_ms"].is_null() { "auto".to_string() } else { format!("{} ms", r["timeout_ms"]) },
                r["down_after"], r["up_after"], r["hold_down_ms"], r["window"], r["stamp_port"]
            );
            out.push_str(&table(
                &arr(&r["paths"]),
                &[
                    ("path", "name"),
                    ("probe", "probe"),
                    ("target", "probe_target"),
                    ("icmp_sent", "icmp_sent"),
                    ("icmp_ok", "icmp_answered"),
                    ("stamp_sent", "stamp_sent"),
                    ("stamp_ok", "stamp_answered"),
                    ("missed", "missed"),
                    ("late", "late"),
                    ("skipped", "skipped"),
                ],
            ));
            out
        }
        ("show", Some("neighbors")) => table(
            &arr(r),
            &[
                ("port", "port"),
                ("ip", "ip"),
                ("mac", "mac"),
                ("state", "state"),
                ("requests", "requests"),
                ("answers", "answers"),
                ("failures", "failures"),
                ("waiting", "waiting"),
                ("held", "held"),
                ("released", "released"),
                ("overflowed", "overflowed"),
                ("unresolved", "unresolved"),
            ],
        ),
        ("show", Some("config")) => r["text"].as_str().unwrap_or("").to_string(),
        ("show", Some("version")) => format!(
            "sluiced {}, {}, protocol {}, up {:.0} s, config {} (generation {})\n",
            cell(&r["sluiced"]),
            cell(&r["dpdk"]),
            r["protocol"],
            r["uptime_s"].as_f64().unwrap_or(0.0),
            cell(&r["config"]),
            r["generation"]
        ),
        ("clear", _) => "counters cleared\n".into(),
        ("reload", _) => format!("reloaded {} (generation {})\n", cell(&r["reloaded"]), r["generation"]),
        ("config", _) => format!("saved {} ({} bytes)\n", cell(&r["saved"]), r["bytes"]),
        _ => format!("ok: {} (generation {})\n", cell(&r["applied"]), r["generation"]),
    }
}

/// Runs one parsed command line; the exit status.
fn run(cli: &Cli) -> i32 {
    let Some(cmd) = &cli.cmd else {
        return interactive(cli);
    };
    match cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "sluicectl", &mut std::io::stdout());
            0
        }
        Cmd::Interactive => interactive(cli),
        c => {
            let w = words(c);
            match call(&socket(cli), &w) {
                Ok(r) => {
                    let text = if cli.json { format!("{r:#}\n") } else { human(&w, &r) };
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    0
                }
                Err((code, msg)) => {
                    eprintln!("sluicectl: {msg}");
                    code
                }
            }
        }
    }
}

fn interactive(cli: &Cli) -> i32 {
    let tty = std::io::stdin().is_terminal();
    let mut status = 0;
    let stdin = std::io::stdin();
    loop {
        if tty {
            print!("sluice> ");
            let _ = std::io::stdout().flush();
        }
        let mut line = String::new();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if matches!(line, "quit" | "exit" | "q") {
            break;
        }
        let mut argv = vec!["sluicectl".to_string()];
        if let Some(s) = &cli.socket {
            argv.extend(["--socket".into(), s.display().to_string()]);
        }
        argv.extend(["--prefix".into(), cli.prefix.clone()]);
        if cli.json {
            argv.push("--json".into());
        }
        argv.extend(line.split_whitespace().map(String::from));
        status = match Cli::try_parse_from(&argv) {
            Ok(c) if matches!(c.cmd, None | Some(Cmd::Interactive)) => {
                eprintln!("already interactive");
                EXIT_USAGE
            }
            Ok(c) => run(&c),
            Err(e) => {
                let _ = e.print();
                EXIT_USAGE
            }
        };
    }
    status
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    std::process::exit(run(&cli));
}
