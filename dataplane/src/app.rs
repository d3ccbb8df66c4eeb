//! `sluiced` from start to stop: EAL, pools, ports, the tables snapshot, workers on their
//! lcores, the control loop on the main lcore (live figures, signals, run time), then an
//! orderly stop: workers finish their burst, ports stop, final counters are printed, ports
//! close and every pool must be back to zero mbufs in use.

use crate::ctlsock::CtlServer;
use crate::dpdk::{
    flags, DevInfo, Eal, Mempool, Port, PortSetup, PortStats, TxQueue, MAX_PORTS, MBUF_DATA_ROOM, MBUF_HEADROOM,
};
use crate::eal_args::{self, device_name};
use crate::flow::{FlowTable, Timeouts};
use crate::pipeline::{DropReason, Stage};
use crate::slowpath::SlowPath;
use crate::stats::{WorkerCounters, WorkerSnapshot};
use crate::tables::Tables;
use crate::worker::{self, Shared, WorkerPlan};
use control::Config;
use log::{debug, error, info, warn};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit statuses.
pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;
pub const EXIT_LEAK: i32 = 3;

/// A 40-byte RSS key of repeated 0x6d5a: Toeplitz hashing with it is symmetric, so both
/// directions of a flow land on the same queue (and worker).
const SYMMETRIC_RSS_KEY_WORD: [u8; 2] = [0x6d, 0x5a];

pub struct Options {
    pub config: PathBuf,
    /// Print a live line every this many seconds (0: never).
    pub stats_interval: f64,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Write the final counters as JSON here.
    pub stats_file: Option<PathBuf>,
    /// Before forwarding, wait up to this long for every port's link to come up.
    pub link_wait: Duration,
}

/// A port as running.
struct RunPort {
    name: String,
    device: String,
    port: Port,
    info: DevInfo,
    mac: [u8; 6],
    rx_queues: u16,
    tx_queues: u16,
    /// The highest driver counters read so far (see `RunPort::stats`).
    seen: std::sync::Mutex<PortStats>,
    /// A memif client (`role=client`), which the control loop keeps connected
    /// (`Reconnect`).
    memif_client: bool,
    /// How many times the port was started (a memif client's connections).
    connects: std::sync::atomic::AtomicU64,
}

/// Whether a port is a memif client: DPDK 22.11's driver connects to its server only when
/// the port starts, and never again once the server has gone.
fn is_memif_client(driver: &str, device: &str) -> bool {
    driver == "net_memif"
        && device
            .split(',')
            .any(|a| matches!(a.trim(), "role=client" | "role=slave"))
}

/// How often a memif client port with no server is started again: every second for
/// `RECONNECT_QUICK_TRIES` tries, then every `RECONNECT_SLOW` (each failed try makes the
/// driver log a line).
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
const RECONNECT_QUICK_TRIES: u64 = 30;
const RECONNECT_SLOW: Duration = Duration::from_secs(5);
/// How long a memif client's link may stay down while the port runs before the port is
/// restarted (a server that went away; a new one needs a new connection).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// A memif client port that the control loop keeps connected: started again every
/// `RECONNECT_EVERY` (later `RECONNECT_SLOW`) until its server answers, and stopped and
/// started again when its link has been down for `RECONNECT_AFTER`. While it is stopped it
/// is paused (`SlowPath::paused`): no thread calls its driver, and what the workers would
/// send there is dropped as `port_down` (little: its link is down, so routing withdraws
/// the routes through it first). Before a stop, the workers are waited for
/// (`quiesce::grace`) so none is inside a burst on it.
struct Reconnect {
    port: usize,
    down_since: Option<Instant>,
    last_try: Instant,
    failures: u64,
}

impl Reconnect {
    /// One for each memif client among `ports`.
    fn for_ports(ports: &[RunPort]) -> Vec<Reconnect> {
        let now = Instant::now();
        (0..ports.len())
            .filter(|&i| ports[i].memif_client)
            .map(|i| Reconnect {
                port: i,
                down_since: None,
                last_try: now,
                failures: 0,
            })
            .collect()
    }

    /// One look at the port: `paused` is set while it is stopped (its first start at
    /// start-up failed, or it is being connected again).
    fn turn(&mut self, p: &RunPort, up: bool, paused: &AtomicBool, now: Instant) {
        if !paused.load(Ordering::SeqCst) {
            if up {
                self.down_since = None;
                return;
            }
            if now.duration_since(*self.down_since.get_or_insert(now)) < RECONNECT_AFTER {
                return;
            }
            paused.store(true, Ordering::SeqCst);
            if let crate::quiesce::Grace::TimedOut(n) = crate::quiesce::grace(crate::quiesce::GRACE_LIMIT) {
                warn!(target: "port", "port \"{}\": {n} polling threads did not leave their bursts within {} ms; restarting it anyway", p.name, crate::quiesce::GRACE_LIMIT.as_millis());
            }
            if let Err(e) = p.port.stop() {
                warn!(target: "port", "port \"{}\": {e}", p.name);
            }
            self.down_since = None;
            self.failures = 0;
            info!(target: "port", "port \"{}\": its memif server has gone; connecting again", p.name);
        } else {
            let every = if self.failures < RECONNECT_QUICK_TRIES {
                RECONNECT_EVERY
            } else {
                RECONNECT_SLOW
            };
            if now.duration_since(self.last_try) < every {
                return;
            }
        }
        self.last_try = now;
        match p.port.start() {
            Ok(()) => {
                let n = p.connects.fetch_add(1, Ordering::Relaxed) + 1;
                paused.store(false, Ordering::SeqCst);
                info!(target: "port", "port \"{}\": connected to its memif server (connection {n})", p.name);
            }
            Err(e) => {
                self.failures += 1;
                if self.failures.is_power_of_two() {
                    debug!(target: "port", "port \"{}\": still no memif server ({e}; {} tries)", p.name, self.failures);
                }
            }
        }
    }
}

impl RunPort {
    /// The driver's counters, which never go back here: memif sums them over the rings
    /// of its current connection, so it reports 0 while its peer is away, and the
    /// figures return when a peer reconnects. Shown as they were, Prometheus would take
    /// each drop for a restart, and the final report after the last peer left would say
    /// nothing went through the port. (The control loop reads them every
    /// `PORT_READ_EVERY`, so what a peer's last moments add may be missing; the workers'
    /// own counters are exact.)
    fn stats(&self) -> PortStats {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        *seen = highest(*seen, self.port.stats());
        *seen
    }
}

/// Each counter of `a` and `b`, the higher.
fn highest(a: PortStats, b: PortStats) -> PortStats {
    PortStats {
        ipackets: a.ipackets.max(b.ipackets),
        opackets: a.opackets.max(b.opackets),
        ibytes: a.ibytes.max(b.ibytes),
        obytes: a.obytes.max(b.obytes),
        imissed: a.imissed.max(b.imissed),
        ierrors: a.ierrors.max(b.ierrors),
        oerrors: a.oerrors.max(b.oerrors),
        rx_nombuf: a.rx_nombuf.max(b.rx_nombuf),
    }
}

/// How often the control thread reads the ports' driver counters when nothing else does.
const PORT_READ_EVERY: Duration = Duration::from_millis(100);

/// mbufs of the control thread's own pool (ARP, ND, ICMP answers and probes).
const CONTROL_MBUFS: u32 = 1023;

fn fmt_mac(m: &[u8; 6]) -> String {
    control::MacAddr(*m).to_string()
}

/// Runs the appliance; returns the process exit status.
pub fn run(opts: Options) -> i32 {
    let cfg = match Config::load(&opts.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return EXIT_CONFIG;
        }
    };
    let sys = numa::System::default();
    // The machine as it is before EAL takes its hugepages, for the lcore plan.
    let topo = sys.topology();
    let mbufs = crate::placement::mbufs_total(&cfg, &topo);
    let plan = match eal_args::plan(&cfg, &sys, mbufs, log::max_level()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return EXIT_CONFIG;
        }
    };
    if cfg.ports.len() > MAX_PORTS {
        eprintln!(
            "sluiced: {} ports configured; this DPDK build supports at most {MAX_PORTS}",
            cfg.ports.len()
        );
        return EXIT_CONFIG;
    }
    if let Some(w) = &plan.warning {
        warn!(target: "eal", "{w}");
    }
    info!(target: "eal", "starting {} with: {}", Eal::version(), plan.args[1..].join(" "));

    // Signals are caught from here on: a stop during start-up still shuts down cleanly.
    let signalled = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &signalled),
        (signal_hook::consts::SIGTERM, &signalled),
        (signal_hook::consts::SIGHUP, &reload),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            error!(target: "sluiced", "cannot install the signal handler: {e}");
            return EXIT_RUNTIME;
        }
    }

    // The control socket first: a second instance on the same socket stops here, before
    // it takes any DPDK resource.
    let server = match CtlServer::bind(&cfg.socket()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluiced: control socket: {e}");
            return EXIT_RUNTIME;
        }
    };
    info!(target: "control", "control socket {} (sluicectl --socket {})", server.path().display(), server.path().display());
    // The metrics endpoint too: its address is refused before DPDK starts.
    let mut metrics = match crate::metrics::Metrics::start(&cfg.telemetry) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return EXIT_RUNTIME;
        }
    };

    let eal = match Eal::init(&plan.args) {
        Ok(e) => e,
        Err(e) => {
            let devices: Vec<String> = cfg
                .ports
                .iter()
                .map(|p| format!("{} = \"{}\"", p.name, p.device))
                .collect();
            error!(
                target: "eal",
                "{e}; EAL's own message above says why. Check each port's device ({}), that its driver is installed \
                 (Debian package dpdk), eal.extra_args, and that no other process uses file prefix \"{}\"",
                devices.join(", "),
                cfg.eal.file_prefix
            );
            return EXIT_RUNTIME;
        }
    };
    let mut eal = eal;
    if !plan.args.iter().any(|a| a == "--no-huge") {
        match eal.enable_capture() {
            Ok(()) => {
                info!(target: "eal", "packet capture: dpdk-dumpcap --file-prefix {} -i <port>", cfg.eal.file_prefix)
            }
            Err(e) => warn!(target: "eal", "packet capture is not available: {e}"),
        }
    } else {
        info!(target: "eal", "packet capture (dpdk-dumpcap) needs hugepages; not available with --no-huge");
    }
    let mut server = server;
    let status = run_with_eal(
        &eal,
        &cfg,
        &opts,
        &topo,
        (&signalled, &reload),
        &mut server,
        &mut metrics,
    );
    if let Err(e) = eal.cleanup() {
        warn!(target: "eal", "{e}");
    }
    status
}

/// Everything between EAL init and cleanup; DPDK objects are all released when it returns.
fn run_with_eal(
    eal: &Eal,
    cfg: &Config,
    opts: &Options,
    topo: &numa::Topology,
    (signalled, reload): (&AtomicBool, &AtomicBool),
    server: &mut CtlServer,
    metrics: &mut crate::metrics::Metrics,
) -> i32 {
    let workers = cfg.eal.workers.len();
    // ---- find ports and decide their queues
    let mut found: Vec<(Port, DevInfo)> = Vec::new();
    for p in &cfg.ports {
        let name = device_name(&p.device);
        let port = match eal.port_by_name(&name) {
            Ok(port) => port,
            Err(e) => {
                error!(target: "port", "port \"{}\": device {name} was not found after probing ({e}); check the device string and, for PCI, that the NIC is bound to vfio-pci (scripts/bind-nics.sh status)", p.name);
                return EXIT_RUNTIME;
            }
        };
        match port.info() {
            Ok(info) => found.push((port, info)),
            Err(e) => {
                error!(target: "port", "port \"{}\": {e}", p.name);
                return EXIT_RUNTIME;
            }
        }
    }

    // ---- the lcore plan: which worker polls which queue, each node's pool, what is wrong
    let shapes: Vec<crate::placement::PortShape> = found
        .iter()
        .zip(&cfg.ports)
        .map(|((port, info), pc)| {
            let (rx, tx) = queue_counts(pc, info, workers);
            (u32::try_from(port.socket()).ok(), rx, tx)
        })
        .collect();
    let plan = match crate::placement::plan(cfg, topo, &shapes) {
        Ok(plan) => {
            for line in crate::placement::to_text(cfg, &plan) {
                match line.strip_prefix("warning: ") {
                    Some(w) => warn!(target: "plan", "{w}"),
                    None => info!(target: "plan", "{line}"),
                }
            }
            Some(plan)
        }
        Err(e) => {
            error!(target: "plan", "{e}; RX queues go to the workers in turn");
            None
        }
    };

    // ---- one mbuf pool per NUMA node that has ports (virtual devices count as node 0),
    // each sized for what can hold its mbufs (numa::pool_mbufs)
    let pool_input = crate::placement::input(cfg, &shapes);
    let mut pools: Vec<Mempool> = Vec::new();
    let mut pool_of_socket: BTreeMap<i32, usize> = BTreeMap::new();
    for (port, _) in &found {
        let socket = port.socket().max(0);
        if pool_of_socket.contains_key(&socket) {
            continue;
        }
        let mbufs = numa::pool_mbufs(&pool_input, socket as u32);
        match Mempool::create(&format!("sluice_mbufs_s{socket}"), mbufs, cfg.eal.mbuf_cache, socket) {
            Ok(pool) => {
                info!(target: "mempool", "{}: {} mbufs of {MBUF_DATA_ROOM} bytes on socket {socket}", pool.name(), pool.capacity());
                pool_of_socket.insert(socket, pools.len());
                pools.push(pool);
            }
            Err(e) => {
                error!(target: "mempool", "{e}");
                return EXIT_RUNTIME;
            }
        }
    }
    // The control thread's frames come from a small pool of their own, so a burst of them
    // never takes the workers' buffers.
    let ctl_socket = pool_of_socket.keys().next().copied().unwrap_or(0);
    match Mempool::create("sluice_ctl", CONTROL_MBUFS, 32, ctl_socket) {
        Ok(pool) => pools.push(pool),
        Err(e) => {
            error!(target: "mempool", "control pool: {e}");
            return EXIT_RUNTIME;
        }
    }
    let ctl_pool = pools.len() - 1;
    // Nothing has taken an mbuf yet: this is the baseline the leak check compares against.
    let baseline: Vec<u32> = pools.iter().map(|p| p.in_use()).collect();

    let mut ports: Vec<RunPort> = Vec::new();
    let mut control_tx: Vec<Option<TxQueue>> = Vec::new();
    let mut worker_tx: Vec<Vec<TxQueue>> = (0..workers).map(|_| Vec::new()).collect();
    let mut port_rxqs: Vec<Vec<crate::dpdk::RxQueue>> = Vec::new();
    let mut status = EXIT_OK;
    for ((port, info), pc) in found.into_iter().zip(&cfg.ports) {
        match setup_port(pc, port, &info, workers, &pools[pool_of_socket[&port.socket().max(0)]]) {
            Ok((setup, rxqs, mut txqs)) => {
                let ctl = if txqs.len() > workers { txqs.pop() } else { None };
                control_tx.push(ctl);
                for (w, q) in txqs.into_iter().enumerate() {
                    worker_tx[w].push(q);
                }
                port_rxqs.push(rxqs);
                let mac = match pc.mac {
                    Some(m) => {
                        if let Err(e) = port.set_mac(m.0) {
                            // The configured address is still the source of every frame sent.
                            warn!(target: "port", "{}: {e}; frames leave with {m} as source MAC; frames sent to it arrive only in promiscuous mode", pc.name);
                        }
                        m.0
                    }
                    None => port.mac().unwrap_or_default(),
                };
                ports.push(RunPort {
                    name: pc.name.clone(),
                    device: pc.device.clone(),
                    port,
                    memif_client: is_memif_client(&info.driver, &pc.device),
                    info,
                    mac,
                    rx_queues: setup.rx_queues,
                    tx_queues: setup.tx_queues,
                    seen: Default::default(),
                    connects: Default::default(),
                });
            }
            Err(e) => {
                error!(target: "port", "port \"{}\" ({}): {e}", pc.name, pc.device);
                status = EXIT_RUNTIME;
                // Close what was set up so far; the device that failed is closed too.
                let _ = port.close();
                break;
            }
        }
    }
    if status != EXIT_OK {
        return finish(ports, pools, &baseline, status, None);
    }

    let rx_assign = assign_queues(workers, plan.as_ref(), port_rxqs);

    // ---- the tables, and the control thread's side of the rings
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac).collect();
    let (mut slow, rings) = match SlowPath::new(cfg.clone(), macs, workers, control_tx, eal.tsc_hz()) {
        Ok(s) => s,
        Err(e) => {
            error!(target: "routing", "{e}");
            return finish(ports, pools, &baseline, EXIT_CONFIG, None);
        }
    };
    slow.cfg_text = std::fs::read_to_string(&opts.config).unwrap_or_default();
    // A driver tearing a port's shared memory down waits while this thread is inside a
    // send (`crate::quiesce`); the workers register themselves.
    let _control_io = {
        let io = Arc::clone(&slow.io);
        crate::quiesce::register(move || io.progress())
    };
    if cfg.telemetry.otlp_flows {
        slow.export.otlp = metrics.otlp_sender();
    }
    if let Some(collector) = cfg.telemetry.ipfix {
        let c = telemetry::ipfix::IpfixConfig {
            collector,
            domain: cfg.telemetry.ipfix_domain,
            template_every: Duration::from_secs(cfg.telemetry.ipfix_template_s as u64),
            flush_every: Duration::from_secs(1),
        };
        match telemetry::ipfix::Ipfix::start(c) {
            Ok(x) => {
                info!(target: "telemetry", "IPFIX flow records to {collector} (observation domain {})", cfg.telemetry.ipfix_domain);
                slow.export.ipfix = Some(x);
            }
            Err(e) => {
                error!(target: "telemetry", "telemetry.ipfix: cannot send to {collector}: {e}");
                return finish(ports, pools, &baseline, EXIT_RUNTIME, None);
            }
        }
    }
    {
        let t = slow.published.load();
        info!(
            target: "routing",
            "{} routes, {} paths in {} groups, {} classes, {} rules compiled ({} MiB of tables)",
            cfg.routes.len(),
            cfg.paths.len(),
            cfg.groups.len(),
            cfg.classes.len(),
            cfg.rules.len(),
            t.memory_bytes() >> 20
        );
    }
    let packet_mode = cfg.flows.mode == control::config::FlowMode::Packet;
    let flow_capacity = if packet_mode {
        info!(target: "flows", "packet mode: no flow tables; every packet is classified and routed on its own");
        0
    } else {
        let per_worker = (cfg.flows.capacity as usize).div_ceil(workers);
        let (table, per_v6) = FlowTable::memory_bytes_for(per_worker);
        info!(
            target: "flows",
            "{} flows per worker ({} in all), {} MiB of flow tables reserved ({per_v6} bytes more for each IPv6 flow)",
            per_worker,
            per_worker * workers,
            (table * workers) >> 20
        );
        per_worker
    };

    // ---- start ports
    for (i, p) in ports.iter().enumerate() {
        if let Err(e) = p.port.start() {
            if !p.memif_client {
                error!(target: "port", "port \"{}\": {e}", p.name);
                return finish(ports, pools, &baseline, EXIT_RUNTIME, None);
            }
            // Its server is not there yet: the control loop tries again (`Reconnect`).
            warn!(target: "port", "port \"{}\": no memif server answers yet ({e}); trying again every {} s, after {RECONNECT_QUICK_TRIES} tries every {} s", p.name, RECONNECT_EVERY.as_secs(), RECONNECT_SLOW.as_secs());
            slow.paused[i].store(true, Ordering::SeqCst);
            continue;
        }
        p.connects.fetch_add(1, Ordering::Relaxed);
        let link = p.port.link();
        info!(
            target: "port",
            "{} ({}, driver {}): MAC {}, {} RX / {} TX queues{}, link {}{}",
            p.name,
            device_name(&p.device),
            p.info.driver,
            fmt_mac(&p.mac),
            p.rx_queues,
            p.tx_queues,
            if rx_writes_through_cache(&p.info.driver) {
                " (received headers not prefetched: the driver copies packets in on the polling core)"
            } else {
                ""
            },
            if link.up { "up" } else { "down" },
            if link.up && link.speed_mbps > 0 { format!(" at {} Mb/s", link.speed_mbps) } else { String::new() }
        );
    }

    // ---- links: forwarding into a port whose link is down only drops packets
    // memif clients are started again until their servers answer, from here on.
    let mut reconnects = Reconnect::for_ports(&ports);
    let wait_from = Instant::now();
    while !opts.link_wait.is_zero() && wait_from.elapsed() < opts.link_wait && !signalled.load(Ordering::Relaxed) {
        let links: Vec<bool> = ports.iter().map(|p| p.port.link().up).collect();
        if links.iter().all(|&up| up) {
            break;
        }
        let now = Instant::now();
        for r in reconnects.iter_mut() {
            r.turn(&ports[r.port], links[r.port], &slow.paused[r.port], now);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in ports.iter().filter(|p| !p.port.link().up) {
        warn!(target: "port", "{}: link still down after {:.1} s; forwarding anyway", p.name, opts.link_wait.as_secs_f64());
    }

    // ---- workers
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counters: Vec<Arc<WorkerCounters>> = (0..workers).map(|_| Arc::new(WorkerCounters::default())).collect();
    let mut launched: Vec<u32> = Vec::new();
    let tsc_hz = eal.tsc_hz();
    let shaping: Vec<Option<(u64, usize, usize)>> = cfg
        .ports
        .iter()
        .map(|p| {
            p.rate_bps.map(|r| {
                (
                    r / workers as u64,
                    p.queue_packets as usize,
                    p.ecn_threshold_packets as usize,
                )
            })
        })
        .collect();
    let prefetch: Vec<bool> = ports.iter().map(|p| !rx_writes_through_cache(&p.info.driver)).collect();
    for (w, ((tx, rx), rings)) in worker_tx.into_iter().zip(rx_assign).zip(rings).enumerate() {
        let lcore = cfg.eal.workers[w];
        let polled: Vec<String> = rx
            .iter()
            .map(|(p, q)| format!("{}/{}", ports[*p].name, q.queue()))
            .collect();
        info!(target: "worker", "worker {w} on lcore {lcore} polls [{}]", polled.join(", "));
        let plan = WorkerPlan {
            lcore,
            index: w,
            rx,
            prefetch: prefetch.clone(),
            tx,
            rings,
            flow_capacity,
            packet_mode,
            timeouts: Timeouts::from_config(&cfg.flows),
            shaping: shaping.clone(),
            tsc_hz,
            epoch_tsc: slow.epoch_tsc(),
        };
        let shared = Shared {
            tables: Arc::clone(&slow.published),
            shares: Arc::clone(&slow.shares),
            stop: Arc::clone(&stop),
            done: Arc::clone(&done),
            paused: Arc::clone(&slow.paused),
        };
        let c = Arc::clone(&counters[w]);
        if let Err(e) = eal.launch(lcore, move || worker::run(plan, shared, c)) {
            error!(target: "worker", "{e}");
            status = EXIT_RUNTIME;
            break;
        }
        launched.push(lcore);
    }

    // ---- the control loop
    let started = Instant::now();
    if status == EXIT_OK {
        info!(target: "sluiced", "forwarding; stop with Ctrl-C or SIGTERM");
        let live = LiveCtx {
            ports: &ports,
            counters: &counters,
            opts,
            tsc_hz,
            started,
            pools: &pools,
            flow_capacity: (flow_capacity * workers) as u64,
        };
        // Nothing but workers on worker cores: EAL's own threads (interrupts, multi-process,
        // telemetry) join the control thread on its core.
        match numa::pin_side_threads(cfg.eal.control_core, &cfg.eal.workers) {
            Ok(n) => info!(target: "plan", "{n} side threads pinned to the control core {}", cfg.eal.control_core),
            Err(e) => warn!(target: "plan", "side threads could not be pinned to the control core: {e}"),
        }
        control_loop(
            &live,
            (signalled, reload),
            &mut slow,
            &pools[ctl_pool],
            (server, metrics),
            &mut reconnects,
        );
    }

    // ---- stop
    stop.store(true, Ordering::Relaxed);
    // Drain the rings while the workers report their live flows, until all are done.
    let stopping = Instant::now();
    // The flows live now become records; the exporters get a bounded wait for room.
    slow.export_wait_until = Some(stopping + Duration::from_secs(10));
    while done.load(Ordering::Acquire) < launched.len() && stopping.elapsed() < Duration::from_secs(10) {
        slow.drain();
        std::thread::sleep(Duration::from_millis(1));
    }
    for lcore in &launched {
        let _ = eal.wait(*lcore);
    }
    // What the workers handed over last (exception packets, their flows at shutdown).
    slow.drain();
    if let Some(mut x) = slow.export.ipfix.take() {
        x.stop(Duration::from_secs(10));
        let st = &x.stats;
        info!(
            target: "telemetry",
            "IPFIX: {} flow records in {} messages to {}, {} dropped",
            st.records.load(Ordering::Relaxed),
            st.messages.load(Ordering::Relaxed),
            x.collector(),
            st.dropped.load(Ordering::Relaxed)
        );
    }
    // Flow records and spans still queued for OTLP go now.
    metrics.stop_export();
    let held = slow.drop_held();
    if held > 0 {
        info!(target: "neighbors", "{held} packets still waiting for next hops dropped at shutdown");
    }
    let ran = started.elapsed();
    for p in &ports {
        if let Err(e) = p.port.stop() {
            warn!(target: "port", "port \"{}\": {e}", p.name);
        }
    }
    let snaps: Vec<WorkerSnapshot> = counters.iter().map(|c| c.snapshot(ports.len())).collect();
    let port_stats: Vec<PortStats> = ports.iter().map(|p| p.stats()).collect();
    let report = Report {
        ports: &ports,
        port_stats: &port_stats,
        workers: &snaps,
        lcores: &cfg.eal.workers,
        ran,
        slow: &slow,
        tsc_hz,
    };
    let (text, json) = (report_text(&report), report_json(&report));
    finish(
        ports,
        pools,
        &baseline,
        status,
        Some((text, json, opts.stats_file.clone())),
    )
}

type PortQueues = (PortSetup, Vec<crate::dpdk::RxQueue>, Vec<TxQueue>);

/// Whether a driver's receive copies each packet into its mbuf on the polling core
/// itself, inside rx_burst, so that the headers are in this core's cache when the burst
/// is handed over and prefetching them only costs instructions. So do the drivers that
/// read packets from a file or a kernel socket: pcap, af_packet, tap. A hardware NIC
/// writes packets by DMA (to memory or to the shared cache), net_ring hands over mbufs
/// that another core wrote, memif may run zero-copy, and net_null writes nothing: their
/// headers are prefetched.
fn rx_writes_through_cache(driver: &str) -> bool {
    matches!(driver, "net_pcap" | "net_af_packet" | "net_tap")
}

/// (RX, TX) queues of a port, as `setup_port` sets it up: a TX queue per worker and the
/// control's when the driver has that many; the RX queues asked for, within what the
/// driver offers, except where the driver needs otherwise.
fn queue_counts(pc: &control::config::Port, info: &DevInfo, workers: usize) -> (u16, u16) {
    let w = workers as u16;
    let tx = if info.max_tx_queues > w { w + 1 } else { w };
    let rx = match info.driver.as_str() {
        // memif connects only when each side's TX rings match the other's RX rings, and
        // both ends run this same logic: as many RX queues as TX queues (the extra ones
        // are polled like any other).
        "net_memif" => tx,
        // net_af_packet fans the interface's frames out over all its queue pairs'
        // sockets: every one of them must be polled, whatever the worker count.
        "net_af_packet" => info.max_rx_queues.max(1),
        _ => pc.rx_queues.unwrap_or(w).min(info.max_rx_queues.max(1)),
    };
    (rx, tx)
}

fn setup_port(
    pc: &control::config::Port,
    port: Port,
    info: &DevInfo,
    workers: usize,
    pool: &Mempool,
) -> Result<PortQueues, String> {
    let (rx_queues, tx_queues) = queue_counts(pc, info, workers);
    let want_rx = pc.rx_queues.unwrap_or(workers as u16);
    if want_rx > info.max_rx_queues.max(1) {
        info!(target: "port", "{}: driver {} offers {} RX queue(s); using {rx_queues}", pc.name, info.driver, info.max_rx_queues);
    }
    let w = workers as u16;
    if info.max_tx_queues < w {
        return Err(format!(
            "driver {} offers {} TX queue(s) but each of the {w} workers needs its own; use fewer workers or give the device more queues (net_pcap: repeat tx_pcap=, net_memif/net_af_packet: more queue pairs)",
            info.driver, info.max_tx_queues
        ));
    }
    if tx_queues == w {
        warn!(target: "port", "{}: driver {} offers {} TX queue(s), one per worker and none for the control thread: nothing is answered or probed on this port (give the device more queues, e.g. qpairs= for net_af_packet)", pc.name, info.driver, info.max_tx_queues);
    }
    if pc.mtu > info.max_mtu {
        return Err(format!(
            "MTU {} is above what driver {} allows ({})",
            pc.mtu, info.driver, info.max_mtu
        ));
    }
    let mut rx_offloads = info.rx_offload_capa & flags::RX_OFFLOAD_IPV4_CKSUM;
    let mut tx_offloads = info.tx_offload_capa & flags::TX_OFFLOAD_MULTI_SEGS;
    // The largest frame: MTU plus Ethernet header, two VLAN tags and FCS.
    let max_frame = pc.mtu as u32 + 14 + 8 + 4;
    if max_frame > (MBUF_DATA_ROOM - MBUF_HEADROOM) as u32 {
        if info.rx_offload_capa & flags::RX_OFFLOAD_SCATTER != 0 {
            rx_offloads |= flags::RX_OFFLOAD_SCATTER;
        } else {
            info!(target: "port", "{}: frames up to {max_frame} bytes span several mbufs; driver {} chains them without the scatter offload", pc.name, info.driver);
        }
    } else {
        tx_offloads |= info.tx_offload_capa & flags::TX_OFFLOAD_MBUF_FAST_FREE;
    }
    let (rss_hf, rss_key) = if rx_queues > 1 && info.rss_offloads & flags::RSS_5TUPLE != 0 {
        let len = if info.hash_key_size == 0 {
            40
        } else {
            info.hash_key_size as usize
        };
        (
            info.rss_offloads & flags::RSS_5TUPLE,
            SYMMETRIC_RSS_KEY_WORD.iter().copied().cycle().take(len).collect(),
        )
    } else {
        if rx_queues > 1 {
            info!(target: "port", "{}: driver {} has no RSS; each RX queue is its own source", pc.name, info.driver);
        }
        (0, Vec::new())
    };
    let setup = PortSetup {
        rx_queues,
        tx_queues,
        rx_descriptors: pc.rx_descriptors,
        tx_descriptors: pc.tx_descriptors,
        mtu: pc.mtu,
        rx_offloads,
        tx_offloads,
        rss_hf,
        rss_key,
        promiscuous: pc.promiscuous,
    };
    let (rx, tx) = port.setup(&setup, pool).map_err(|e| e.to_string())?;
    Ok((setup, rx, tx))
}

/// Per-port totals over all workers: (rx packets, rx bytes, tx packets, tx bytes).
fn port_totals(counters: &[Arc<WorkerCounters>], ports: usize) -> Vec<[u64; 4]> {
    let snaps: Vec<WorkerSnapshot> = counters.iter().map(|c| c.snapshot(ports)).collect();
    (0..ports)
        .map(|p| {
            snaps.iter().fold([0u64; 4], |a, s| {
                [
                    a[0] + s.rx_packets[p],
                    a[1] + s.rx_bytes[p],
                    a[2] + s.tx_packets[p],
                    a[3] + s.tx_bytes[p],
                ]
            })
        })
        .collect()
}

fn control_loop(
    live: &LiveCtx,
    (signalled, reload): (&AtomicBool, &AtomicBool),
    slow: &mut SlowPath,
    ctl_pool: &Mempool,
    (server, metrics): (&mut CtlServer, &mut crate::metrics::Metrics),
    reconnects: &mut [Reconnect],
) {
    let LiveCtx {
        ports,
        counters,
        opts,
        started,
        ..
    } = *live;
    // `clear counters`: what the shows subtract from now on.
    let mut baseline: Option<serde_json::Value> = None;
    // Short enough that rings never fill at line rate, a link loss moves flows at once,
    // and probe timeouts are seen within a millisecond.
    let tick = Duration::from_millis(1);
    // Neighbours learn the appliance's addresses, and next hops are asked for, at once.
    slow.plane.announce();
    slow.control(ctl_pool);
    let interval = (opts.stats_interval > 0.0).then(|| Duration::from_secs_f64(opts.stats_interval));
    let mut last = (Instant::now(), port_totals(counters, ports.len()));
    let mut next_print = interval.map(|i| started + i);
    let mut graces = crate::quiesce::stats();
    let mut last_port_read = Instant::now();
    loop {
        if signalled.load(Ordering::Relaxed) {
            info!(target: "sluiced", "signal received: stopping");
            break;
        }
        if let Some(d) = opts.duration {
            if started.elapsed() >= d {
                info!(target: "sluiced", "run time of {:.1} s reached: stopping", d.as_secs_f64());
                break;
            }
        }
        slow.drain();
        let g = crate::quiesce::stats();
        if g != graces {
            if g.timed_out > graces.timed_out {
                warn!(target: "port", "a driver unmapped a port's shared memory after waiting {} ms for a polling thread that had not left its burst", crate::quiesce::GRACE_LIMIT.as_millis());
            } else {
                debug!(target: "port", "a driver's teardown waited for the workers first ({} so far, longest {} us)", g.graces, g.longest_ns / 1000);
            }
            graces = g;
        }
        let links: Vec<bool> = ports.iter().map(|p| p.port.link().up).collect();
        slow.links(&links);
        let now = Instant::now();
        for r in reconnects.iter_mut() {
            r.turn(&ports[r.port], links[r.port], &slow.paused[r.port], now);
        }
        if last_port_read.elapsed() >= PORT_READ_EVERY {
            // Kept fresh for drivers that lose them when a peer leaves (`RunPort::stats`).
            for p in ports {
                p.stats();
            }
            last_port_read = Instant::now();
        }
        slow.control(ctl_pool);
        slow.rebalance(counters);
        server.poll(&mut |w: &[String]| command(w, live, slow, &mut baseline));
        if reload.swap(false, Ordering::Relaxed) {
            info!(target: "reload", "SIGHUP: reloading {}", opts.config.display());
            let _ = slow.reload(&opts.config);
        }
        if metrics.due(Instant::now()) {
            metrics.publish(&telemetry_view(live), slow);
        }
        if let (Some(i), Some(at)) = (interval, next_print) {
            if Instant::now() >= at {
                let now = (Instant::now(), port_totals(counters, ports.len()));
                print_live(ports, &last, &now, started);
                last = now;
                next_print = Some(at + i);
            }
        }
        std::thread::sleep(tick);
    }
}

/// What control-socket commands and telemetry read besides the slow path.
struct LiveCtx<'a> {
    ports: &'a [RunPort],
    counters: &'a [Arc<WorkerCounters>],
    opts: &'a Options,
    tsc_hz: u64,
    started: Instant,
    pools: &'a [Mempool],
    /// Flows all the tables hold.
    flow_capacity: u64,
}

/// What one telemetry period reads: the ports' driver counters, the workers' blocks, the
/// pools.
fn telemetry_view<'a>(c: &LiveCtx<'a>) -> crate::metrics::View<'a> {
    crate::metrics::View {
        ports: c
            .ports
            .iter()
            .map(|p| {
                let link = p.port.link();
                crate::metrics::PortView {
                    name: &p.name,
                    device: &p.device,
                    driver: &p.info.driver,
                    mac: fmt_mac(&p.mac),
                    node: u32::try_from(p.port.socket()).ok(),
                    rx_queues: p.rx_queues,
                    tx_queues: p.tx_queues,
                    stats: p.stats(),
                    xstats: p.port.xstats(),
                    link_up: link.up,
                    speed_mbps: link.speed_mbps,
                }
            })
            .collect(),
        workers: c.counters.iter().map(|w| w.snapshot(c.ports.len())).collect(),
        pools: c
            .pools
            .iter()
            .map(|p| (p.name().to_string(), p.in_use(), p.capacity()))
            .collect(),
        flow_capacity: c.flow_capacity,
        tsc_hz: c.tsc_hz,
    }
}

/// The final report's figures, now.
fn live_report(c: &LiveCtx, slow: &SlowPath) -> serde_json::Value {
    let snaps: Vec<WorkerSnapshot> = c.counters.iter().map(|w| w.snapshot(c.ports.len())).collect();
    let port_stats: Vec<PortStats> = c.ports.iter().map(|p| p.stats()).collect();
    let r = Report {
        ports: c.ports,
        port_stats: &port_stats,
        workers: &snaps,
        lcores: &slow.cfg.eal.workers,
        ran: c.started.elapsed(),
        slow,
        tsc_hz: c.tsc_hz,
    };
    let mut j = report_json(&r);
    for (i, p) in c.ports.iter().enumerate() {
        let l = p.port.link();
        j["ports"][i]["link"] = serde_json::json!(if l.up { "up" } else { "down" });
        j["ports"][i]["speed_mbps"] = serde_json::json!(l.speed_mbps);
    }
    j
}

/// A word matched against `choices`: exactly, or as the unique prefix of one.
fn pick<'a>(word: &str, choices: &[&'a str], what: &str) -> Result<&'a str, String> {
    if let Some(c) = choices.iter().find(|c| **c == word) {
        return Ok(c);
    }
    let m: Vec<&&str> = choices.iter().filter(|c| c.starts_with(word)).collect();
    match m.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("unknown {what} \"{word}\" (one of: {})", choices.join(", "))),
        many => Err(format!(
            "\"{word}\" is ambiguous: {}",
            many.iter().map(|s| **s).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// One control-socket command.
fn command(
    words: &[String],
    c: &LiveCtx,
    slow: &mut SlowPath,
    baseline: &mut Option<serde_json::Value>,
) -> Result<serde_json::Value, String> {
    use serde_json::json;
    const TOP: &[&str] = &["show", "clear", "class", "route", "path", "reload", "config"];
    let verb = pick(&words[0], TOP, "command")?;
    let rest = &words[1..];
    let counters = |slow: &SlowPath, baseline: &Option<serde_json::Value>| {
        let now = live_report(c, slow);
        match baseline {
            Some(b) => control::ctl::since(&now, b),
            None => now,
        }
    };
    match verb {
        "show" => {
            let what = pick(
                rest.first().ok_or("show what? (show ports, show paths, …)")?,
                control::ctl::SHOW,
                "thing to show",
            )?;
            let args = &rest[1..];
            if !args.is_empty() && !matches!(what, "routes" | "flows") {
                return Err(format!("show {what} takes no arguments"));
            }
            Ok(match what {
                "version" => json!({
                    "sluiced": env!("CARGO_PKG_VERSION"), "dpdk": Eal::version(),
                    "protocol": control::ctl::PROTOCOL_VERSION, "uptime_s": c.started.elapsed().as_secs_f64(),
                    "config": c.opts.config.display().to_string(), "generation": slow.generation(),
                }),
                "ports" => counters(slow, baseline)["ports"].clone(),
                "workers" => counters(slow, baseline)["workers"].clone(),
                "runtime" => {
                    let r = counters(slow, baseline);
                    let mut workers = r["workers"].clone();
                    for (w, k) in c.counters.iter().enumerate() {
                        let base: Vec<u64> = baseline
                            .as_ref()
                            .and_then(|b| serde_json::from_value(b["latency_slots"][w].clone()).ok())
                            .unwrap_or_default();
                        let seen = crate::latency::minus(&k.latency_slots(), &base);
                        workers[w]["latency"] = crate::latency::summary_json(&seen, c.tsc_hz);
                    }
                    json!({"workers": workers, "stages": r["stages"], "tsc_hz": c.tsc_hz})
                }
                "errors" => {
                    let r = counters(slow, baseline);
                    json!({"drops": r["drops"], "drops_by_stage": r["drops_by_stage"],
                           "control_plane": slow.control_json(0)})
                }
                "classes" => {
                    let r = counters(slow, baseline);
                    let list: Vec<_> = slow
                        .cfg
                        .classes
                        .iter()
                        .map(|k| {
                            let mut v = r["classes"][k.name.as_str()].clone();
                            v["name"] = json!(k.name);
                            v["priority"] = json!(k.priority.name());
                            v["meter"] = json!(format!("{:?}", k.meter));
                            v
                        })
                        .collect();
                    json!(list)
                }
                "queues" => counters(slow, baseline)["queues"].clone(),
                "paths" => slow.paths_json(),
                "probes" => {
                    let p = &slow.cfg.probes;
                    json!({
                        "interval_ms": p.interval_ns / 1_000_000, "jitter_pct": p.jitter_pct,
                        "timeout_ms": p.timeout_ns.map(|t| t / 1_000_000), "down_after": p.health.down_after,
                        "up_after": p.health.up_after, "hold_down_ms": p.health.hold_down_ns / 1_000_000,
                        "window": p.health.window, "stamp_port": p.stamp_port,
                        "paths": slow.paths_json()["paths"],
                    })
                }
                "neighbors" => slow.neighbors_json(),
                "config" => json!({"file": c.opts.config.display().to_string(), "text": slow.cfg_text}),
                "routes" => routes_json(slow, args.first().map(String::as_str))?,
                "flows" => {
                    if slow.cfg.flows.mode == control::config::FlowMode::Packet {
                        return Err("no flows are kept: flows.mode is \"packet\"".into());
                    }
                    let top = match args {
                        [] => 20,
                        [flag, n] if flag.as_str() == "--top" => n
                            .parse::<usize>()
                            .ok()
                            .filter(|n| (1..=1000).contains(n))
                            .ok_or("--top takes 1 to 1000")?,
                        _ => return Err("show flows [--top N]".into()),
                    };
                    let t = slow.published.load();
                    let mut live: Vec<&crate::flow::Flow> = slow.live_top.iter().flat_map(|w| w.as_slice()).collect();
                    live.sort_by_key(|f| std::cmp::Reverse(f.state.bytes));
                    let live: Vec<_> = live.iter().take(top).map(|f| flow_json(slow, &t, f, "live")).collect();
                    let mut ended: Vec<&crate::flow::FlowRecord> = slow.recent.iter().collect();
                    ended.sort_by_key(|r| std::cmp::Reverse(r.flow.state.bytes));
                    let ended: Vec<_> = ended
                        .iter()
                        .take(top)
                        .map(|r| flow_json(slow, &t, &r.flow, r.reason.name()))
                        .collect();
                    json!({"live_flows": slow.live_top.iter().map(|w| w.live).sum::<usize>(), "live": live,
                           "ended_flows_kept": slow.recent.len(), "ended": ended})
                }
                _ => unreachable!("every SHOW entry is handled"),
            })
        }
        "clear" => {
            pick(rest.first().ok_or("clear counters")?, &["counters"], "thing to clear")?;
            let mut b = live_report(c, slow);
            b["latency_slots"] = json!(c.counters.iter().map(|k| k.latency_slots()).collect::<Vec<_>>());
            *baseline = Some(b);
            Ok(json!({"cleared": true}))
        }
        "class" | "route" | "path" => {
            let mut w: Vec<String> = words.to_vec();
            w[0] = verb.to_string();
            let sub: &[&str] = match verb {
                "class" => &["set"],
                "route" => &["add", "del"],
                _ => &["drain", "restore"],
            };
            if let Some(s) = w.get(1) {
                w[1] = pick(s, sub, "action")?.to_string();
            }
            if verb == "class" {
                if let Some(s) = w.get(3) {
                    w[3] = pick(s, &["rate", "burst", "min"], "setting")?.to_string();
                }
            }
            let text = control::ctl::edit(&slow.cfg_text, &w)?;
            let r = slow.apply_text(text, "the running configuration with this change");
            slow.note_result("config.change", ("sluice.change", w.join(" ")), &r);
            Ok(json!({"applied": w.join(" "), "generation": r?}))
        }
        "reload" => {
            let file = rest.first().map(PathBuf::from).unwrap_or_else(|| c.opts.config.clone());
            let g = slow.reload(&file)?;
            Ok(json!({"reloaded": file.display().to_string(), "generation": g}))
        }
        "config" => {
            pick(rest.first().ok_or("config save [FILE]")?, &["save"], "config action")?;
            let file = rest.get(1).map(PathBuf::from).unwrap_or_else(|| c.opts.config.clone());
            // Written beside, then renamed: a crash never leaves half a file.
            let tmp = file.with_extension("toml.sluice-tmp");
            std::fs::write(&tmp, &slow.cfg_text)
                .and_then(|_| std::fs::rename(&tmp, &file))
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            Ok(json!({"saved": file.display().to_string(), "bytes": slow.cfg_text.len()}))
        }
        _ => unreachable!("every TOP entry is handled"),
    }
}

fn path_name(slow: &SlowPath, p: u16) -> String {
    slow.cfg
        .paths
        .get(p as usize)
        .map_or_else(|| "none".to_string(), |x| x.name.clone())
}

/// A flow, live or ended (`end` says which and why), with its path in `t`'s numbering.
fn flow_json(slow: &SlowPath, t: &Tables, f: &crate::flow::Flow, end: &str) -> serde_json::Value {
    let k = &f.key;
    let (src, dst) = k.addrs();
    serde_json::json!({
        "src": src.to_string(), "dst": dst.to_string(), "src_port": k.src_port, "dst_port": k.dst_port,
        "proto": k.proto, "in_port": slow.cfg.ports.get(k.in_port as usize).map(|p| p.name.clone()),
        "class": slow.cfg.classes.get(f.state.class as usize).map(|c| c.name.clone()),
        "path": path_name(slow, t.carry_path(f.state.generation, f.state.path)), "packets": f.state.packets, "bytes": f.state.bytes, "end": end,
    })
}

/// The routes, or the one `addr` takes, with each group's current choice.
fn routes_json(slow: &SlowPath, addr: Option<&str>) -> Result<serde_json::Value, String> {
    use control::config::Prefix;
    let t = slow.published.load();
    let group = |g: usize| {
        let sel = &t.groups[g];
        serde_json::json!({
            "group": slow.cfg.groups[g].name, "policy": slow.cfg.groups[g].policy.name(),
            "chosen": sel.members.iter().map(|&(p, w)| serde_json::json!({"path": path_name(slow, p), "weight": w})).collect::<Vec<_>>(),
            "kept": sel.keep.iter().map(|&p| path_name(slow, p)).collect::<Vec<_>>(),
        })
    };
    let Some(a) = addr else {
        let list: Vec<_> = slow
            .cfg
            .routes
            .iter()
            .map(|r| {
                let mut v = group(r.group);
                v["prefix"] = serde_json::json!(r.prefix.to_string());
                v
            })
            .collect();
        return Ok(serde_json::json!(list));
    };
    let ip: std::net::IpAddr = a.parse().map_err(|_| format!("\"{a}\" is not an IP address"))?;
    let best = slow
        .cfg
        .routes
        .iter()
        .filter(|r| match (r.prefix, ip) {
            (Prefix::V4(p), std::net::IpAddr::V4(x)) => p.contains(x),
            (Prefix::V6(p), std::net::IpAddr::V6(x)) => p.contains(x),
            _ => false,
        })
        .max_by_key(|r| match r.prefix {
            Prefix::V4(p) => p.len,
            Prefix::V6(p) => p.len,
        });
    Ok(match best {
        Some(r) => {
            let mut v = group(r.group);
            v["address"] = serde_json::json!(a);
            v["prefix"] = serde_json::json!(r.prefix.to_string());
            v
        }
        None => serde_json::json!({"address": a, "prefix": null, "result": "no route (dropped as no_route)"}),
    })
}

fn rate(d: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        d as f64 / secs
    } else {
        0.0
    }
}

/// One line of per-port rates from the workers' counters: what they received, and what the
/// drivers accepted for sending. Gbps count Ethernet frames without FCS.
fn print_live(ports: &[RunPort], a: &(Instant, Vec<[u64; 4]>), b: &(Instant, Vec<[u64; 4]>), started: Instant) {
    let secs = b.0.duration_since(a.0).as_secs_f64();
    let mut line = format!("[{:7.1}s]", b.0.duration_since(started).as_secs_f64());
    for (i, p) in ports.iter().enumerate() {
        let (x, y) = (&a.1[i], &b.1[i]);
        line.push_str(&format!(
            " {}: rx {:7.3} Mpps {:6.2} Gbps, tx {:7.3} Mpps {:6.2} Gbps;",
            p.name,
            rate(y[0] - x[0], secs) / 1e6,
            rate(y[1] - x[1], secs) * 8.0 / 1e9,
            rate(y[2] - x[2], secs) / 1e6,
            rate(y[3] - x[3], secs) * 8.0 / 1e9,
        ));
    }
    line.pop();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Report<'a> {
    ports: &'a [RunPort],
    port_stats: &'a [PortStats],
    workers: &'a [WorkerSnapshot],
    lcores: &'a [u32],
    ran: Duration,
    slow: &'a SlowPath,
    tsc_hz: u64,
}

fn sum_at(r: &Report, f: impl Fn(&WorkerSnapshot) -> &Vec<u64>, i: usize) -> u64 {
    r.workers.iter().map(|w| f(w).get(i).copied().unwrap_or(0)).sum()
}

/// Drops by reason: the workers' by `DropReason`, then what the drivers dropped on
/// receive before any worker saw it, over all ports (the receive stage's drops).
fn drops_by_reason(ports: &[PortStats], workers: &[WorkerSnapshot]) -> Vec<(&'static str, Stage, u64)> {
    let port_sum = |f: fn(&PortStats) -> u64| ports.iter().map(f).sum::<u64>();
    DropReason::ALL
        .iter()
        .map(|&d| (d.name(), d.stage(), workers.iter().map(|w| w.drop_count(d)).sum()))
        .chain([
            ("rx_missed", Stage::Rx, port_sum(|s| s.imissed)),
            ("rx_nombuf", Stage::Rx, port_sum(|s| s.rx_nombuf)),
            ("rx_errors", Stage::Rx, port_sum(|s| s.ierrors)),
        ])
        .collect()
}

/// Drops by stage, every stage listed.
fn drops_by_stage(ports: &[PortStats], workers: &[WorkerSnapshot]) -> BTreeMap<&'static str, u64> {
    let mut by: BTreeMap<&str, u64> = Stage::ALL.iter().map(|s| (s.name(), 0)).collect();
    for (_, st, n) in drops_by_reason(ports, workers) {
        *by.entry(st.name()).or_default() += n;
    }
    by
}

fn report_text(r: &Report) -> String {
    let mut s = String::new();
    let secs = r.ran.as_secs_f64();
    s.push_str(&format!("== sluiced: final counters after {secs:.1} s ==\n"));
    s.push_str(&format!(
        "{:<12} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>10} {:>10} {:>10}\n",
        "port",
        "driver",
        "rx_packets",
        "rx_bytes",
        "tx_packets",
        "tx_bytes",
        "rx_missed",
        "rx_errors",
        "tx_errors",
        "rx_nombuf"
    ));
    for (p, st) in r.ports.iter().zip(r.port_stats) {
        s.push_str(&format!(
            "{:<12} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>10} {:>10} {:>10}\n",
            p.name,
            p.info.driver,
            st.ipackets,
            st.ibytes,
            st.opackets,
            st.obytes,
            st.imissed,
            st.ierrors,
            st.oerrors,
            st.rx_nombuf
        ));
    }
    s.push_str(&format!(
        "{:<8} {:>6} {:>14} {:>14} {:>12} {:>10}\n",
        "worker", "lcore", "rx_packets", "tx_packets", "dropped", "busy"
    ));
    for (i, w) in r.workers.iter().enumerate() {
        let busy = if w.polls > 0 {
            100.0 * w.busy_polls as f64 / w.polls as f64
        } else {
            0.0
        };
        s.push_str(&format!(
            "{:<8} {:>6} {:>14} {:>14} {:>12} {:>9.1}%\n",
            i,
            r.lcores[i],
            w.rx_packets.iter().sum::<u64>(),
            w.tx_packets.iter().sum::<u64>(),
            w.total_drops(),
            busy
        ));
    }
    let drops: Vec<String> = drops_by_reason(r.port_stats, r.workers)
        .into_iter()
        .filter(|&(_, _, n)| n > 0)
        .map(|(d, _, n)| format!("{d} {n}"))
        .collect();
    s.push_str(&format!(
        "{:<16} {:>14} {:>10} {:>12} {:>10}\n",
        "stage", "packets", "bursts", "cycles/pkt", "ns/pkt"
    ));
    for st in Stage::ALL {
        let i = st as usize;
        let (pk, bu, cy) = (
            sum_at(r, |w| &w.stage_packets, i),
            sum_at(r, |w| &w.stage_bursts, i),
            sum_at(r, |w| &w.stage_cycles, i),
        );
        let per = if pk > 0 { cy as f64 / pk as f64 } else { 0.0 };
        s.push_str(&format!(
            "{:<16} {:>14} {:>10} {:>12.1} {:>10.1}\n",
            st.name(),
            pk,
            bu,
            per,
            per * 1e9 / r.tsc_hz as f64
        ));
    }
    s.push_str(&format!(
        "{:<16} {:>4} {:>14} {:>14} {:>14} {:>16}\n",
        "class", "prio", "conform", "exceed", "violate", "bytes"
    ));
    for (k, c) in r.slow.cfg.classes.iter().enumerate() {
        let p: Vec<u64> = (0..3).map(|col| sum_at(r, |w| &w.class_packets, k * 3 + col)).collect();
        let b: u64 = (0..3).map(|col| sum_at(r, |w| &w.class_bytes, k * 3 + col)).sum();
        s.push_str(&format!(
            "{:<16} {:>4} {:>14} {:>14} {:>14} {:>16}\n",
            c.name,
            c.priority.name(),
            p[0],
            p[1],
            p[2],
            b
        ));
    }
    let flows = |f: fn(&WorkerSnapshot) -> u64| r.workers.iter().map(f).sum::<u64>();
    let records: Vec<String> = r.slow.record_counts().iter().map(|(n, c)| format!("{n} {c}")).collect();
    s.push_str(&format!(
        "flows: created {}, expired {}, evicted {}; records {} ({} lost); to control plane {} packets, handled {}; reloads ok {}, refused {}; snapshot generation {}\n",
        flows(|w| w.flows_created),
        flows(|w| w.flows_expired),
        flows(|w| w.flows_evicted),
        records.join(", "),
        flows(|w| w.records_lost),
        flows(|w| w.to_control),
        r.slow.exceptions_handled,
        r.slow.reloads_ok,
        r.slow.reloads_refused,
        r.slow.generation()
    ));
    s.push_str(&r.slow.paths_text());
    let stage_drops = drops_by_stage(r.port_stats, r.workers);
    let by_stage: Vec<String> = Stage::ALL
        .iter()
        .map(|st| format!("{} {}", st.name(), stage_drops[st.name()]))
        .collect();
    s.push_str(&format!("drops by stage: {}\n", by_stage.join(", ")));
    s.push_str(&format!(
        "drops by reason: {}\n",
        if drops.is_empty() {
            "none".to_string()
        } else {
            drops.join(", ")
        }
    ));
    for p in r.ports.iter().filter(|p| p.memif_client) {
        s.push_str(&format!(
            "memif client {}: connected {} times\n",
            p.name,
            p.connects.load(Ordering::Relaxed)
        ));
    }
    let g = crate::quiesce::stats();
    if g.graces > 0 {
        s.push_str(&format!(
            "driver teardowns: {} waited for the pollers before unmapping (longest {:.0} us, {} reached the limit)\n",
            g.graces,
            g.longest_ns as f64 / 1e3,
            g.timed_out
        ));
    }
    s
}

fn report_json(r: &Report) -> serde_json::Value {
    use serde_json::json;
    let ports: Vec<_> = r
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let st = &r.port_stats[i];
            json!({
                "name": p.name, "device": p.device, "driver": p.info.driver, "mac": fmt_mac(&p.mac),
                "rx_queues": p.rx_queues, "tx_queues": p.tx_queues,
                "rx_packets": st.ipackets, "rx_bytes": st.ibytes, "tx_packets": st.opackets, "tx_bytes": st.obytes,
                "rx_missed": st.imissed, "rx_errors": st.ierrors, "tx_errors": st.oerrors, "rx_nombuf": st.rx_nombuf,
                "worker_rx_packets": r.workers.iter().map(|w| w.rx_packets[i]).sum::<u64>(),
                "worker_rx_bytes": r.workers.iter().map(|w| w.rx_bytes[i]).sum::<u64>(),
                "worker_tx_packets": r.workers.iter().map(|w| w.tx_packets[i]).sum::<u64>(),
                "worker_tx_bytes": r.workers.iter().map(|w| w.tx_bytes[i]).sum::<u64>(),
                "xstats": p.port.xstats().into_iter().collect::<BTreeMap<_, _>>(),
                "memif_client": p.memif_client, "connects": p.connects.load(Ordering::Relaxed),
            })
        })
        .collect();
    let workers: Vec<_> = r
        .workers
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let stages: BTreeMap<&str, serde_json::Value> = Stage::ALL
                .iter()
                .map(|&st| {
                    let k = st as usize;
                    let (pk, cy) = (w.stage_packets[k], w.stage_cycles[k]);
                    (
                        st.name(),
                        json!({"packets": pk, "bursts": w.stage_bursts[k], "cycles": cy,
                               "cycles_per_packet": if pk > 0 { cy as f64 / pk as f64 } else { 0.0 }}),
                    )
                })
                .collect();
            json!({
                "worker": i, "lcore": r.lcores[i], "polls": w.polls, "busy_polls": w.busy_polls,
                "busy_pct": if w.polls > 0 { 100.0 * w.busy_polls as f64 / w.polls as f64 } else { 0.0 },
                "rx_packets": w.rx_packets.iter().sum::<u64>(), "tx_packets": w.tx_packets.iter().sum::<u64>(),
                "drops": w.total_drops(), "stages": stages,
            })
        })
        .collect();
    let drops: BTreeMap<&str, u64> = drops_by_reason(r.port_stats, r.workers)
        .into_iter()
        .map(|(d, _, n)| (d, n))
        .collect();
    let stages: BTreeMap<&str, serde_json::Value> = Stage::ALL
        .iter()
        .map(|&st| {
            let i = st as usize;
            let (pk, cy) = (sum_at(r, |w| &w.stage_packets, i), sum_at(r, |w| &w.stage_cycles, i));
            (
                st.name(),
                json!({"packets": pk, "bursts": sum_at(r, |w| &w.stage_bursts, i), "cycles": cy,
                       "cycles_per_packet": if pk > 0 { cy as f64 / pk as f64 } else { 0.0 }}),
            )
        })
        .collect();
    let classes: BTreeMap<&str, serde_json::Value> = r
        .slow
        .cfg
        .classes
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let p = |col: usize| sum_at(r, |w| &w.class_packets, k * 3 + col);
            let b = |col: usize| sum_at(r, |w| &w.class_bytes, k * 3 + col);
            (
                c.name.as_str(),
                json!({"conform_packets": p(0), "exceed_packets": p(1), "violate_packets": p(2),
                       "conform_bytes": b(0), "exceed_bytes": b(1), "violate_bytes": b(2)}),
            )
        })
        .collect();
    let total = |f: fn(&WorkerSnapshot) -> u64| r.workers.iter().map(f).sum::<u64>();
    let records: BTreeMap<&str, u64> = r.slow.record_counts().into_iter().collect();
    let drops_by_stage = drops_by_stage(r.port_stats, r.workers);
    let queues: Vec<_> = (0..r.ports.len())
        .flat_map(|p| qos::Priority::ALL.into_iter().map(move |q| (p, q)))
        .map(|(p, q)| {
            let i = p * qos::Priority::COUNT + q as usize;
            json!({"port": r.ports[p].name, "priority": q.name(),
                   "enqueued": sum_at(r, |w| &w.queue_enqueued, i),
                   "dropped": sum_at(r, |w| &w.queue_dropped, i),
                   "ce_marked": sum_at(r, |w| &w.queue_ce_marked, i)})
        })
        .collect();
    json!({
        "seconds": r.ran.as_secs_f64(), "ports": ports, "workers": workers, "drops": drops,
        "stages": stages, "classes": classes, "queues": queues, "drops_by_stage": drops_by_stage,
        "flows": {"mode": r.slow.cfg.flows.mode.name(), "created": total(|w| w.flows_created), "expired": total(|w| w.flows_expired),
                  "evicted": total(|w| w.flows_evicted), "records": records, "records_lost": total(|w| w.records_lost)},
        "control_plane": r.slow.control_json(total(|w| w.to_control)),
        "paths": r.slow.paths_json(),
        "neighbors": r.slow.neighbors_json(),
        "reloads": {"ok": r.slow.reloads_ok, "refused": r.slow.reloads_refused},
        "generation": r.slow.generation(),
        "teardown_graces": teardown_json(),
    })
}

/// What drivers' teardowns waited for (`crate::quiesce`).
fn teardown_json() -> serde_json::Value {
    let g = crate::quiesce::stats();
    serde_json::json!({"graces": g.graces, "timed_out": g.timed_out, "longest_us": g.longest_ns / 1000})
}

/// Gives each worker the RX queues the lcore plan says (the port's own NUMA node first);
/// without a plan, or what it did not place, round robin.
fn assign_queues(
    workers: usize,
    plan: Option<&numa::Plan>,
    port_rxqs: Vec<Vec<crate::dpdk::RxQueue>>,
) -> Vec<Vec<(usize, crate::dpdk::RxQueue)>> {
    let mut queues: Vec<Vec<Option<crate::dpdk::RxQueue>>> = port_rxqs
        .into_iter()
        .map(|q| q.into_iter().map(Some).collect())
        .collect();
    let mut out: Vec<Vec<(usize, crate::dpdk::RxQueue)>> = (0..workers).map(|_| Vec::new()).collect();
    for (w, place) in plan.iter().flat_map(|p| p.workers.iter().enumerate()) {
        for &(p, q) in &place.rx {
            if let Some(rxq) = queues[p].get_mut(q as usize).and_then(Option::take) {
                out[w].push((p, rxq));
            }
        }
    }
    // Whatever the plan did not place (nothing, when it was made) goes round robin.
    let mut next = 0;
    for (p, qs) in queues.into_iter().enumerate() {
        for rxq in qs.into_iter().flatten() {
            out[next % workers].push((p, rxq));
            next += 1;
        }
    }
    out
}

/// Closes ports, checks pools for leaks, prints and writes the report; returns the status.
fn finish(
    ports: Vec<RunPort>,
    pools: Vec<Mempool>,
    baseline: &[u32],
    status: i32,
    report: Option<(String, serde_json::Value, Option<PathBuf>)>,
) -> i32 {
    for p in ports {
        if let Err(e) = p.port.close() {
            warn!(target: "port", "port \"{}\": {e}", p.name);
        }
    }
    let mut leak = false;
    let mut pool_json = Vec::new();
    let mut pool_lines = String::new();
    for (pool, before) in pools.iter().zip(baseline) {
        let after = pool.in_use();
        let ok = after == *before;
        leak |= !ok;
        pool_lines.push_str(&format!(
            "mempool {}: {} mbufs, in use before ports {before}, after close {after}: {}\n",
            pool.name(),
            pool.capacity(),
            if ok { "no leak" } else { "LEAK" }
        ));
        pool_json.push(serde_json::json!({"name": pool.name(), "capacity": pool.capacity(), "in_use_before": before, "in_use_after": after, "leak": !ok}));
    }
    if let Some((text, mut json, file)) = report {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}{pool_lines}");
        let _ = out.flush();
        json["mempools"] = serde_json::Value::Array(pool_json);
        if let Some(f) = file {
            if let Err(e) = std::fs::write(&f, format!("{json:#}\n")) {
                error!(target: "sluiced", "cannot write {}: {e}", f.display());
            }
        }
    } else if !pool_lines.is_empty() {
        eprint!("{pool_lines}");
    }
    drop(pools);
    if leak {
        error!(target: "mempool", "mbufs were not returned to their pool: a leak");
        if status == EXIT_OK {
            return EXIT_LEAK;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_count_the_drivers_receive_losses_in_the_rx_stage() {
        let c = WorkerCounters::default();
        c.drop_packet(DropReason::NoRoute);
        c.drop_packet(DropReason::NoRoute);
        c.drop_packet(DropReason::Truncated);
        c.drop_packet(DropReason::TxFull);
        let workers = [c.snapshot(2), c.snapshot(2)];
        let ports = [
            PortStats {
                imissed: 5,
                rx_nombuf: 1,
                ierrors: 2,
                oerrors: 100,
                ..PortStats::default()
            },
            PortStats {
                imissed: 7,
                ..PortStats::default()
            },
        ];
        let by: BTreeMap<_, _> = drops_by_reason(&ports, &workers)
            .into_iter()
            .map(|(d, st, n)| (d, (st, n)))
            .collect();
        assert_eq!(by["no_route"], (Stage::Route, 4));
        assert_eq!(by["truncated"], (Stage::Classify, 2));
        assert_eq!(by["rx_missed"], (Stage::Rx, 12));
        assert_eq!(by["rx_nombuf"], (Stage::Rx, 1));
        assert_eq!(by["rx_errors"], (Stage::Rx, 2));
        assert_eq!(by.len(), DropReason::ALL.len() + 3);
        let stages = drops_by_stage(&ports, &workers);
        assert_eq!(stages.len(), Stage::COUNT);
        assert_eq!(stages[Stage::Rx.name()], 15);
        assert_eq!(stages[Stage::Classify.name()], 2);
        assert_eq!(stages[Stage::Route.name()], 4);
        // TX errors are the driver's after the hand-over: tx_full counts the worker's.
        assert_eq!(stages[Stage::Tx.name()], 2);
        assert_eq!(stages[Stage::Shape.name()], 0);
    }

    #[test]
    fn headers_are_prefetched_unless_the_driver_copied_them() {
        for d in ["net_pcap", "net_af_packet", "net_tap"] {
            assert!(rx_writes_through_cache(d), "{d}");
        }
        for d in [
            "net_ring",
            "net_memif",
            "net_null",
            "net_i40e",
            "mlx5_pci",
            "net_ixgbe",
            "",
        ] {
            assert!(!rx_writes_through_cache(d), "{d}");
        }
    }
}
