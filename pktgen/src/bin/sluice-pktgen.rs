//! `sluice-pktgen`: generate and analyse traffic (`run`), replay a pcap (`replay`), or
//! play cloud gateways (`reflect`). Figures go to stdout (a table, or one JSON object with
//! `--json`); live lines, warnings and errors go to stderr.

use clap::{Args, Parser, Subcommand, ValueEnum};
use pktgen::gen::{self, RunOptions};
use pktgen::ports::{self, EalOptions, Hugepages, Setup};
use pktgen::report::RunReport;
use pktgen::spec::{self, NumOrText, RawStream};
use pktgen::{reflect, reflector, replay, search};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sluice-pktgen",
    version,
    about = "DPDK traffic generator, analyser and gateway reflector"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send streams, receive them back, and report rates, loss, reordering and latency.
    Run(Box<RunArgs>),
    /// Send the frames of a pcap file at a rate or at the file's own timing.
    Replay(ReplayArgs),
    /// Answer ARP, ICMP echo and STAMP probes for gateway addresses and return data
    /// traffic, with per-gateway delay, jitter, loss and an up/down schedule.
    Reflect(ReflectArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum HugeArg {
    Auto,
    On,
    Off,
}

#[derive(Args)]
struct Common {
    /// A DPDK port: device arguments (`net_memif0,role=client,socket=/run/x.sock`) or a
    /// PCI address. Repeat for several; streams name them by index from 0.
    #[arg(long = "port", required = true)]
    ports: Vec<String>,
    /// EAL's main lcore (it prints and waits; it does not poll).
    #[arg(long, default_value_t = 0)]
    main_lcore: u32,
    /// EAL file prefix; every DPDK process on the machine needs its own.
    #[arg(long)]
    file_prefix: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    hugepages: HugeArg,
    /// Memory for EAL in MiB.
    #[arg(long)]
    memory_mb: Option<u32>,
    /// Extra EAL arguments, split at spaces (`--eal "--lcores 0@0,1@1"`).
    #[arg(long, allow_hyphen_values = true)]
    eal: Option<String>,
    /// Wait this long for links to come up (memif needs its peer).
    #[arg(long, default_value = "5s", value_parser = duration_ns)]
    link_wait: u64,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// No live line per second.
    #[arg(long, short)]
    quiet: bool,
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Args)]
struct StreamArgs {
    /// Streams from a TOML file of [[stream]] tables (instead of the flags below).
    #[arg(long)]
    streams: Option<PathBuf>,
    /// Destination address, range (a-b) or prefix.
    #[arg(long)]
    dst: Option<String>,
    #[arg(long)]
    src: Option<String>,
    /// Frame size with FCS: 64, imix, or a sweep 64-1518[/step].
    #[arg(long)]
    size: Option<String>,
    /// udp, tcp or icmp.
    #[arg(long)]
    proto: Option<String>,
    #[arg(long)]
    sport: Option<String>,
    #[arg(long)]
    dport: Option<String>,
    /// Distinct flows (default: every combination of the ranges).
    #[arg(long)]
    flows: Option<u64>,
    #[arg(long)]
    vlan: Option<u16>,
    /// DSCP: a number or a name (ef, af41, cs1...).
    #[arg(long)]
    dscp: Option<String>,
    #[arg(long)]
    ecn: Option<u8>,
    #[arg(long)]
    ttl: Option<u8>,
    /// max, 1.5Mpps, 500Mbit (layer 1), or 10% of the link.
    #[arg(long)]
    rate: Option<String>,
    #[arg(long)]
    dst_mac: Option<String>,
    #[arg(long)]
    src_mac: Option<String>,
    /// Packets to send (otherwise --duration).
    #[arg(long)]
    count: Option<u64>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    stream: StreamArgs,
    /// Lcores that transmit (a list: 1,2 or 1-2). Each gets a TX queue on every port.
    #[arg(long, default_value = "1")]
    tx_lcores: String,
    /// Lcores that receive and analyse (may be the TX lcores), or "none" to only send.
    #[arg(long, default_value = "1")]
    rx_lcores: String,
    /// Queues per port, at least (a memif peer such as sluiced may have more rings than
    /// this run has lcores; extra RX queues are polled, extra TX queues stay idle).
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// How long to send (10s, 500ms); each search trial lasts this long.
    #[arg(long, value_parser = duration_ns)]
    duration: Option<u64>,
    /// How long to keep receiving after the last packet is sent.
    #[arg(long, default_value = "200ms", value_parser = duration_ns)]
    drain: u64,
    /// When done, wait up to this long for memif peers to disconnect before closing
    /// (stop them meanwhile: the side that closes first must not be polled).
    #[arg(long, default_value = "0s", value_parser = duration_ns)]
    peer_wait: u64,
    /// Once the links are up, wait this long before the first packet: a peer whose link
    /// just came up (an appliance rebuilding its tables for it) gets time to settle.
    #[arg(long, default_value = "0s", value_parser = duration_ns)]
    settle: u64,
    /// RFC 2544 search: ndr, pdr or pdr=<loss>%.
    #[arg(long)]
    search: Option<String>,
    /// In a search, repeat a failing trial this many times before the rate counts as
    /// failed (a one-off hiccup is then not taken for the device's limit).
    #[arg(long, default_value_t = 0)]
    retries: u32,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// The pcap file.
    #[arg(long)]
    pcap: PathBuf,
    /// packets/s, bits/s or percent; without it the file's own timing is kept.
    #[arg(long, value_parser = rate)]
    rate: Option<spec::Rate>,
    /// Times to play the file.
    #[arg(long, default_value_t = 1)]
    loops: u64,
    /// The TX lcore.
    #[arg(long, default_value_t = 1)]
    lcore: u32,
}

#[derive(Args)]
struct ReflectArgs {
    #[command(flatten)]
    common: Common,
    /// Gateways: a TOML file of [[gateway]] tables.
    #[arg(long)]
    config: PathBuf,
    /// The polling lcore.
    #[arg(long, default_value_t = 1)]
    lcore: u32,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = duration_ns)]
    duration: Option<u64>,
    /// Queues per port (to match a memif peer with more rings, such as sluiced with its
    /// control queue); every RX queue is polled, answers leave by TX queue 0.
    #[arg(long, default_value_t = 1)]
    queues: u16,
}

/// Durations on the command line (`10s`, `500ms`), in ns.
fn duration_ns(s: &str) -> Result<u64, String> {
    spec::parse_duration_ns(s).map_err(|e| e.0)
}

fn rate(s: &str) -> Result<spec::Rate, String> {
    spec::parse_rate(s).map_err(|e| e.0)
}

fn lcore_list(s: &str, what: &str) -> Result<Vec<u32>, String> {
    let set = numa::parse_cpu_list(s).map_err(|e| format!("{what} {s:?}: {e}"))?;
    if set.is_empty() {
        return Err(format!("{what}: give at least one lcore"));
    }
    Ok(set.into_iter().collect())
}

fn eal_options(c: &Common, lcores: Vec<u32>) -> Result<EalOptions, String> {
    if lcores.contains(&c.main_lcore) {
        return Err(format!(
            "lcore {} is the main lcore; polling lcores must be others (or map two lcores to one CPU with --eal \"--lcores ...\")",
            c.main_lcore
        ));
    }
    Ok(EalOptions {
        file_prefix: c
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("sluice-pktgen-{}", std::process::id())),
        main_lcore: c.main_lcore,
        lcores,
        hugepages: match c.hugepages {
            HugeArg::Auto => Hugepages::Auto,
            HugeArg::On => Hugepages::On,
            HugeArg::Off => Hugepages::Off,
        },
        memory_mb: c.memory_mb,
        extra: c
            .eal
            .as_deref()
            .map(|e| e.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
        verbose: c.verbose,
    })
}

fn raw_from_flags(a: &StreamArgs) -> RawStream {
    RawStream {
        name: None,
        port: None,
        size: a.size.clone().map(NumOrText::Text),
        proto: a.proto.clone(),
        src: a.src.clone(),
        dst: a.dst.clone(),
        sport: a.sport.clone().map(NumOrText::Text),
        dport: a.dport.clone().map(NumOrText::Text),
        flows: a.flows,
        vlan: a.vlan,
        dscp: a.dscp.clone().map(NumOrText::Text),
        ecn: a.ecn,
        ttl: a.ttl,
        rate: a.rate.clone(),
        src_mac: a.src_mac.clone(),
        dst_mac: a.dst_mac.clone(),
        count: a.count,
    }
}

/// SIGINT and SIGTERM set the flag: the run stops sending, drains and reports.
fn interrupt_flag() -> Arc<AtomicBool> {
    let f = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, f.clone());
    }
    f
}

fn cmd_run(a: RunArgs) -> Result<(), String> {
    let raw = match &a.stream.streams {
        Some(p) => {
            if a.stream.dst.is_some() {
                return Err("give either --streams FILE or stream flags, not both".into());
            }
            spec::load_file(p).map_err(|e| e.to_string())?
        }
        None => vec![raw_from_flags(&a.stream)],
    };
    let streams = spec::check_all(&raw, a.common.ports.len()).map_err(|e| e.to_string())?;
    let tx = lcore_list(&a.tx_lcores, "--tx-lcores")?;
    let rx = if a.rx_lcores == "none" {
        Vec::new()
    } else {
        lcore_list(&a.rx_lcores, "--rx-lcores")?
    };
    if a.queues == 0 || a.queues > 64 {
        return Err("--queues: use 1-64".into());
    }
    if tx.len() > pktgen::sig::MAX_LANES {
        return Err(format!("at most {} TX lcores", pktgen::sig::MAX_LANES));
    }
    let mut all = tx.clone();
    all.extend(rx.iter().filter(|c| !tx.contains(c)));
    let eal = eal_options(&a.common, all)?;
    let (duration_ns, drain_ns) = (a.duration, a.drain);
    let goal = a
        .search
        .as_deref()
        .map(search::parse_goal)
        .transpose()?
        .map(|g| search::Goal {
            retries: a.retries.min(10),
            ..g
        });
    if goal.is_some() && duration_ns.is_none() {
        return Err("--search needs --duration (the length of each trial)".into());
    }
    let interrupt = interrupt_flag();
    let (rxq, txq) = ((rx.len() as u16).max(a.queues), (tx.len() as u16).max(a.queues));
    with_ports(&a.common, &eal, rxq, txq, 0, |setup| {
        setup.wait_links(a.common.link_wait / 1_000_000)?;
        let settle_until = std::time::Instant::now() + std::time::Duration::from_nanos(a.settle);
        while std::time::Instant::now() < settle_until && !interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut opts = RunOptions {
            tx_lcores: tx.clone(),
            rx_lcores: rx.clone(),
            duration_ns,
            drain_ns,
            rate_scale: 1.0,
            live: !a.common.quiet,
        };
        match goal {
            None => {
                let r = gen::run(setup, &streams, &opts, &interrupt)?;
                print_report(a.common.json, &r, RunReport::human)?;
            }
            Some(g) => {
                let mut streams = streams.clone();
                // "max" has no scale: measure what max is, and search below it.
                if streams.iter().any(|s| s.rate == spec::Rate::Max) {
                    let r = gen::run(setup, &streams, &opts, &interrupt)?;
                    for (s, rep) in streams.iter_mut().zip(&r.streams) {
                        if s.rate == spec::Rate::Max {
                            s.rate = spec::Rate::Pps(rep.tx_pps.max(1.0));
                        }
                    }
                }
                opts.live = false;
                let (trials, best) = search::search(&g, |scale| {
                    if interrupt.load(Ordering::Relaxed) {
                        return Err("interrupted".into());
                    }
                    opts.rate_scale = scale;
                    let r = gen::run(setup, &streams, &opts, &interrupt)?;
                    eprintln!(
                        "trial at {:.2}% of the top rate: TX {:.4} Mpps, loss {:.5}% -> {}",
                        scale * 100.0,
                        r.total.tx_pps / 1e6,
                        r.total.loss_ratio * 100.0,
                        if r.total.loss_ratio <= g.max_loss {
                            "pass"
                        } else {
                            "fail"
                        }
                    );
                    Ok((r.total.loss_ratio, r.total.tx_pps, r))
                })?;
                let out = serde_json::json!({
                    "tool": "sluice-pktgen",
                    "search": a.search,
                    "max_loss_ratio": g.max_loss,
                    "retries": g.retries,
                    "trials": trials,
                    "rate_pps": best.as_ref().map(|(_, r)| r.total.tx_pps).unwrap_or(0.0),
                    "rate_gbps_l1": best.as_ref().map(|(_, r)| r.total.tx_gbps_l1).unwrap_or(0.0),
                    "result": best.as_ref().map(|(_, r)| r),
                });
                if a.common.json {
                    println!("{out}");
                } else {
                    match &best {
                        Some((scale, r)) => {
                            println!(
                                "{}: {:.4} Mpps ({:.3} Gbit/s L1, {:.2}% of the top rate) with loss {:.5}%, {} trials",
                                a.search.as_deref().unwrap_or(""),
                                r.total.tx_pps / 1e6,
                                r.total.tx_gbps_l1,
                                scale * 100.0,
                                r.total.loss_ratio * 100.0,
                                trials.len()
                            );
                            print!("{}", r.human());
                        }
                        None => println!("no trial met the loss bound ({} trials)", trials.len()),
                    }
                }
            }
        }
        setup.wait_for_memif_peers(std::time::Duration::from_nanos(a.peer_wait));
        Ok(())
    })
}

fn cmd_replay(a: ReplayArgs) -> Result<(), String> {
    if a.common.ports.len() != 1 {
        return Err("replay sends on one port: give --port once".into());
    }
    if a.loops == 0 {
        return Err("--loops must be at least 1".into());
    }
    let records = dataplane::pcap::read_all(&a.pcap).map_err(|e| format!("reading {}: {e}", a.pcap.display()))?;
    let (mut frames, mut ts) = (Vec::new(), Vec::new());
    let mut skipped = 0;
    for (t, f) in records {
        if f.len() < 14 || f.len() > replay::MAX_FRAME {
            skipped += 1;
        } else {
            ts.push(t);
            frames.push(f);
        }
    }
    if skipped > 0 {
        log::warn!(
            "{skipped} frame(s) of {} are shorter than 14 or longer than {} bytes and are left out",
            a.pcap.display(),
            replay::MAX_FRAME
        );
    }
    let eal = eal_options(&a.common, vec![a.lcore])?;
    let rate = a.rate;
    let interrupt = interrupt_flag();
    with_ports(&a.common, &eal, 1, 1, 0, |setup| {
        setup.wait_links(a.common.link_wait / 1_000_000)?;
        let avg = frames.iter().map(|f| f.len() as f64 + 4.0).sum::<f64>() / frames.len().max(1) as f64;
        let pace = match rate {
            None => replay::Pace::FileTiming,
            Some(spec::Rate::Max) => replay::Pace::Rate(1e12),
            Some(r) => {
                let link = setup.ports[0].port.link().speed_mbps;
                replay::Pace::Rate(r.pps(avg, link).map_err(|e| e.to_string())?.unwrap_or(1e12))
            }
        };
        let r = replay::run(setup, frames, ts, skipped, pace, a.loops, a.lcore, &interrupt)?;
        print_report(a.common.json, &r, |r| {
            format!(
                "replayed {} frames ({} loops of {} frames, {} skipped) in {:.3} s: {:.4} Mpps, {:.3} Gbit/s\n",
                r.tx_packets,
                r.loops,
                r.file_frames - r.skipped_frames,
                r.skipped_frames,
                r.duration_s,
                r.tx_pps / 1e6,
                r.tx_gbps
            )
        })
    })
}

fn cmd_reflect(a: ReflectArgs) -> Result<(), String> {
    let cfg = reflect::load(&a.config).map_err(|e| e.to_string())?;
    let duration_ns = a.duration;
    let eal = eal_options(&a.common, vec![a.lcore])?;
    let interrupt = interrupt_flag();
    if a.queues == 0 || a.queues > 64 {
        return Err("--queues: use 1-64".into());
    }
    with_ports(&a.common, &eal, a.queues, a.queues, cfg.queue_limit, |setup| {
        for g in &cfg.gateways {
            log::info!("gateway {} at {} with MAC {}", g.name, g.ip, spec::format_mac(&g.mac));
        }
        let o = reflector::ReflectOptions {
            lcore: a.lcore,
            duration_ns,
            live: !a.common.quiet,
        };
        let r = reflector::run(setup, &cfg, &o, &interrupt)?;
        print_report(a.common.json, &r, reflector::ReflectReport::human)
    })
}

/// Opens the ports, runs `f` on them, and always closes them (EAL, the pool and this
/// process's hugepage files with them).
fn with_ports(
    c: &Common,
    eal: &EalOptions,
    rx_queues: u16,
    tx_queues: u16,
    held: u32,
    f: impl FnOnce(&mut Setup) -> Result<(), String>,
) -> Result<(), String> {
    let mut setup = ports::open(&c.ports, eal, rx_queues, tx_queues, held, c.link_wait / 1_000_000)?;
    let r = f(&mut setup);
    setup.close();
    r
}

/// One JSON object on stdout, or the human form.
fn print_report<T: serde::Serialize>(json: bool, r: &T, human: impl FnOnce(&T) -> String) -> Result<(), String> {
    if json {
        println!("{}", serde_json::to_string(r).map_err(|e| e.to_string())?);
    } else {
        print!("{}", human(r));
    }
    Ok(())
}

fn main() -> ExitCode {
    dataplane::dpdk::mempool_ops_probe_hook();
    let cli = Cli::parse();
    let verbose = match &cli.cmd {
        Cmd::Run(a) => a.common.verbose,
        Cmd::Replay(a) => a.common.verbose,
        Cmd::Reflect(a) => a.common.verbose,
    };
    control::logging::init(if verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
    if let Err(e) = dataplane::dpdk::log_to_logger() {
        log::warn!("DPDK's messages keep DPDK's own format and streams: {e}");
    }
    let r = match cli.cmd {
        Cmd::Run(a) => cmd_run(*a),
        Cmd::Replay(a) => cmd_replay(a),
        Cmd::Reflect(a) => cmd_reflect(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
