//! The lcore plan: which worker polls which (port, RX queue) — a port's queues go to
//! workers on the port's own NUMA node first, spread evenly —, where the control thread
//! runs, what each node's mempool needs in hugepages, and what is wrong with the placement,
//! each with the reason it matters and the fix. The cores come from the configuration
//! (`eal.workers`, `eal.control_core`); the plan checks them against the machine.

use crate::Topology;
use std::collections::BTreeMap;

/// One port as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortNeed {
    pub name: String,
    /// Its NUMA node; `None` for virtual devices and NICs whose firmware does not say
    /// (DPDK then allocates for them on node 0).
    pub node: Option<u32>,
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInput {
    pub ports: Vec<PortNeed>,
    pub workers: Vec<u32>,
    pub control: u32,
    /// Mbufs in every node's pool when the configuration fixes it (`eal.mbufs`);
    /// otherwise each pool is sized by [`pool_mbufs`].
    pub mbufs: Option<u32>,
    /// Each lcore's mempool cache, and the burst size of RX and TX.
    pub mbuf_cache: u32,
    pub burst: u32,
    /// Mbufs every pool keeps beyond rings, caches and bursts: drivers that hold packets of
    /// their own, and packets held for next hops being resolved.
    pub spare_mbufs: u32,
    /// The bytes one mbuf takes in memory.
    pub mbuf_bytes: u64,
    /// Memory beyond the pools that EAL, drivers and rings take on the control's node.
    pub overhead_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPlace {
    pub cpu: u32,
    pub node: u32,
    /// (port index, RX queue) pairs it polls.
    pub rx: Vec<(usize, u16)>,
}

/// One node's mempool and the hugepages it needs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNeed {
    pub node: u32,
    pub mbufs: u32,
    /// Hugepage memory the node needs (its pool, plus EAL's own on the control's node).
    pub need_mib: u64,
    /// Free hugepage memory on the node now.
    pub free_mib: u64,
}

/// Something about the placement that costs speed, with the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub what: String,
    pub why: String,
    pub fix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub workers: Vec<WorkerPlace>,
    pub control: u32,
    pub control_node: u32,
    pub pools: Vec<PoolNeed>,
    pub warnings: Vec<Warning>,
}

fn list(cpus: impl IntoIterator<Item = u32>) -> String {
    cpus.into_iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// "worker core 3" or "worker cores 3,5".
fn cores(cpus: &[u32]) -> String {
    match cpus {
        [one] => format!("worker core {one}"),
        _ => format!("worker cores {}", list(cpus.iter().copied())),
    }
}

/// Mbufs the pool of `node` needs (virtual devices and NICs without a node count as node 0):
///
/// ```text
///   sum over ports on the node of  rx_queues x rx_descriptors   (RX rings refill from their own node's pool)
/// + sum over all ports of          tx_queues x tx_descriptors   (a forwarded mbuf waits in any port's TX ring)
/// + (workers + 1) x (cache x 3/2 + burst x (ports + 1))         (each lcore's cache, flushed at 1.5 x its size,
///                                                                and the bursts it holds: one per port polled, one for TX)
/// + spare                                                       (drivers' own packets, packets held for next hops)
/// ```
///
/// rounded up to 2^k - 1, the size mempools use best. A node with no port needs none.
pub fn pool_mbufs(input: &PlanInput, node: u32) -> u32 {
    if !input.ports.iter().any(|p| p.node.unwrap_or(0) == node) {
        return 0;
    }
    if let Some(n) = input.mbufs {
        return n;
    }
    let lcores = input.workers.len() as u64 + 1;
    let ports = input.ports.len() as u64;
    let rx: u64 = input
        .ports
        .iter()
        .filter(|p| p.node.unwrap_or(0) == node)
        .map(|p| p.rx_queues as u64 * p.rx_descriptors as u64)
        .sum();
    let tx: u64 = input
        .ports
        .iter()
        .map(|p| p.tx_queues as u64 * p.tx_descriptors as u64)
        .sum();
    let lcore = lcores * (input.mbuf_cache as u64 * 3 / 2 + input.burst as u64 * (ports + 1));
    let n = rx + tx + lcore + input.spare_mbufs as u64;
    ((n + 1).next_power_of_two() - 1).min(u32::MAX as u64) as u32
}

/// Plans `input` on `topo`. Refused only when a configured core is not online.
pub fn plan(topo: &Topology, input: &PlanInput) -> Result<Plan, String> {
    let node_of = |cpu: u32, what: &str| {
        topo.node_of_cpu(cpu)
            .ok_or_else(|| format!("{what} core {cpu} is not an online CPU of this machine"))
    };
    let mut workers = Vec::new();
    for &cpu in &input.workers {
        workers.push(WorkerPlace {
            cpu,
            node: node_of(cpu, "worker")?,
            rx: Vec::new(),
        });
    }
    let control_node = node_of(input.control, "control")?;
    let mut warnings = Vec::new();

    // ---- queues to workers: the port's node first, then the least loaded, then the first
    for (p, port) in input.ports.iter().enumerate() {
        let local: Vec<usize> = (0..workers.len())
            .filter(|&w| port.node.is_none_or(|n| workers[w].node == n))
            .collect();
        let candidates: Vec<usize> = if local.is_empty() {
            (0..workers.len()).collect()
        } else {
            local
        };
        for q in 0..port.rx_queues {
            let Some(&w) = candidates.iter().min_by_key(|&&w| (workers[w].rx.len(), w)) else {
                break;
            };
            workers[w].rx.push((p, q));
        }
        if let Some(n) = port.node {
            let remote: Vec<u32> = workers
                .iter()
                .filter(|w| w.node != n && w.rx.iter().any(|&(wp, _)| wp == p))
                .map(|w| w.cpu)
                .collect();
            if !remote.is_empty() {
                let here = topo.node(n).map(|x| list(x.cpus.iter().copied())).unwrap_or_default();
                warnings.push(Warning {
                    what: format!("port \"{}\" is on node {n} but polled by {} of other nodes", port.name, cores(&remote)),
                    why: "every packet and descriptor then crosses the interconnect between nodes, which often halves the rate".into(),
                    fix: format!("give eal.workers cores of node {n} ({here})"),
                });
            }
        }
    }

    // ---- hugepages per node: a pool on each node with ports, EAL's own on the control's
    let mut need: BTreeMap<u32, u64> = BTreeMap::new();
    for port in &input.ports {
        let node = port.node.unwrap_or(0);
        need.insert(
            node,
            (pool_mbufs(input, node) as u64 * input.mbuf_bytes).div_ceil(1 << 20),
        );
    }
    *need.entry(control_node).or_default() += input.overhead_mib;
    let pools: Vec<PoolNeed> = need
        .iter()
        .map(|(&node, &need_mib)| PoolNeed {
            node,
            mbufs: pool_mbufs(input, node),
            need_mib,
            free_mib: topo
                .node(node)
                .map_or(0, |n| n.hugepages.iter().map(|p| p.free * p.page_kib / 1024).sum()),
        })
        .collect();
    for p in pools.iter().filter(|p| p.free_mib < p.need_mib) {
        let pages = (p.need_mib - p.free_mib).div_ceil(2);
        warnings.push(Warning {
            what: format!("node {} needs {} MiB of hugepages, {} MiB are free there", p.node, p.need_mib, p.free_mib),
            why: "a pool that does not fit on its node is placed on another or not at all (sluiced then runs without hugepages, far slower)".into(),
            fix: format!(
                "reserve {pages} more 2 MiB pages on node {0}: raise node{0}.2M in hugepages.conf and run scripts/hugepages.sh \
                 (or: echo N > /sys/devices/system/node/node{0}/hugepages/hugepages-2048kB/nr_hugepages)",
                p.node
            ),
        });
    }

    // ---- isolation and shared physical cores
    let busy: Vec<u32> = workers
        .iter()
        .filter(|w| !topo.isolated.contains(&w.cpu))
        .map(|w| w.cpu)
        .collect();
    if !busy.is_empty() {
        warnings.push(Warning {
            what: format!(
                "{} {} not isolated",
                cores(&busy),
                if busy.len() == 1 { "is" } else { "are" }
            ),
            why: "the kernel schedules other tasks and interrupts on such cores, which shows as latency spikes and drops".into(),
            fix: format!(
                "boot with isolcpus={0} nohz_full={0} rcu_nocbs={0}, and move interrupts off them (scripts/irq-affinity.sh)",
                list(busy.iter().copied())
            ),
        });
    }
    for (i, a) in workers.iter().enumerate() {
        for b in &workers[i + 1..] {
            if topo.share_core(a.cpu, b.cpu) {
                warnings.push(Warning {
                    what: format!("worker cores {} and {} are threads of one physical core", a.cpu, b.cpu),
                    why: "two busy pollers on one core share its execution units and caches: each gets well under half"
                        .into(),
                    fix: "give eal.workers one thread of each physical core (see thread_siblings_list in sysfs)".into(),
                });
            }
        }
    }
    if let Some(w) = workers.iter().find(|w| topo.share_core(w.cpu, input.control)) {
        warnings.push(Warning {
            what: format!("the control core {} is a thread of worker core {}'s physical core", input.control, w.cpu),
            why: "the control thread is mostly idle but takes execution units from that worker when it runs (fine on small machines)".into(),
            fix: "set eal.control_core to a core no worker shares, if the machine has one".into(),
        });
    }
    Ok(Plan {
        workers,
        control: input.control,
        control_node,
        pools,
        warnings,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::FakeTree;

    pub(crate) fn port(name: &str, node: Option<u32>, rx_queues: u16) -> PortNeed {
        PortNeed {
            name: name.into(),
            node,
            rx_queues,
            tx_queues: 3,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
        }
    }

    pub(crate) fn input(ports: Vec<PortNeed>, workers: &[u32], control: u32) -> PlanInput {
        PlanInput {
            ports,
            workers: workers.to_vec(),
            control,
            mbufs: Some(32767),
            mbuf_cache: 256,
            burst: 32,
            spare_mbufs: 10240,
            mbuf_bytes: 2304,
            overhead_mib: 192,
        }
    }

    /// `nodes` nodes of `cores` physical cores with 2 threads each; thread siblings are
    /// n and n + nodes * cores. `isolated` CPUs; 1024 free 2 MiB pages per node.
    fn machine(name: &str, nodes: u32, cores: u32, isolated: &str) -> FakeTree {
        let total = nodes * cores * 2;
        let half = nodes * cores;
        let mut t = FakeTree::new(name)
            .online_cpus(&format!("0-{}", total - 1))
            .isolated(isolated);
        for n in 0..nodes {
            let first = n * cores;
            let last = first + cores - 1;
            t = t
                .node(n, &format!("{first}-{last},{}-{}", first + half, last + half))
                .node_hugepages(n, 2048, 1024, 1024);
        }
        for cpu in 0..total {
            let core = cpu % half;
            t = t.cpu(cpu, core / cores, core, &format!("{},{}", core, core + half));
        }
        t
    }

    #[test]
    fn one_node_spreads_queues_and_warns_about_isolation_and_siblings() {
        let tree = machine("plan-one", 1, 2, "");
        let topo = tree.system().topology();
        // CPUs 0,1 are cores; 2,3 their threads. Workers 1 and 3 share core 1.
        let p = plan(
            &topo,
            &input(vec![port("lan", None, 2), port("wan", None, 2)], &[1, 3], 0),
        )
        .unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0), (1, 0)]);
        assert_eq!(p.workers[1].rx, vec![(0, 1), (1, 1)]);
        assert_eq!(p.control_node, 0);
        // One pool of 32767 x 2304 B = 72 MiB, plus 192 for EAL.
        assert_eq!(
            p.pools,
            vec![PoolNeed {
                node: 0,
                mbufs: 32767,
                need_mib: 72 + 192,
                free_mib: 2048
            }]
        );
        let what: Vec<&str> = p.warnings.iter().map(|w| w.what.as_str()).collect();
        assert_eq!(
            what,
            [
                "worker cores 1,3 are not isolated",
                "worker cores 1 and 3 are threads of one physical core",
            ]
        );
        assert_eq!(p.warnings[0].fix, "boot with isolcpus=1,3 nohz_full=1,3 rcu_nocbs=1,3, and move interrupts off them (scripts/irq-affinity.sh)");
        // The control core on a worker's sibling is said too.
        let p = plan(&topo, &input(vec![port("lan", None, 1)], &[1], 3)).unwrap();
        assert_eq!(p.warnings[0].what, "worker core 1 is not isolated");
        assert_eq!(
            p.warnings.last().unwrap().what,
            "the control core 3 is a thread of worker core 1's physical core"
        );
        // A core that is not online is refused.
        let e = plan(&topo, &input(vec![], &[9], 0)).unwrap_err();
        assert_eq!(e, "worker core 9 is not an online CPU of this machine");
        std::fs::remove_dir_all(tree.root()).unwrap();
    }

    #[test]
    fn two_nodes_keep_ports_with_their_own_workers() {
        // Node 0: CPUs 0-3 and 8-11; node 1: CPUs 4-7 and 12-15. Workers isolated.
        let tree = machine("plan-two", 2, 4, "1-3,5-7");
        let topo = tree.system().topology();
        let ports = vec![port("lan", Some(0), 2), port("wan", Some(1), 2)];
        let p = plan(&topo, &input(ports.clone(), &[1, 2, 5, 6], 0)).unwrap();
        let rx: Vec<_> = p.workers.iter().map(|w| (w.cpu, w.node, w.rx.clone())).collect();
        assert_eq!(
            rx,
            vec![
                (1, 0, vec![(0, 0)]),
                (2, 0, vec![(0, 1)]),
                (5, 1, vec![(1, 0)]),
                (6, 1, vec![(1, 1)]),
            ]
        );
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(
            p.pools.iter().map(|p| (p.node, p.need_mib)).collect::<Vec<_>>(),
            [(0, 264), (1, 72)]
        );
        // Workers only on node 0: wan's queues cross nodes, and it is said with the fix.
        let p = plan(&topo, &input(ports, &[1, 2], 0)).unwrap();
        assert_eq!(p.workers[0].rx, vec![(0, 0), (1, 0)]);
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(
            p.warnings[0].what,
            "port \"wan\" is on node 1 but polled by worker cores 1,2 of other nodes"
        );
        assert_eq!(
            p.warnings[0].fix,
            "give eal.workers cores of node 1 (4,5,6,7,12,13,14,15)"
        );
        std::fs::remove_dir_all(tree.root()).unwrap();
    }

    #[test]
    fn four_nodes_check_hugepages_where_the_ports_are() {
        let tree = machine("plan-four", 4, 2, "2,3,4,5,6,7")
            // Node 3 has its pages used up.
            .node_hugepages(3, 2048, 1024, 10);
        let topo = tree.system().topology();
        let ports = vec![port("a", Some(1), 1), port("b", Some(3), 1), port("vdev", None, 1)];
        let p = plan(&topo, &input(ports, &[2, 3, 6, 7], 0)).unwrap();
        let rx: Vec<_> = p.workers.iter().map(|w| (w.cpu, w.rx.clone())).collect();
        // A virtual device has no node: the least loaded worker takes it.
        assert_eq!(
            rx,
            vec![(2, vec![(0, 0)]), (3, vec![(2, 0)]), (6, vec![(1, 0)]), (7, vec![])]
        );
        assert_eq!(p.pools.iter().map(|p| p.node).collect::<Vec<_>>(), [0, 1, 3]);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        let w = &p.warnings[0];
        assert_eq!(w.what, "node 3 needs 72 MiB of hugepages, 20 MiB are free there");
        assert!(w.fix.starts_with("reserve 26 more 2 MiB pages on node 3"), "{}", w.fix);
        assert!(w
            .fix
            .contains("/sys/devices/system/node/node3/hugepages/hugepages-2048kB/nr_hugepages"));
        std::fs::remove_dir_all(tree.root()).unwrap();
    }

    #[test]
    fn each_node_pool_holds_its_own_rx_rings_and_every_tx_ring() {
        let tree = machine("plan-pools", 2, 4, "1-3,5-7");
        let topo = tree.system().topology();
        let mut ports = vec![
            port("lan", Some(0), 2),
            port("wan", Some(1), 2),
            port("dmz", Some(1), 2),
        ];
        ports[1].rx_descriptors = 4096;
        let mut i = input(ports, &[1, 2, 5, 6], 0);
        i.mbufs = None;
        // 5 lcores x (256 x 3/2 + 32 x 4) = 2560; TX rings 3 ports x 3 x 1024 = 9216; spare 10240.
        let common = 2560 + 9216 + 10240;
        // Node 0: lan's RX rings, 2 x 1024 -> 24064, rounded up to 32767.
        assert_eq!(common + 2048, 24064);
        assert_eq!(pool_mbufs(&i, 0), 32767);
        // Node 1: wan's 2 x 4096 and dmz's 2 x 1024 -> 32256, rounded up to 32767 too...
        assert_eq!(pool_mbufs(&i, 1), 32767);
        // ...and with deeper rings past it, to 65535 on node 1 only.
        i.ports[2].rx_descriptors = 2048;
        assert_eq!(pool_mbufs(&i, 0), 32767);
        assert_eq!(pool_mbufs(&i, 1), 65535);
        // No port, no pool.
        assert_eq!(pool_mbufs(&i, 3), 0);
        let p = plan(&topo, &i).unwrap();
        assert_eq!(
            p.pools
                .iter()
                .map(|p| (p.node, p.mbufs, p.need_mib))
                .collect::<Vec<_>>(),
            // 32767 x 2304 B = 72 MiB + EAL's 192 on the control's node; 65535 x 2304 B = 144 MiB.
            [(0, 32767, 72 + 192), (1, 65535, 144)]
        );
        // eal.mbufs fixes every pool's size.
        i.mbufs = Some(5000);
        assert_eq!((pool_mbufs(&i, 0), pool_mbufs(&i, 1)), (5000, 5000));
        std::fs::remove_dir_all(tree.root()).unwrap();
    }
}
