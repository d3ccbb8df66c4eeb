//! Decides EAL's arguments from the configuration and the machine: cores, file prefix,
//! devices, and memory — hugepages when enough are free and mounted, `--no-huge` with a
//! warning otherwise (or an error when the configuration requires hugepages). Pure logic.

use crate::dpdk::MBUF_DATA_ROOM;
use control::config::{Config, HugepageMode};
use numa::System;

/// Mbufs of slack per pool beyond descriptors and caches: the control thread's packets,
/// drivers that hold packets of their own (net_pcap's infinite_rx keeps its file in mbufs).
pub const MBUF_SLACK: u32 = 8192;
/// EAL, ethdev, rings and drivers beyond the mbufs, in MiB.
pub const FIXED_OVERHEAD_MB: u64 = 192;
/// One mbuf in memory: data room, the rte_mbuf header and the mempool object header.
pub const MBUF_FOOTPRINT: u64 = MBUF_DATA_ROOM as u64 + 128 + 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalPlan {
    pub args: Vec<String>,
    pub no_huge: bool,
    /// Mbufs in all pools together.
    pub mbufs: u32,
    /// Memory EAL needs (MiB), as estimated.
    pub memory_mb: u64,
    /// A warning to log (the `--no-huge` fallback).
    pub warning: Option<String>,
}

/// DPDK's log level for ours: EAL's informational chatter only when debugging.
fn dpdk_log_level(level: log::LevelFilter) -> u32 {
    match level {
        log::LevelFilter::Off | log::LevelFilter::Error => 4,
        log::LevelFilter::Warn | log::LevelFilter::Info => 5,
        log::LevelFilter::Debug => 7,
        log::LevelFilter::Trace => 8,
    }
}

/// EAL's arguments for `cfg` on `sys`, whose pools hold `mbufs` in all
/// ([`crate::placement::mbufs_total`]).
pub fn plan(cfg: &Config, sys: &System, mbufs: u32, level: log::LevelFilter) -> Result<EalPlan, String> {
    let estimate = FIXED_OVERHEAD_MB + (mbufs as u64 * MBUF_FOOTPRINT).div_ceil(1 << 20);
    let memory_mb = cfg.eal.memory_mb.map(u64::from).unwrap_or(estimate.max(512));
    let free = sys.free_hugepage_mib();
    let (no_huge, warning) = match cfg.eal.hugepages {
        HugepageMode::Off => (true, None),
        HugepageMode::On if free < memory_mb => {
            return Err(format!(
                "eal.hugepages = \"on\" but only {free} MiB of hugepages are free and mounted, {memory_mb} MiB are needed; \
                 reserve more (scripts/hugepages.sh) or set hugepages = \"auto\""
            ))
        }
        HugepageMode::On => (false, None),
        HugepageMode::Auto if free < memory_mb => (
            true,
            Some(format!(
                "only {free} MiB of hugepages are free and mounted ({memory_mb} MiB needed): running with --no-huge, \
                 which is slower; reserve hugepages with scripts/hugepages.sh"
            )),
        ),
        HugepageMode::Auto => (false, None),
    };
    let mut lcores: Vec<u32> = vec![cfg.eal.control_core];
    lcores.extend(&cfg.eal.workers);
    let mut args: Vec<String> = vec![
        "sluiced".into(),
        "-l".into(),
        lcores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
        "--main-lcore".into(),
        cfg.eal.control_core.to_string(),
        "--file-prefix".into(),
        cfg.eal.file_prefix.clone(),
        // Per log type, not the global level: the global level caps every type, which would
        // silence a driver's debug log asked for in eal.extra_args.
        format!("--log-level=*:{}", dpdk_log_level(level)),
    ];
    if no_huge {
        args.extend(["--no-huge".into(), "-m".into(), memory_mb.to_string()]);
    } else if let Some(m) = cfg.eal.memory_mb {
        args.extend(["-m".into(), m.to_string()]);
    }
    let mut any_pci = false;
    for p in &cfg.ports {
        if p.is_pci() {
            any_pci = true;
            args.extend(["-a".into(), p.device.clone()]);
        } else {
            args.extend(["--vdev".into(), p.device.clone()]);
        }
    }
    if !any_pci {
        // Do not probe NICs that other software may be using.
        args.push("--no-pci".into());
    }
    if dpdk_sys::LINKED_STATIC {
        // `-d FILE` loads a shared plugin, which brings its own copy of DPDK with it.
        if let Some(a) = cfg.eal.extra_args.iter().find(|a| a.starts_with("-d")) {
            return Err(format!(
                "eal.extra_args: {a:?} loads a DPDK plugin, which this build cannot use: it has DPDK and \
                 every driver linked in; build with SLUICE_DPDK_LINK=shared to load plugins"
            ));
        }
    }
    args.extend(cfg.eal.extra_args.iter().cloned());
    Ok(EalPlan {
        args,
        no_huge,
        mbufs,
        memory_mb,
        warning,
    })
}

/// The name ethdev gives the device of a port's `device` string.
pub fn device_name(device: &str) -> String {
    let first = device.split(',').next().unwrap_or("").trim();
    if control::config::is_pci_address(first) && first.len() == 7 {
        format!("0000:{first}")
    } else {
        first.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(name: &str, free_2m: u64, mounted: bool) -> System {
        numa::FakeTree::new(&format!("eal-{name}"))
            .online_cpus("0-3")
            .hugepages(2048, free_2m, free_2m)
            .hugetlbfs(mounted.then_some("/dev/hugepages"))
            .system()
    }

    fn cfg(sys: &System, eal_extra: &str) -> Config {
        let text = format!(
            "[eal]\nworkers = [1, 2]\nfile_prefix = \"x1\"\n{eal_extra}\n\
             [[ports]]\nname = \"a\"\ndevice = \"net_pcap0,rx_pcap=in.pcap\"\n\
             [[ports]]\nname = \"b\"\ndevice = \"03:00.1\"\n"
        );
        Config::parse(&text, "t.toml", sys).unwrap()
    }

    #[test]
    fn hugepages_when_enough() {
        let sys = fake("enough", 1024, true);
        let p = plan(&cfg(&sys, ""), &sys, 32767, log::LevelFilter::Info).unwrap();
        assert!(!p.no_huge);
        assert!(p.warning.is_none());
        assert_eq!(
            p.args[..8],
            [
                "sluiced",
                "-l",
                "0,1,2",
                "--main-lcore",
                "0",
                "--file-prefix",
                "x1",
                "--log-level=*:5"
            ]
            .map(String::from)
        );
        assert!(p.args.windows(2).any(|w| w == ["--vdev", "net_pcap0,rx_pcap=in.pcap"]));
        assert!(p.args.windows(2).any(|w| w == ["-a", "03:00.1"]));
        assert!(!p.args.contains(&"--no-pci".to_string()));
        assert!(!p.args.contains(&"-m".to_string()));
    }

    #[test]
    fn plugins_only_in_a_shared_build() {
        let sys = fake("plugins", 1024, true);
        let c = cfg(&sys, "extra_args = [\"-d\", \"/opt/pmds/librte_net_x.so\"]");
        let r = plan(&c, &sys, 32767, log::LevelFilter::Info);
        if dpdk_sys::LINKED_STATIC {
            let err = r.unwrap_err();
            assert!(
                err.contains("\"-d\"") && err.contains("SLUICE_DPDK_LINK=shared"),
                "{err}"
            );
        } else {
            assert!(r
                .unwrap()
                .args
                .ends_with(&["-d".into(), "/opt/pmds/librte_net_x.so".into()]));
        }
    }

    #[test]
    fn falls_back_without_hugepages() {
        let sys = fake("none", 1024, false);
        let p = plan(&cfg(&sys, ""), &sys, 32767, log::LevelFilter::Info).unwrap();
        assert!(p.no_huge);
        assert!(p.warning.as_ref().unwrap().contains("--no-huge"));
        assert!(p
            .args
            .windows(2)
            .any(|w| w[0] == "-m" && w[1] == p.memory_mb.to_string()));
        let sys = fake("few", 10, true);
        assert!(
            plan(&cfg(&sys, ""), &sys, 32767, log::LevelFilter::Info)
                .unwrap()
                .no_huge
        );
        let err = plan(&cfg(&sys, "hugepages = \"on\""), &sys, 32767, log::LevelFilter::Info).unwrap_err();
        assert!(err.contains("20 MiB") && err.contains("hugepages.sh"), "{err}");
        let p = plan(
            &cfg(&sys, "hugepages = \"off\"\nmemory_mb = 700"),
            &sys,
            32,
            log::LevelFilter::Info,
        )
        .unwrap();
        assert!(p.no_huge && p.warning.is_none());
        assert!(p.args.windows(2).any(|w| w == ["-m", "700"]));
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name("net_pcap0,rx_pcap=a.pcap"), "net_pcap0");
        assert_eq!(device_name("03:00.1"), "0000:03:00.1");
        assert_eq!(device_name("0000:03:00.1"), "0000:03:00.1");
    }
}
