//! The lcore plan for a configuration (`numa::plan`): built before EAL from sysfs for
//! `sluiced --print-plan`, and at start-up from the NUMA nodes DPDK reports for the ports
//! actually found; its queue assignment is what the workers poll. Printed for people and
//! as JSON.

use crate::eal_args::{FIXED_OVERHEAD_MB, MBUF_FOOTPRINT};
use control::Config;
use numa::{Plan, PlanInput, PortNeed, Topology};

/// The plan for `cfg` with each port's NUMA node and RX queue count.
pub fn plan(cfg: &Config, topo: &Topology, mbufs: u32, ports: &[(Option<u32>, u16)]) -> Result<Plan, String> {
    let input = PlanInput {
        ports: cfg
            .ports
            .iter()
            .zip(ports)
            .map(|(p, &(node, rx_queues))| PortNeed {
                name: p.name.clone(),
                node,
                rx_queues,
            })
            .collect(),
        workers: cfg.eal.workers.clone(),
        control: cfg.eal.control_core,
        mbufs,
        mbuf_bytes: MBUF_FOOTPRINT,
        overhead_mib: FIXED_OVERHEAD_MB,
    };
    numa::plan(topo, &input)
}

/// Before EAL: ports' nodes from sysfs (PCI NICs; virtual devices have none), RX queues
/// as configured (one per worker unless set).
pub fn plan_from_sysfs(cfg: &Config, topo: &Topology, mbufs: u32) -> Result<Plan, String> {
    let workers = cfg.eal.workers.len() as u16;
    let ports: Vec<(Option<u32>, u16)> = cfg
        .ports
        .iter()
        .map(|p| {
            let node = if p.is_pci() {
                topo.nic(&crate::eal_args::device_name(&p.device)).and_then(|n| n.node)
            } else {
                None
            };
            (node, p.rx_queues.unwrap_or(workers))
        })
        .collect();
    plan(cfg, topo, mbufs, &ports)
}

pub fn to_json(cfg: &Config, p: &Plan) -> serde_json::Value {
    use serde_json::json;
    json!({
        "workers": p.workers.iter().map(|w| json!({
            "cpu": w.cpu, "node": w.node,
            "rx": w.rx.iter().map(|&(port, q)| json!({"port": cfg.ports[port].name, "queue": q})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "control": {"cpu": p.control, "node": p.control_node},
        "pools": p.pools.iter().map(|x| json!({
            "node": x.node, "mbufs": x.mbufs, "hugepages_needed_mib": x.need_mib, "hugepages_free_mib": x.free_mib,
        })).collect::<Vec<_>>(),
        "warnings": p.warnings.iter().map(|w| json!({"what": w.what, "why": w.why, "fix": w.fix})).collect::<Vec<_>>(),
    })
}

/// The plan as lines for people (and the log); warnings each with why and fix.
pub fn to_text(cfg: &Config, p: &Plan) -> Vec<String> {
    let n = p.workers.len();
    let mut out = vec![format!(
        "lcore plan: {n} worker{}; control thread on core {} (node {})",
        if n == 1 { "" } else { "s" },
        p.control,
        p.control_node
    )];
    for w in &p.workers {
        let rx: Vec<String> =
            w.rx.iter()
                .map(|&(port, q)| format!("{}/{q}", cfg.ports[port].name))
                .collect();
        let rx = if rx.is_empty() {
            "nothing".to_string()
        } else {
            rx.join(", ")
        };
        out.push(format!("  worker on core {} (node {}) polls {rx}", w.cpu, w.node));
    }
    for x in &p.pools {
        out.push(format!(
            "  node {}: mempool of {} mbufs; hugepages needed {} MiB, free {} MiB",
            x.node, x.mbufs, x.need_mib, x.free_mib
        ));
    }
    for w in &p.warnings {
        out.push(format!("warning: {}\n  why: {}\n  fix: {}", w.what, w.why, w.fix));
    }
    if p.warnings.is_empty() {
        out.push("no placement warnings".into());
    }
    out
}

/// DPDK's runtime directory for `prefix`: under /var/run as root, else the user's runtime
/// directory (as EAL decides).
pub fn dpdk_run_dir(prefix: &str) -> std::path::PathBuf {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let base = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !root => std::path::PathBuf::from(d),
        _ if !root => std::path::PathBuf::from("/tmp"),
        _ => std::path::PathBuf::from("/var/run"),
    };
    base.join("dpdk").join(prefix)
}

/// `sluiced doctor`: the machine's findings, and with a configuration what it needs
/// (drivers, NICs, hugepages per node, placement, directories).
pub fn doctor(cfg: Option<&Config>, sys: &numa::System) -> Vec<numa::doctor::Finding> {
    let topo = sys.topology();
    let mut input = numa::doctor::DoctorInput {
        dpdk_version: crate::dpdk::Eal::version(),
        run_dir: dpdk_run_dir("sluice"),
        socket: control::config::default_socket("sluice"),
        ..Default::default()
    };
    let (mut plan, mut refused) = (None, None);
    if let Some(cfg) = cfg {
        for p in &cfg.ports {
            let name = crate::eal_args::device_name(&p.device);
            if p.is_pci() {
                input.pci_ports.push((p.name.clone(), name));
            } else {
                // net_memif0 -> net_memif
                let driver = name.trim_end_matches(|c: char| c.is_ascii_digit()).to_string();
                if !input.pmds.contains(&driver) {
                    input.pmds.push(driver);
                }
            }
        }
        input.hugepages_required = cfg.eal.hugepages == control::config::HugepageMode::On;
        input.run_dir = dpdk_run_dir(&cfg.eal.file_prefix);
        input.socket = cfg.socket();
        let mbufs = cfg
            .eal
            .mbufs
            .unwrap_or_else(|| crate::eal_args::mbufs_needed(cfg, crate::pipeline::BURST as u32));
        match plan_from_sysfs(cfg, &topo, mbufs) {
            Ok(p) => plan = Some(p),
            Err(e) => refused = Some(e),
        }
    }
    let mut out = numa::doctor::doctor(sys, &topo, plan.as_ref(), &input);
    if let Some(e) = refused {
        out.push(numa::doctor::Finding {
            level: numa::doctor::Level::Fail,
            check: "placement",
            what: e,
            fix: "set eal.workers and eal.control_core to online CPUs (/sys/devices/system/cpu/online)".into(),
        });
    }
    out
}
