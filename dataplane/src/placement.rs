//! The lcore plan for a configuration (`numa::plan`): built before EAL from sysfs for
//! `sluiced --print-plan`, and at start-up from the NUMA nodes DPDK reports for the ports
//! actually found; its queue assignment is what the workers poll. Printed for people and
//! as JSON.

use crate::eal_args::{FIXED_OVERHEAD_MB, MBUF_FOOTPRINT, MBUF_SLACK};
use control::Config;
use numa::{Plan, PlanInput, PortNeed, Topology};

/// A port as the plan takes it: its NUMA node (`None` for virtual devices), RX and TX
/// queue counts.
pub type PortShape = (Option<u32>, u16, u16);

/// What `numa::plan` needs from `cfg`, with each port's shape.
pub fn input(cfg: &Config, ports: &[PortShape]) -> PlanInput {
    PlanInput {
        ports: cfg
            .ports
            .iter()
            .zip(ports)
            .map(|(p, &(node, rx_queues, tx_queues))| PortNeed {
                name: p.name.clone(),
                node,
                rx_queues,
                tx_queues,
                rx_descriptors: p.rx_descriptors,
                tx_descriptors: p.tx_descriptors,
            })
            .collect(),
        workers: cfg.eal.workers.clone(),
        control: cfg.eal.control_core,
        mbufs: cfg.eal.mbufs,
        mbuf_cache: cfg.eal.mbuf_cache,
        burst: crate::pipeline::BURST as u32,
        spare_mbufs: MBUF_SLACK + control::hold::TOTAL as u32,
        mbuf_bytes: MBUF_FOOTPRINT,
        overhead_mib: FIXED_OVERHEAD_MB,
    }
}

/// The plan for `cfg` with each port's shape.
pub fn plan(cfg: &Config, topo: &Topology, ports: &[PortShape]) -> Result<Plan, String> {
    numa::plan(topo, &input(cfg, ports))
}

/// Before EAL: ports' nodes from sysfs (PCI NICs; virtual devices have none), RX queues
/// as configured (one per worker unless set), a TX queue per worker and the control's.
pub fn shapes_from_sysfs(cfg: &Config, topo: &Topology) -> Vec<PortShape> {
    let workers = cfg.eal.workers.len() as u16;
    cfg.ports
        .iter()
        .map(|p| {
            let node = if p.is_pci() {
                topo.nic(&crate::eal_args::device_name(&p.device)).and_then(|n| n.node)
            } else {
                None
            };
            // memif gets as many RX queues as TX queues (sluiced's setup_port).
            let rx = if crate::eal_args::device_name(&p.device).starts_with("net_memif") {
                workers + 1
            } else {
                p.rx_queues.unwrap_or(workers)
            };
            (node, rx, workers + 1)
        })
        .collect()
}

pub fn plan_from_sysfs(cfg: &Config, topo: &Topology) -> Result<Plan, String> {
    plan(cfg, topo, &shapes_from_sysfs(cfg, topo))
}

/// Mbufs in all the pools together (one per node with ports), before EAL: what EAL's
/// memory must hold.
pub fn mbufs_total(cfg: &Config, topo: &Topology) -> u32 {
    let input = input(cfg, &shapes_from_sysfs(cfg, topo));
    let nodes: std::collections::BTreeSet<u32> = input.ports.iter().map(|p| p.node.unwrap_or(0)).collect();
    nodes
        .into_iter()
        .map(|n| numa::pool_mbufs(&input, n) as u64)
        .sum::<u64>()
        .min(u32::MAX as u64) as u32
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
        linked_drivers: dpdk_sys::LINKED_STATIC
            .then(|| dpdk_sys::LINKED_NET_DRIVERS.iter().map(|d| d.to_string()).collect()),
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
        match plan_from_sysfs(cfg, &topo) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(name: &str) -> numa::FakeTree {
        numa::FakeTree::new(&format!("placement-{name}"))
            .online_cpus("0-7")
            .node(0, "0-3")
            .node(1, "4-7")
            .node_hugepages(0, 2048, 1024, 1024)
            .node_hugepages(1, 2048, 1024, 1024)
            .pci_nic("0000:03:00.0", 1, Some("vfio-pci"))
    }

    fn cfg(sys: &numa::System, eal: &str) -> Config {
        let text = format!(
            "[eal]\nworkers = [1, 5]\nfile_prefix = \"p1\"\n{eal}\n\
             [[ports]]\nname = \"lan\"\ndevice = \"net_memif0,role=server\"\n\
             [[ports]]\nname = \"wan\"\ndevice = \"03:00.0\"\nrx_descriptors = 8192\n"
        );
        Config::parse(&text, "t.toml", sys).unwrap()
    }

    #[test]
    fn pools_are_sized_per_node_from_the_configuration() {
        let tree = machine("pools");
        let sys = tree.system();
        let topo = sys.topology();
        let c = cfg(&sys, "");
        let shapes = shapes_from_sysfs(&c, &topo);
        // The virtual device has no node; the NIC is on node 1. Two workers: 2 RX, 3 TX
        // queues; memif gets as many RX queues as TX queues.
        assert_eq!(shapes, [(None, 3, 3), (Some(1), 2, 3)]);
        let i = input(&c, &shapes);
        let (n0, n1) = (numa::pool_mbufs(&i, 0), numa::pool_mbufs(&i, 1));
        // Node 1 holds wan's deeper RX rings, node 0 only lan's.
        let tx = 2 * 3 * c.ports[0].tx_descriptors as u32;
        let floor = tx + MBUF_SLACK + control::hold::TOTAL as u32;
        assert!(n0 >= floor + 3 * c.ports[0].rx_descriptors as u32, "{n0}");
        assert!(n1 >= floor + 2 * 8192, "{n1}");
        assert!(n1 > n0, "{n0} {n1}");
        assert_eq!(mbufs_total(&c, &topo), n0 + n1);
        let p = plan_from_sysfs(&c, &topo).unwrap();
        assert_eq!(
            p.pools.iter().map(|x| (x.node, x.mbufs)).collect::<Vec<_>>(),
            [(0, n0), (1, n1)]
        );
        // eal.mbufs sets each pool.
        let c = cfg(&sys, "mbufs = 5000");
        assert_eq!(mbufs_total(&c, &topo), 10000);
        std::fs::remove_dir_all(tree.root()).unwrap();
    }
}
