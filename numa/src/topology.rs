//! The machine's NUMA topology from sysfs: nodes with their CPUs and hugepages, each
//! CPU's physical core and SMT siblings, the CPUs kept from the scheduler (`isolated`,
//! `nohz_full`), and every PCI network controller with its node and driver. A kernel
//! without NUMA (no `/sys/devices/system/node`) is one node 0 holding every online CPU
//! and the machine-wide hugepages.

use crate::{parse_cpu_list, HugepagePool, System};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: u32,
    pub cpus: BTreeSet<u32>,
    /// This node's hugepages by page size, smallest first.
    pub hugepages: Vec<HugepagePool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    pub id: u32,
    pub node: u32,
    /// Package (socket) and core id: CPUs with both equal share a physical core.
    pub package: u32,
    pub core: u32,
    /// The CPUs of its physical core, itself included.
    pub siblings: BTreeSet<u32>,
}

/// A PCI network controller (class 0x02xxxx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// Full address, `0000:03:00.0`.
    pub pci: String,
    /// `None` when the firmware does not say (sysfs gives -1).
    pub node: Option<u32>,
    /// The bound driver (`vfio-pci`, `ixgbe`, …), `None` when unbound.
    pub driver: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    pub nodes: Vec<Node>,
    pub cpus: Vec<Cpu>,
    /// CPUs removed from the scheduler's balancing (`isolcpus=`).
    pub isolated: BTreeSet<u32>,
    /// CPUs without the periodic tick (`nohz_full=`).
    pub nohz_full: BTreeSet<u32>,
    pub nics: Vec<Nic>,
}

impl Topology {
    pub fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The node of a CPU; `None` for a CPU that is not online.
    pub fn node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.cpu(cpu).map(|c| c.node)
    }

    /// The NIC at `pci` (full or short form, `03:00.0` meaning `0000:03:00.0`).
    pub fn nic(&self, pci: &str) -> Option<&Nic> {
        let full = if pci.matches(':').count() == 1 {
            format!("0000:{pci}")
        } else {
            pci.to_string()
        };
        self.nics.iter().find(|n| n.pci.eq_ignore_ascii_case(&full))
    }

    /// Whether two CPUs are hyperthreads of one physical core.
    pub fn share_core(&self, a: u32, b: u32) -> bool {
        a != b && self.cpu(a).is_some_and(|c| c.siblings.contains(&b))
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_num<T: std::str::FromStr>(p: &Path) -> Option<T> {
    read_trim(p)?.parse().ok()
}

fn cpu_list(p: &Path) -> BTreeSet<u32> {
    read_trim(p).and_then(|s| parse_cpu_list(&s).ok()).unwrap_or_default()
}

/// Hugepage pools under `dir` (`…/hugepages`), smallest page first.
pub(crate) fn pools_in(dir: &Path) -> Vec<HugepagePool> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(kib) = name.strip_prefix("hugepages-").and_then(|s| s.strip_suffix("kB")) else {
            continue;
        };
        let Ok(page_kib) = kib.parse() else { continue };
        out.push(HugepagePool {
            page_kib,
            total: read_num(&e.path().join("nr_hugepages")).unwrap_or(0),
            free: read_num(&e.path().join("free_hugepages")).unwrap_or(0),
        });
    }
    out.sort_by_key(|p| p.page_kib);
    out
}

impl System {
    /// Reads the topology. Missing files mean what the kernel means by leaving them out
    /// (no NUMA, no isolation, no PCI), never an error.
    pub fn topology(&self) -> Topology {
        let online = self.online_cpus().unwrap_or_default();
        let mut nodes = Vec::new();
        if let Ok(rd) = fs::read_dir(self.path("/sys/devices/system/node")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(id) = name.strip_prefix("node").and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let cpus = cpu_list(&e.path().join("cpulist"));
                nodes.push(Node {
                    id,
                    cpus: cpus.intersection(&online).copied().collect(),
                    hugepages: pools_in(&e.path().join("hugepages")),
                });
            }
        }
        nodes.sort_by_key(|n| n.id);
        if nodes.is_empty() {
            nodes.push(Node {
                id: 0,
                cpus: online.clone(),
                hugepages: self.hugepages(),
            });
        }
        let cpus = online
            .iter()
            .map(|&id| {
                let topo = self.path(&format!("/sys/devices/system/cpu/cpu{id}/topology"));
                let mut siblings = cpu_list(&topo.join("thread_siblings_list"));
                siblings.insert(id);
                Cpu {
                    id,
                    node: nodes.iter().find(|n| n.cpus.contains(&id)).map_or(0, |n| n.id),
                    package: read_num(&topo.join("physical_package_id")).unwrap_or(0),
                    core: read_num(&topo.join("core_id")).unwrap_or(id),
                    siblings,
                }
            })
            .collect();
        let mut nics = Vec::new();
        if let Ok(rd) = fs::read_dir(self.path("/sys/bus/pci/devices")) {
            for e in rd.flatten() {
                let class = read_trim(&e.path().join("class")).unwrap_or_default();
                if !class.starts_with("0x02") {
                    continue;
                }
                let node = read_num::<i64>(&e.path().join("numa_node")).and_then(|n| u32::try_from(n).ok());
                let driver = fs::read_link(e.path().join("driver"))
                    .ok()
                    .and_then(|l| l.file_name().map(|f| f.to_string_lossy().to_string()));
                nics.push(Nic {
                    pci: e.file_name().to_string_lossy().to_string(),
                    node,
                    driver,
                });
            }
        }
        nics.sort_by(|a, b| a.pci.cmp(&b.pci));
        Topology {
            nodes,
            cpus,
            isolated: cpu_list(&self.path("/sys/devices/system/cpu/isolated")),
            nohz_full: cpu_list(&self.path("/sys/devices/system/cpu/nohz_full")),
            nics,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeTree;

    /// Two nodes of two physical cores with two threads each; CPUs 2 and 6 isolated.
    fn two_nodes() -> FakeTree {
        let mut t = FakeTree::new("topology-two")
            .online_cpus("0-7")
            .node(0, "0-1,4-5")
            .node(1, "2-3,6-7")
            .node_hugepages(0, 2048, 1024, 1000)
            .node_hugepages(1, 2048, 512, 0)
            .node_hugepages(1, 1048576, 2, 2)
            .isolated("2,6")
            .nohz_full("2-3,6-7")
            .pci_nic("0000:03:00.0", 1, Some("vfio-pci"))
            .pci_nic("0000:81:00.1", -1, None)
            .pci_other("0000:00:01.0", "0x060000");
        for cpu in 0..8u32 {
            // Threads of a core are n and n + 4.
            let core = cpu % 4;
            t = t.cpu(cpu, cpu / 2 % 2, core, &format!("{},{}", core, core + 4));
        }
        t
    }

    #[test]
    fn reads_nodes_cores_isolation_and_nics() {
        let tree = two_nodes();
        let t = tree.system().topology();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(t.nodes[1].cpus, [2, 3, 6, 7].into_iter().collect());
        assert_eq!(t.nodes[0].hugepages[0].free, 1000);
        assert_eq!(t.nodes[1].hugepages.len(), 2);
        assert_eq!(t.nodes[1].hugepages[1].page_kib, 1048576);
        assert_eq!(t.node_of_cpu(6), Some(1));
        assert_eq!(t.node_of_cpu(9), None);
        assert!(t.share_core(2, 6));
        assert!(!t.share_core(2, 3));
        assert!(!t.share_core(2, 2));
        assert_eq!(t.isolated, [2, 6].into_iter().collect());
        assert_eq!(t.nohz_full.len(), 4);
        assert_eq!(t.nics.len(), 2, "the bridge is not a NIC");
        let nic = t.nic("03:00.0").unwrap();
        assert_eq!((nic.node, nic.driver.as_deref()), (Some(1), Some("vfio-pci")));
        let unknown = t.nic("0000:81:00.1").unwrap();
        assert_eq!((unknown.node, unknown.driver.as_deref()), (None, None));
        assert!(t.nic("04:00.0").is_none());
        fs::remove_dir_all(tree.root()).unwrap();
    }

    #[test]
    fn without_numa_one_node_has_everything() {
        let tree = FakeTree::new("topology-flat")
            .online_cpus("0-3")
            .hugepages(2048, 64, 64);
        let t = tree.system().topology();
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].cpus.len(), 4);
        assert_eq!(t.nodes[0].hugepages[0].total, 64);
        // No topology files: every CPU is its own core.
        assert_eq!(t.cpu(3).unwrap().siblings, [3].into_iter().collect());
        assert!(t.isolated.is_empty() && t.nics.is_empty());
        fs::remove_dir_all(tree.root()).unwrap();
    }

    #[test]
    fn offline_cpus_are_left_out() {
        let tree = FakeTree::new("topology-offline").online_cpus("0-2").node(0, "0-3");
        let t = tree.system().topology();
        assert_eq!(t.nodes[0].cpus, [0, 1, 2].into_iter().collect());
        assert_eq!(t.cpus.len(), 3);
        fs::remove_dir_all(tree.root()).unwrap();
    }
}
