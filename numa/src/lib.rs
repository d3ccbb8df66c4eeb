//! What the machine offers, read from sysfs and procfs under a root that tests can point
//! at a fake tree: online CPUs and hugepages (per page size, free and total) and whether
//! a hugetlbfs is mounted. The lcore plan and NUMA placement build on this.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

pub mod doctor;
mod pin;
mod plan;
mod topology;
pub use pin::{allowed_cpus, pin_side_threads};
pub use plan::{plan, pool_mbufs, Plan, PlanInput, PoolNeed, PortNeed, Warning, WorkerPlace};
pub use topology::{Cpu, Nic, Node, Topology};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuListError {
    #[error("'{0}' is not a CPU list (expected e.g. \"0-3,8,10-11\")")]
    Malformed(String),
}

/// Parses the kernel's CPU-list format (`0-3,8,10-11`), as in sysfs `online` files.
pub fn parse_cpu_list(s: &str) -> Result<BTreeSet<u32>, CpuListError> {
    let bad = || CpuListError::Malformed(s.trim().to_string());
    let mut out = BTreeSet::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 65_536 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().map_err(|_| bad())?);
            }
        }
    }
    Ok(out)
}

/// Hugepages of one size as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepagePool {
    pub page_kib: u64,
    pub total: u64,
    pub free: u64,
}

/// A view of the machine rooted at `/` (or a fake tree in tests).
#[derive(Debug, Clone)]
pub struct System {
    root: PathBuf,
}

impl Default for System {
    fn default() -> Self {
        System::new("/")
    }
}

impl System {
    pub fn new(root: impl AsRef<Path>) -> System {
        System {
            root: root.as_ref().to_path_buf(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    /// CPUs the kernel has online.
    pub fn online_cpus(&self) -> std::io::Result<BTreeSet<u32>> {
        let s = fs::read_to_string(self.path("/sys/devices/system/cpu/online"))?;
        parse_cpu_list(&s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Hugepage pools by page size, smallest first (machine-wide).
    pub fn hugepages(&self) -> Vec<HugepagePool> {
        topology::pools_in(&self.path("/sys/kernel/mm/hugepages"))
    }

    /// Mount points of hugetlbfs file systems.
    pub fn hugetlbfs_mounts(&self) -> Vec<String> {
        let Ok(s) = fs::read_to_string(self.path("/proc/mounts")) else {
            return Vec::new();
        };
        s.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && f[2] == "hugetlbfs").then(|| f[1].to_string())
            })
            .collect()
    }

    /// Free hugepage memory in MiB across page sizes that have a hugetlbfs mounted.
    pub fn free_hugepage_mib(&self) -> u64 {
        if self.hugetlbfs_mounts().is_empty() {
            return 0;
        }
        self.hugepages().iter().map(|p| p.free * p.page_kib / 1024).sum()
    }
}

/// A fake sysfs/procfs tree for tests and benchmarks, under the system temp directory.
/// Build it once per process (tests run in parallel and must not see half-written files).
pub struct FakeTree {
    root: PathBuf,
}

impl FakeTree {
    /// An empty tree named `name` (and the process id), replacing any leftover.
    pub fn new(name: &str) -> FakeTree {
        let root = std::env::temp_dir().join(format!("sluice-fake-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create fake tree");
        FakeTree { root }
    }

    fn write(self, rel: &str, text: &str) -> Self {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().expect("a file in a directory")).expect("create fake dir");
        fs::write(p, text).expect("write fake file");
        self
    }

    /// `/sys/devices/system/cpu/online`, e.g. "0-3".
    pub fn online_cpus(self, list: &str) -> Self {
        self.write("sys/devices/system/cpu/online", &format!("{list}\n"))
    }

    /// A hugepage pool of `page_kib` pages.
    pub fn hugepages(self, page_kib: u64, total: u64, free: u64) -> Self {
        let dir = format!("sys/kernel/mm/hugepages/hugepages-{page_kib}kB");
        self.write(&format!("{dir}/nr_hugepages"), &format!("{total}\n"))
            .write(&format!("{dir}/free_hugepages"), &format!("{free}\n"))
    }

    /// `/proc/mounts` with a hugetlbfs at `at`, or with none.
    pub fn hugetlbfs(self, at: Option<&str>) -> Self {
        let mounts = match at {
            Some(m) => format!("proc /proc proc rw 0 0\nnodev {m} hugetlbfs rw,relatime,pagesize=2M 0 0\n"),
            None => "proc /proc proc rw 0 0\n".to_string(),
        };
        self.write("proc/mounts", &mounts)
    }

    /// NUMA node `id` with the CPUs of `cpulist`.
    pub fn node(self, id: u32, cpulist: &str) -> Self {
        self.write(
            &format!("sys/devices/system/node/node{id}/cpulist"),
            &format!("{cpulist}\n"),
        )
    }

    /// A hugepage pool of node `node`.
    pub fn node_hugepages(self, node: u32, page_kib: u64, total: u64, free: u64) -> Self {
        let dir = format!("sys/devices/system/node/node{node}/hugepages/hugepages-{page_kib}kB");
        self.write(&format!("{dir}/nr_hugepages"), &format!("{total}\n"))
            .write(&format!("{dir}/free_hugepages"), &format!("{free}\n"))
    }

    /// CPU `id`'s package, core id and SMT siblings (a CPU list).
    pub fn cpu(self, id: u32, package: u32, core: u32, siblings: &str) -> Self {
        let dir = format!("sys/devices/system/cpu/cpu{id}/topology");
        self.write(&format!("{dir}/physical_package_id"), &format!("{package}\n"))
            .write(&format!("{dir}/core_id"), &format!("{core}\n"))
            .write(&format!("{dir}/thread_siblings_list"), &format!("{siblings}\n"))
    }

    /// `/sys/devices/system/cpu/isolated`.
    pub fn isolated(self, list: &str) -> Self {
        self.write("sys/devices/system/cpu/isolated", &format!("{list}\n"))
    }

    /// `/sys/devices/system/cpu/nohz_full`.
    pub fn nohz_full(self, list: &str) -> Self {
        self.write("sys/devices/system/cpu/nohz_full", &format!("{list}\n"))
    }

    /// A PCI network controller at `pci` on `node` (-1: unknown), bound to `driver`.
    pub fn pci_nic(self, pci: &str, node: i32, driver: Option<&str>) -> Self {
        let t = self
            .pci_other(pci, "0x020000")
            .write(&format!("sys/bus/pci/devices/{pci}/numa_node"), &format!("{node}\n"));
        if let Some(d) = driver {
            let target = t.root.join(format!("sys/bus/pci/drivers/{d}"));
            fs::create_dir_all(&target).expect("create fake driver");
            std::os::unix::fs::symlink(&target, t.root.join(format!("sys/bus/pci/devices/{pci}/driver")))
                .expect("link fake driver");
        }
        t
    }

    /// A PCI device of another class (`0x060000`: a bridge).
    pub fn pci_other(self, pci: &str, class: &str) -> Self {
        self.write(&format!("sys/bus/pci/devices/{pci}/class"), &format!("{class}\n"))
    }

    /// A DPDK poll-mode driver library (`net_memif`) in Debian's driver directory.
    pub fn pmd(self, name: &str) -> Self {
        self.write(&format!("usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0/librte_{name}.so"), "")
    }

    /// `n` IOMMU groups.
    pub fn iommu_groups(self, n: u32) -> Self {
        for g in 0..n {
            fs::create_dir_all(self.root.join(format!("sys/kernel/iommu_groups/{g}"))).expect("fake group");
        }
        self
    }

    /// vfio's unsafe no-IOMMU mode on.
    pub fn noiommu(self) -> Self {
        self.write("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "Y\n")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn system(&self) -> System {
        System::new(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n").unwrap().into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpu_list("0").unwrap().len(), 1);
        assert_eq!(parse_cpu_list("").unwrap().len(), 0);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("1-").is_err());
    }

    #[test]
    fn fake_tree() {
        let tree = FakeTree::new("numa-test")
            .online_cpus("0-1")
            .hugepages(2048, 512, 256)
            .hugepages(1048576, 0, 0);
        let sys = tree.system();
        assert_eq!(sys.online_cpus().unwrap().into_iter().collect::<Vec<_>>(), vec![0, 1]);
        let pools = sys.hugepages();
        assert_eq!(
            pools[0],
            HugepagePool {
                page_kib: 2048,
                total: 512,
                free: 256
            }
        );
        assert_eq!(pools[1].total, 0);
        // No hugetlbfs mounted: no usable hugepage memory.
        let tree = tree.hugetlbfs(None);
        assert_eq!(tree.system().free_hugepage_mib(), 0);
        let tree = tree.hugetlbfs(Some("/dev/hugepages"));
        assert_eq!(sys.hugetlbfs_mounts(), vec!["/dev/hugepages".to_string()]);
        assert_eq!(sys.free_hugepage_mib(), 512);
        fs::remove_dir_all(tree.root()).unwrap();
    }
}
