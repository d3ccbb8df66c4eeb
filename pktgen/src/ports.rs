//! EAL and ports for the generator and the reflector: EAL's arguments (own file prefix,
//! hugepages when enough are free, `--no-huge` otherwise), one mbuf pool, and ports from
//! device arguments or PCI addresses with a queue per TX and per RX lcore.

use crate::report::PortReport;
use crate::spec::format_mac;
use dataplane::dpdk::{flags, Eal, Mempool, Port, PortSetup, PortStats, RxQueue, TxQueue, MBUF_DATA_ROOM};
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hugepages {
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone)]
pub struct EalOptions {
    pub file_prefix: String,
    pub main_lcore: u32,
    /// Lcores besides the main one.
    pub lcores: Vec<u32>,
    pub hugepages: Hugepages,
    /// Memory for EAL in MiB (with --no-huge, or to cap hugepage use).
    pub memory_mb: Option<u32>,
    /// Verbatim extra EAL arguments (e.g. `--lcores 0@0,1@1`, which replaces `-l`).
    pub extra: Vec<String>,
    pub verbose: bool,
}

/// Mbufs for `ports` ports with the given queues and descriptors, lcores' caches and
/// bursts, and `held` more (the reflector's delay queue).
pub fn mbufs_needed(ports: usize, queues: u32, descriptors: u32, lcores: u32, held: u32) -> u32 {
    let n = ports as u64 * queues as u64 * descriptors as u64 * 2
        + (lcores as u64 + 1) * (POOL_CACHE as u64 * 3 / 2 + 64 * 8)
        + held as u64
        + 4096;
    ((n + 1).next_power_of_two() - 1).min(u32::MAX as u64) as u32
}

pub const POOL_CACHE: u32 = 256;
pub const DESCRIPTORS: u16 = 1024;

/// EAL's arguments, and a warning when hugepages are not used though asked for "auto".
pub fn eal_args(
    devices: &[String],
    o: &EalOptions,
    mbufs: u32,
    free_huge_mib: u64,
) -> Result<(Vec<String>, Option<String>), String> {
    // Each mbuf: data room, header, mempool object header and cache-line padding.
    let need_mb = 256 + (mbufs as u64 * (MBUF_DATA_ROOM as u64 + 384)).div_ceil(1 << 20);
    let mut args = vec!["sluice-pktgen".to_string()];
    if !o.extra.iter().any(|a| a == "--lcores" || a.starts_with("--lcores=")) {
        let mut l = vec![o.main_lcore];
        l.extend(o.lcores.iter().filter(|&&c| c != o.main_lcore));
        args.push("-l".into());
        args.push(l.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","));
    }
    args.extend([
        "--main-lcore".into(),
        o.main_lcore.to_string(),
        "--file-prefix".into(),
        o.file_prefix.clone(),
        format!("--log-level=*:{}", if o.verbose { 7 } else { 4 }),
    ]);
    let mut warning = None;
    let no_huge = match o.hugepages {
        Hugepages::Off => true,
        Hugepages::On if free_huge_mib < need_mb => {
            return Err(format!(
                "--hugepages on, but only {free_huge_mib} MiB of hugepages are free and {need_mb} MiB are needed; \
                 reserve more (scripts/hugepages.sh) or use --hugepages auto"
            ))
        }
        Hugepages::On => false,
        Hugepages::Auto if free_huge_mib < need_mb => {
            warning = Some(format!(
                "only {free_huge_mib} MiB of hugepages are free ({need_mb} MiB needed): running with --no-huge, which is slower"
            ));
            true
        }
        Hugepages::Auto => false,
    };
    if no_huge {
        let m = o.memory_mb.map(u64::from).unwrap_or(need_mb.max(256));
        args.extend(["--no-huge".into(), "-m".into(), m.to_string()]);
    } else if let Some(m) = o.memory_mb {
        args.extend(["-m".into(), m.to_string()]);
    }
    let mut any_pci = false;
    for d in devices {
        if control::config::is_pci_address(d.split(',').next().unwrap_or("")) {
            any_pci = true;
            args.extend(["-a".into(), d.clone()]);
        } else {
            args.extend(["--vdev".into(), d.clone()]);
        }
    }
    if !any_pci {
        args.push("--no-pci".into());
    }
    args.extend(o.extra.iter().cloned());
    Ok((args, warning))
}

/// The socket a memif client device connects to (None for other devices and servers).
pub fn memif_client_socket(dev: &str) -> Option<String> {
    let mut parts = dev.split(',');
    if !parts.next()?.starts_with("net_memif") {
        return None;
    }
    let (mut client, mut socket) = (false, "/run/memif.sock".to_string());
    for kv in parts {
        match kv.split_once('=') {
            Some(("role", r)) => client = r == "client",
            Some(("socket", p)) => socket = p.to_string(),
            _ => {}
        }
    }
    client.then_some(socket)
}

/// Whether a Unix socket is listening at `path`, as a file or in the abstract namespace
/// (memif's default), from /proc/net/unix.
fn unix_socket_listening(path: &str) -> bool {
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            // Num RefCount Protocol Flags Type St Inode Path; Flags 0x10000 = listening.
            let f: Vec<&str> = l.split_whitespace().collect();
            let listening = u32::from_str_radix(f.get(3)?, 16).ok()? & 0x1_0000 != 0;
            listening.then(|| f.get(7).copied()).flatten()
        })
        .any(|p| p == path || p.strip_prefix('@') == Some(path))
}

/// The EAL name of a device: what precedes its first comma.
pub fn device_name(dev: &str) -> &str {
    dev.split(',').next().unwrap_or(dev)
}

pub struct OpenPort {
    pub device: String,
    pub port: Port,
    pub driver: String,
    pub mac: [u8; 6],
    /// One slot per queue; a worker takes the queue for a run and gives it back.
    pub rx: Vec<Option<RxQueue>>,
    pub tx: Vec<Option<TxQueue>>,
}

pub struct Setup {
    // Field order is drop order: ports are closed explicitly in `close`, then the pool,
    // then EAL.
    pub ports: Vec<OpenPort>,
    pub pool: std::sync::Arc<Mempool>,
    pub eal: Eal,
    file_prefix: String,
}

/// Starts EAL, makes the pool and brings every port up with `rx_queues` (at least as
/// many as TX) and `tx_queues` queues.
pub fn open(
    devices: &[String],
    o: &EalOptions,
    rx_queues: u16,
    tx_queues: u16,
    held: u32,
    start_wait_ms: u64,
) -> Result<Setup, String> {
    let lcores = o.lcores.len() as u32 + 1;
    let queues = rx_queues.max(tx_queues) as u32;
    let mbufs = mbufs_needed(devices.len(), queues, DESCRIPTORS as u32, lcores, held);
    let free = numa::System::new("/").free_hugepage_mib();
    let (args, warning) = eal_args(devices, o, mbufs, free)?;
    if let Some(w) = warning {
        log::warn!("{w}");
    }
    log::debug!("EAL arguments: {}", args.join(" "));
    for d in devices {
        // A memif client probed before its server listens never connects: wait for the
        // server before EAL probes the device.
        if let Some(sock) = memif_client_socket(d) {
            let name = device_name(d);
            let t0 = std::time::Instant::now();
            if !unix_socket_listening(&sock) {
                log::info!("port {name}: waiting for the memif server at {sock}");
            }
            while !unix_socket_listening(&sock) {
                if t0.elapsed().as_millis() as u64 >= start_wait_ms {
                    return Err(format!(
                        "port {name}: no memif server listens at {sock} after {start_wait_ms} ms; start the peer first"
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    let eal = Eal::init(&args).map_err(|e| format!("starting DPDK (EAL arguments: {}): {e}", args.join(" ")))?;
    // On failure from here on, EAL is cleaned up (dropped) and its hugepage files removed.
    let built = bring_up(eal, devices, o, mbufs, rx_queues, tx_queues);
    if built.is_err() {
        remove_hugepage_files(&o.file_prefix);
    }
    built
}

fn bring_up(
    eal: Eal,
    devices: &[String],
    o: &EalOptions,
    mbufs: u32,
    rx_queues: u16,
    tx_queues: u16,
) -> Result<Setup, String> {
    let pool = Mempool::create("pktgen", mbufs, POOL_CACHE, -1).map_err(|e| e.to_string())?;
    let mut ports = Vec::new();
    for d in devices {
        let name = device_name(d);
        let port = eal
            .port_by_name(name)
            .map_err(|e| format!("port {name}: {e} (is the device argument right?)"))?;
        let info = port.info().map_err(|e| e.to_string())?;
        // At least as many RX queues as TX queues: loopback-like devices (net_ring, memif)
        // pair queue i with queue i, and memif connects only when both ends' rings match.
        // RX lcores share the extra queues.
        let (rxq, txq) = if info.driver == "net_memif" {
            let q = rx_queues.max(tx_queues);
            (q, q)
        } else {
            (rx_queues.max(tx_queues), tx_queues)
        };
        if rxq > info.max_rx_queues || txq > info.max_tx_queues {
            return Err(format!(
                "port {name} (driver {}) offers {} RX and {} TX queues; {rxq} and {txq} are needed (one per lcore)",
                info.driver, info.max_rx_queues, info.max_tx_queues
            ));
        }
        let rss_hf = if rxq > 1 {
            info.rss_offloads & flags::RSS_5TUPLE
        } else {
            0
        };
        let setup = PortSetup {
            rx_queues: rxq,
            tx_queues: txq,
            rx_descriptors: DESCRIPTORS,
            tx_descriptors: DESCRIPTORS,
            mtu: 1500,
            rx_offloads: 0,
            // Every mbuf comes from one pool with one reference: the cheap free path.
            tx_offloads: info.tx_offload_capa & flags::TX_OFFLOAD_MBUF_FAST_FREE,
            rss_hf,
            rss_key: Vec::new(),
            promiscuous: true,
        };
        let (rx, tx) = port
            .setup(&setup, &pool)
            .map_err(|e| format!("setting up port {name}: {e}"))?;
        port.start().map_err(|e| format!("starting port {name}: {e}"))?;
        let mac = port.mac().unwrap_or([0; 6]);
        ports.push(OpenPort {
            device: d.clone(),
            port,
            driver: info.driver,
            mac,
            rx: rx.into_iter().map(Some).collect(),
            tx: tx.into_iter().map(Some).collect(),
        });
    }
    Ok(Setup {
        ports,
        pool: std::sync::Arc::new(pool),
        eal,
        file_prefix: o.file_prefix.clone(),
    })
}

impl Setup {
    /// After this process stopped polling: gives memif peers that are still connected up
    /// to `wait` to disconnect before this side closes. (memif unmaps a ring when its peer
    /// leaves, and a process still polling that ring can fault: whoever closes first
    /// should close while the other is not polling.)
    pub fn wait_for_memif_peers(&self, wait: std::time::Duration) {
        let connected = || self.ports.iter().any(|p| p.driver == "net_memif" && p.port.link().up);
        if wait.is_zero() || !connected() {
            return;
        }
        log::info!("stopped; waiting up to {wait:?} for memif peers to disconnect first");
        let t0 = std::time::Instant::now();
        while connected() && t0.elapsed() < wait {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Returns an RX queue a worker borrowed to its port's slot.
    pub fn give_back_rx(&mut self, q: RxQueue) {
        if let Some(p) = self.ports.iter_mut().find(|p| p.port.id() == q.port()) {
            let i = q.queue() as usize;
            p.rx[i] = Some(q);
        }
    }

    /// Returns a TX queue a worker borrowed to its port's slot.
    pub fn give_back_tx(&mut self, q: TxQueue) {
        if let Some(p) = self.ports.iter_mut().find(|p| p.port.id() == q.port()) {
            let i = q.queue() as usize;
            p.tx[i] = Some(q);
        }
    }

    /// Every port's counters now, to diff against at the end of a run.
    pub fn port_stats(&self) -> Vec<PortStats> {
        self.ports.iter().map(|p| p.port.stats()).collect()
    }

    /// Every port's identity and what its counters moved by since `before`.
    pub fn port_reports(&self, before: &[PortStats]) -> Vec<PortReport> {
        self.ports
            .iter()
            .zip(before)
            .enumerate()
            .map(|(i, (p, b))| {
                let a = p.port.stats();
                PortReport {
                    index: i,
                    device: device_name(&p.device).to_string(),
                    mac: format_mac(&p.mac),
                    link_mbps: p.port.link().speed_mbps,
                    ipackets: a.ipackets.saturating_sub(b.ipackets),
                    opackets: a.opackets.saturating_sub(b.opackets),
                    ibytes: a.ibytes.saturating_sub(b.ibytes),
                    obytes: a.obytes.saturating_sub(b.obytes),
                    imissed: a.imissed.saturating_sub(b.imissed),
                    ierrors: a.ierrors.saturating_sub(b.ierrors),
                    oerrors: a.oerrors.saturating_sub(b.oerrors),
                    rx_nombuf: a.rx_nombuf.saturating_sub(b.rx_nombuf),
                }
            })
            .collect()
    }

    /// Waits up to `max_ms` for every port's link (memif needs its peer).
    pub fn wait_links(&self, max_ms: u64) -> Result<(), String> {
        let t0 = std::time::Instant::now();
        loop {
            let down: Vec<&str> = self
                .ports
                .iter()
                .filter(|p| !p.port.link().up)
                .map(|p| device_name(&p.device))
                .collect();
            if down.is_empty() {
                return Ok(());
            }
            if t0.elapsed().as_millis() as u64 >= max_ms {
                let mut m = String::new();
                let _ = write!(
                    m,
                    "link still down after {max_ms} ms on {} (a memif port needs its peer running)",
                    down.join(", ")
                );
                return Err(m);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops and closes every port, then releases the pool and EAL.
    pub fn close(self) {
        let Setup {
            ports,
            pool,
            eal,
            file_prefix,
        } = self;
        for p in ports {
            let _ = p.port.stop();
            drop(p.rx);
            drop(p.tx);
            let _ = p.port.close();
        }
        drop(pool);
        let _ = eal.cleanup();
        remove_hugepage_files(&file_prefix);
    }
}

/// EAL leaves the hugepage files of memif regions behind; they would hold the pages until
/// reboot. The prefix is this process's own.
fn remove_hugepage_files(file_prefix: &str) {
    let ours = format!("{file_prefix}map_");
    for mount in numa::System::new("/").hugetlbfs_mounts() {
        if let Ok(rd) = std::fs::read_dir(&mount) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&ours) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> EalOptions {
        EalOptions {
            file_prefix: "pg".into(),
            main_lcore: 0,
            lcores: vec![1],
            hugepages: Hugepages::Auto,
            memory_mb: None,
            extra: vec![],
            verbose: false,
        }
    }

    #[test]
    fn eal_arguments() {
        let devs = vec!["net_ring0".to_string(), "0000:03:00.0".to_string()];
        let (a, w) = eal_args(&devs, &opts(), 16383, 0).unwrap();
        assert!(w.unwrap().contains("--no-huge"));
        let s = a.join(" ");
        assert!(s.contains("-l 0,1 --main-lcore 0 --file-prefix pg"), "{s}");
        assert!(s.contains("--no-huge -m"));
        assert!(s.contains("--vdev net_ring0 -a 0000:03:00.0"));
        assert!(!s.contains("--no-pci"));
        let (a, w) = eal_args(&devs[..1], &opts(), 16383, 100_000).unwrap();
        assert!(w.is_none());
        assert!(!a.join(" ").contains("--no-huge"));
        assert!(a.join(" ").contains("--no-pci"));
        let mut o = opts();
        o.hugepages = Hugepages::On;
        assert!(eal_args(&devs, &o, 16383, 0).unwrap_err().contains("hugepages"));
        o.extra = vec!["--lcores".into(), "0@0,1@0".into()];
        o.hugepages = Hugepages::Off;
        let (a, _) = eal_args(&devs, &o, 16383, 100_000).unwrap();
        assert!(!a.contains(&"-l".to_string()));
        assert!(a.join(" ").ends_with("--lcores 0@0,1@0"));
    }

    #[test]
    fn memif_client_sockets() {
        assert_eq!(
            memif_client_socket("net_memif0,role=client,socket=/tmp/a.sock").as_deref(),
            Some("/tmp/a.sock")
        );
        assert_eq!(
            memif_client_socket("net_memif1,role=client").as_deref(),
            Some("/run/memif.sock")
        );
        assert_eq!(memif_client_socket("net_memif0,role=server,socket=/tmp/a.sock"), None);
        assert_eq!(memif_client_socket("net_ring0"), None);
    }

    #[test]
    fn pool_sizes_are_powers_of_two_minus_one() {
        let n = mbufs_needed(2, 2, 1024, 2, 0);
        assert_eq!((n + 1).count_ones(), 1);
        assert!(n as u64 >= 2 * 2 * 1024 * 2);
        assert!(mbufs_needed(1, 1, 1024, 1, 100_000) > 100_000);
    }
}
