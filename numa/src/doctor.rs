//! `sluiced doctor`: the preflight. Each check reads the machine (sysfs and procfs under
//! the system's root, so tests use fake trees) and gives OK, WARN or FAIL with what it saw
//! and, for WARN and FAIL, the exact command that fixes it. Nothing is changed, except that
//! writability of a directory is probed by creating and removing a file in it.

use crate::{Plan, System, Topology};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// Which check: `dpdk`, `pmd`, `hugepages`, `iommu`, `vfio`, `nic`, `placement`,
    /// `run-dir`, `socket`.
    pub check: &'static str,
    pub what: String,
    /// The command (or setting) that fixes it; empty for OK.
    pub fix: String,
}

fn ok(check: &'static str, what: String) -> Finding {
    Finding {
        level: Level::Ok,
        check,
        what,
        fix: String::new(),
    }
}

fn bad(level: Level, check: &'static str, what: String, fix: String) -> Finding {
    Finding {
        level,
        check,
        what,
        fix,
    }
}

/// What the configuration asks of the machine.
#[derive(Debug, Clone, Default)]
pub struct DoctorInput {
    /// The DPDK version `sluiced` runs with (`rte_version()`), e.g. "DPDK 22.11.11".
    pub dpdk_version: String,
    /// Poll-mode drivers the configured virtual devices need (`net_memif`, …).
    pub pmds: Vec<String>,
    /// The network drivers linked into `sluiced` when DPDK is linked statically; `None`
    /// when EAL loads them from DPDK's plugin directory.
    pub linked_drivers: Option<Vec<String>>,
    /// Configured PCI ports: (port name, full PCI address).
    pub pci_ports: Vec<(String, String)>,
    /// Whether the configuration insists on hugepages (`eal.hugepages = "on"`).
    pub hugepages_required: bool,
    /// DPDK's runtime directory for this file prefix's parent (`/var/run/dpdk`).
    pub run_dir: PathBuf,
    /// The control socket's path.
    pub socket: PathBuf,
}

/// Kernel drivers DPDK drives beside (bifurcated): a NIC bound to one is usable as is.
const BIFURCATED: &[&str] = &["mlx5_core", "mlx4_core"];

/// Whether `dir` (or its nearest existing ancestor, which would hold it) is writable by us:
/// a file is created in it and removed.
fn writable(dir: &Path) -> Result<PathBuf, String> {
    let mut d = dir.to_path_buf();
    while !d.exists() {
        match d.parent() {
            Some(p) => d = p.to_path_buf(),
            None => return Err(format!("no part of {} exists", dir.display())),
        }
    }
    let probe = d.join(format!(".sluiced-doctor-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(d)
        }
        Err(e) => Err(format!("{}: {e}", d.display())),
    }
}

pub fn doctor(sys: &System, topo: &Topology, plan: Option<&Plan>, input: &DoctorInput) -> Vec<Finding> {
    let mut out = Vec::new();

    // ---- DPDK and its drivers
    if input.dpdk_version.contains("22.11") {
        out.push(ok(
            "dpdk",
            format!("{} (the version Sluice is built and tested with)", input.dpdk_version),
        ));
    } else {
        out.push(bad(
            Level::Warn,
            "dpdk",
            format!("{}: Sluice is built and tested with DPDK 22.11", input.dpdk_version),
            "apt-get install dpdk libdpdk-dev (Debian 12 ships 22.11), then rebuild: make build".into(),
        ));
    }
    let pmd_dirs: Vec<PathBuf> = std::fs::read_dir(sys.path("/usr/lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("dpdk"))
        .filter(|p| p.is_dir())
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("pmds-")))
        .collect();
    for pmd in &input.pmds {
        if let Some(linked) = &input.linked_drivers {
            out.push(if linked.contains(pmd) {
                ok("pmd", format!("{pmd}: linked into sluiced"))
            } else {
                bad(
                    Level::Fail,
                    "pmd",
                    format!("{pmd}: not linked into this sluiced (DPDK is linked statically)"),
                    "build with SLUICE_DPDK_LINK=shared to load drivers from DPDK's plugin directory".into(),
                )
            });
            continue;
        }
        // net_memif -> librte_net_memif.so
        let file = format!("librte_{pmd}.so");
        match pmd_dirs.iter().find(|d| d.join(&file).exists()) {
            Some(d) => out.push(ok("pmd", format!("{pmd}: {}", d.join(&file).display()))),
            None => out.push(bad(
                Level::Fail,
                "pmd",
                format!("{pmd}: {file} is in no DPDK driver directory (/usr/lib/*/dpdk/pmds-*)"),
                "apt-get install libdpdk-dev (it brings every driver package)".into(),
            )),
        }
    }

    // ---- hugepages: mounted, and enough on each node the plan uses
    let mounts = sys.hugetlbfs_mounts();
    let lack = if input.hugepages_required {
        Level::Fail
    } else {
        Level::Warn
    };
    let fallback = if input.hugepages_required {
        "eal.hugepages = \"on\": sluiced will not start"
    } else {
        "sluiced falls back to --no-huge, which is slower"
    };
    if mounts.is_empty() {
        out.push(bad(
            lack,
            "hugepages",
            format!("no hugetlbfs is mounted ({fallback})"),
            "scripts/hugepages.sh (or: mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages)".into(),
        ));
    } else {
        out.push(ok("hugepages", format!("hugetlbfs mounted at {}", mounts.join(", "))));
    }
    for pool in plan.map(|p| p.pools.as_slice()).unwrap_or_default() {
        if pool.free_mib >= pool.need_mib {
            out.push(ok(
                "hugepages",
                format!(
                    "node {}: {} MiB free, {} MiB needed",
                    pool.node, pool.free_mib, pool.need_mib
                ),
            ));
        } else {
            out.push(bad(
                lack,
                "hugepages",
                format!(
                    "node {}: {} MiB free, {} MiB needed ({fallback})",
                    pool.node, pool.free_mib, pool.need_mib
                ),
                format!(
                    "raise node{0}.2M in hugepages.conf by {1} and run scripts/hugepages.sh (or: echo N > \
                     /sys/devices/system/node/node{0}/hugepages/hugepages-2048kB/nr_hugepages)",
                    pool.node,
                    (pool.need_mib - pool.free_mib).div_ceil(2)
                ),
            ));
        }
    }

    // ---- PCI NICs: IOMMU, vfio-pci, each port's binding and node
    if !input.pci_ports.is_empty() {
        let groups = std::fs::read_dir(sys.path("/sys/kernel/iommu_groups")).map_or(0, |d| d.count());
        let noiommu = std::fs::read_to_string(sys.path("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode"))
            .is_ok_and(|s| s.trim() == "Y");
        if groups > 0 {
            out.push(ok("iommu", format!("{groups} IOMMU groups")));
        } else if noiommu {
            out.push(bad(
                Level::Warn,
                "iommu",
                "no IOMMU; vfio runs in unsafe no-IOMMU mode (devices can DMA anywhere)".into(),
                "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (or amd_iommu=on)".into(),
            ));
        } else {
            out.push(bad(
                Level::Fail,
                "iommu",
                "no IOMMU groups: vfio-pci cannot take NICs".into(),
                "enable VT-d / AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (or amd_iommu=on); \
                 without an IOMMU: modprobe vfio enable_unsafe_noiommu_mode=1"
                    .into(),
            ));
        }
        if sys.path("/sys/bus/pci/drivers/vfio-pci").is_dir() {
            out.push(ok("vfio", "vfio-pci is loaded".into()));
        } else {
            out.push(bad(
                Level::Fail,
                "vfio",
                "the vfio-pci module is not loaded".into(),
                "modprobe vfio-pci".into(),
            ));
        }
    }
    for (name, pci) in &input.pci_ports {
        let Some(nic) = topo.nic(pci) else {
            out.push(bad(
                Level::Fail,
                "nic",
                format!("port \"{name}\": no network device at {pci}"),
                "scripts/bind-nics.sh status (lists the NICs and their addresses); fix ports[].device".into(),
            ));
            continue;
        };
        let node = nic
            .node
            .map_or("no NUMA node reported".to_string(), |n| format!("node {n}"));
        match nic.driver.as_deref() {
            Some("vfio-pci") => out.push(ok("nic", format!("port \"{name}\" {pci}: vfio-pci, {node}"))),
            Some(d) if BIFURCATED.contains(&d) => out.push(ok(
                "nic",
                format!("port \"{name}\" {pci}: {d} (DPDK drives it beside the kernel), {node}"),
            )),
            Some(d @ ("uio_pci_generic" | "igb_uio")) => out.push(bad(
                Level::Warn,
                "nic",
                format!("port \"{name}\" {pci}: bound to {d}, which has no IOMMU protection, {node}"),
                format!("scripts/bind-nics.sh bind {pci} (binds it to vfio-pci)"),
            )),
            Some(d) => out.push(bad(
                Level::Fail,
                "nic",
                format!("port \"{name}\" {pci}: still bound to the kernel driver {d}"),
                format!("scripts/bind-nics.sh bind {pci}"),
            )),
            None => out.push(bad(
                Level::Fail,
                "nic",
                format!("port \"{name}\" {pci}: bound to no driver"),
                format!("scripts/bind-nics.sh bind {pci}"),
            )),
        }
    }

    // ---- placement: the plan's warnings (node, isolation, shared cores)
    if let Some(p) = plan {
        let placement: Vec<_> = p.warnings.iter().filter(|w| !w.what.contains("hugepages")).collect();
        if placement.is_empty() {
            out.push(ok(
                "placement",
                "workers on their ports' nodes, isolated, each on a physical core of its own".into(),
            ));
        }
        for w in placement {
            out.push(bad(
                Level::Warn,
                "placement",
                format!("{} ({})", w.what, w.why),
                w.fix.clone(),
            ));
        }
    }

    // ---- directories sluiced writes: DPDK's runtime directory, the control socket
    match writable(&input.run_dir) {
        Ok(d) if d == input.run_dir => out.push(ok("run-dir", format!("{} is writable", d.display()))),
        Ok(d) => out.push(ok(
            "run-dir",
            format!("{} can be created in {}", input.run_dir.display(), d.display()),
        )),
        Err(e) => out.push(bad(
            Level::Fail,
            "run-dir",
            format!(
                "DPDK's runtime directory {} cannot be made: {e}",
                input.run_dir.display()
            ),
            "run sluiced as root (DPDK needs it for hugepages and devices)".into(),
        )),
    }
    let dir = input.socket.parent().unwrap_or(Path::new("/"));
    match writable(dir) {
        Err(e) => out.push(bad(
            Level::Fail,
            "socket",
            format!("the control socket {} cannot be made: {e}", input.socket.display()),
            format!(
                "mkdir -p {} as root, or set control.socket to a writable path",
                dir.display()
            ),
        )),
        Ok(_) if std::os::unix::net::UnixStream::connect(&input.socket).is_ok() => out.push(bad(
            Level::Fail,
            "socket",
            format!("{} is in use: another sluiced is running", input.socket.display()),
            format!(
                "stop it (sluicectl --socket {} show version tells which), or give this one another control.socket",
                input.socket.display()
            ),
        )),
        Ok(_) => out.push(ok("socket", format!("{} can be created", input.socket.display()))),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FakeTree;

    /// One node, CPUs 0-3 (each its own core), workers 2-3 isolated; 1024 free 2 MiB
    /// pages; a NIC at 0000:03:00.0 bound as `driver`.
    fn tree(name: &str, driver: Option<&str>) -> FakeTree {
        let mut t = FakeTree::new(name)
            .online_cpus("0-3")
            .node(0, "0-3")
            .node_hugepages(0, 2048, 1024, 1024)
            .isolated("2-3")
            .hugetlbfs(Some("/dev/hugepages"))
            .pmd("net_memif")
            .pci_nic("0000:03:00.0", 0, driver);
        for c in 0..4 {
            t = t.cpu(c, 0, c, &c.to_string());
        }
        t
    }

    fn input(root: &Path) -> DoctorInput {
        DoctorInput {
            dpdk_version: "DPDK 22.11.11".into(),
            pmds: vec!["net_memif".into()],
            linked_drivers: None,
            pci_ports: vec![("wan".into(), "0000:03:00.0".into())],
            hugepages_required: false,
            run_dir: root.join("run/dpdk"),
            socket: root.join("run/sluice/sluice.sock"),
        }
    }

    fn plan_for(topo: &Topology, workers: &[u32]) -> Plan {
        use crate::plan::tests::{input, port};
        crate::plan(topo, &input(vec![port("wan", Some(0), 2)], workers, 0)).unwrap()
    }

    fn levels(f: &[Finding]) -> Vec<(&'static str, Level)> {
        f.iter().map(|x| (x.check, x.level)).collect()
    }

    #[test]
    fn a_healthy_machine_is_all_ok() {
        let t = tree("doctor-ok", Some("vfio-pci")).iommu_groups(4);
        let (sys, topo) = (t.system(), t.system().topology());
        let f = doctor(&sys, &topo, Some(&plan_for(&topo, &[2, 3])), &input(t.root()));
        assert!(f.iter().all(|x| x.level == Level::Ok && x.fix.is_empty()), "{f:#?}");
        assert_eq!(
            levels(&f).iter().map(|x| x.0).collect::<Vec<_>>(),
            [
                "dpdk",
                "pmd",
                "hugepages",
                "hugepages",
                "iommu",
                "vfio",
                "nic",
                "placement",
                "run-dir",
                "socket"
            ]
        );
        assert_eq!(f[6].what, "port \"wan\" 0000:03:00.0: vfio-pci, node 0");
        std::fs::remove_dir_all(t.root()).unwrap();
    }

    #[test]
    fn each_problem_is_found_with_its_fix() {
        // Kernel-bound NIC, no IOMMU, no vfio-pci, no hugetlbfs, too few pages, a missing
        // driver, another DPDK, workers not isolated, a live socket, an unwritable run dir.
        let t = FakeTree::new("doctor-bad")
            .online_cpus("0-3")
            .node(0, "0-3")
            .node_hugepages(0, 2048, 64, 10)
            .hugetlbfs(None)
            .pmd("net_memif")
            .pci_nic("0000:03:00.0", 0, Some("ixgbe"));
        let (sys, topo) = (t.system(), t.system().topology());
        let mut inp = input(t.root());
        inp.dpdk_version = "DPDK 23.11.0".into();
        inp.pmds.push("net_af_xdp".into());
        inp.pci_ports.push(("lan".into(), "0000:81:00.0".into()));
        // A file where the run directory should be: nothing can be made under it.
        std::fs::write(t.root().join("run-file"), "").unwrap();
        inp.run_dir = t.root().join("run-file/dpdk");
        std::fs::create_dir_all(t.root().join("run/sluice")).unwrap();
        let _live = std::os::unix::net::UnixListener::bind(&inp.socket).unwrap();
        let f = doctor(&sys, &topo, Some(&plan_for(&topo, &[1, 2])), &inp);
        let find = |check: &str, level: Level, what: &str| {
            f.iter()
                .find(|x| x.check == check && x.level == level && x.what.contains(what))
                .unwrap_or_else(|| panic!("no {level:?} {check} {what:?} in {f:#?}"))
        };
        assert!(find("dpdk", Level::Warn, "23.11").fix.contains("apt-get install dpdk"));
        assert_eq!(find("pmd", Level::Ok, "net_memif").fix, "");
        let mut linked = input(t.root());
        linked.pmds.push("net_vhost".into());
        linked.linked_drivers = Some(vec!["net_memif".into()]);
        let lf = doctor(&sys, &topo, Some(&plan_for(&topo, &[1, 2])), &linked);
        assert!(lf
            .iter()
            .any(|x| x.check == "pmd" && x.level == Level::Ok && x.what == "net_memif: linked into sluiced"));
        assert!(lf.iter().any(|x| x.check == "pmd"
            && x.level == Level::Fail
            && x.what.starts_with("net_vhost: not linked")
            && x.fix.contains("SLUICE_DPDK_LINK=shared")));
        assert!(find("pmd", Level::Fail, "librte_net_af_xdp.so")
            .fix
            .contains("libdpdk-dev"));
        assert!(find("hugepages", Level::Warn, "no hugetlbfs")
            .fix
            .starts_with("scripts/hugepages.sh"));
        let short = find("hugepages", Level::Warn, "node 0: 20 MiB free, 264 MiB needed");
        assert!(
            short.fix.starts_with("raise node0.2M in hugepages.conf by 122"),
            "{}",
            short.fix
        );
        assert!(find("iommu", Level::Fail, "no IOMMU groups")
            .fix
            .contains("intel_iommu=on"));
        assert_eq!(find("vfio", Level::Fail, "not loaded").fix, "modprobe vfio-pci");
        assert_eq!(
            find("nic", Level::Fail, "still bound to the kernel driver ixgbe").fix,
            "scripts/bind-nics.sh bind 0000:03:00.0"
        );
        assert!(find("nic", Level::Fail, "no network device at 0000:81:00.0")
            .fix
            .contains("bind-nics.sh status"));
        assert!(find("placement", Level::Warn, "worker cores 1,2 are not isolated")
            .fix
            .contains("isolcpus=1,2"));
        assert!(find("run-dir", Level::Fail, "cannot be made").fix.contains("root"));
        assert!(find("socket", Level::Fail, "another sluiced is running")
            .fix
            .contains("sluicectl"));
        // Hugepages the configuration insists on: their lack is a failure.
        inp.hugepages_required = true;
        let f = doctor(&sys, &topo, None, &inp);
        assert!(f.iter().any(|x| x.check == "hugepages" && x.level == Level::Fail));
        std::fs::remove_dir_all(t.root()).unwrap();
    }

    #[test]
    fn bindings_between_ok_and_fail() {
        for (driver, level, what) in [
            (Some("mlx5_core"), Level::Ok, "DPDK drives it beside the kernel"),
            (Some("uio_pci_generic"), Level::Warn, "no IOMMU protection"),
            (None, Level::Fail, "bound to no driver"),
        ] {
            let t = tree(&format!("doctor-{}", driver.unwrap_or("none")), driver).noiommu();
            let (sys, topo) = (t.system(), t.system().topology());
            let f = doctor(&sys, &topo, None, &input(t.root()));
            let nic = f.iter().find(|x| x.check == "nic").unwrap();
            assert_eq!(nic.level, level, "{nic:?}");
            assert!(nic.what.contains(what), "{nic:?}");
            let iommu = f.iter().find(|x| x.check == "iommu").unwrap();
            assert_eq!(iommu.level, Level::Warn, "no-IOMMU mode: {iommu:?}");
            std::fs::remove_dir_all(t.root()).unwrap();
        }
    }
}
