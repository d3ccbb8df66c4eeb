//! `sluiced`: the Sluice appliance daemon.

use clap::Parser;
use dataplane::app::{self, Options};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "sluiced", version, about = "Sluice: kernel-bypass packet processing on DPDK")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// off, error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_parser = control::logging::parse_level)]
    log_level: log::LevelFilter,
    /// Print a line of per-port rates every SECS seconds (0: never).
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    stats_interval: f64,
    /// Stop by itself after SECS seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Write the final counters as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,
    /// Before forwarding, wait up to SECS for every port's link to come up (0: do not wait).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    link_wait: f64,
    /// Validate the configuration and exit.
    #[arg(long)]
    check_config: bool,
    /// Print the lcore plan (workers, queues, NUMA nodes, hugepages per node, placement
    /// warnings with their fixes) and exit, without starting anything.
    #[arg(long)]
    print_plan: bool,
    /// With --print-plan: as JSON.
    #[arg(long, requires = "print_plan")]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check the machine (and, with a configuration, what it needs) before starting: DPDK
    /// and its drivers, hugepages per node, IOMMU and vfio-pci, each PCI NIC's binding and
    /// node, core placement, and the directories sluiced writes. Each finding is OK, WARN
    /// or FAIL with the command that fixes it; the exit status is 1 on any FAIL.
    Doctor {
        /// The TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    dataplane::dpdk::mempool_ops_probe_hook();
    let cli = Cli::parse();
    control::logging::init(cli.log_level);
    if let Err(e) = dataplane::dpdk::log_to_logger() {
        log::warn!("DPDK's messages keep DPDK's own format and streams: {e}");
    }
    if let Some(Command::Doctor { config, json }) = &cli.command {
        std::process::exit(doctor(config.as_deref(), *json));
    }
    let Some(config_path) = cli.config.clone() else {
        eprintln!("sluiced: --config FILE is required (or: sluiced doctor)");
        std::process::exit(app::EXIT_CONFIG);
    };
    if cli.check_config {
        match control::Config::load(&config_path) {
            Ok(c) => {
                // Compile what can still be refused at start-up (classifier, LPM).
                if let Err(e) = dataplane::tables::check(&c) {
                    eprintln!("sluiced: {}: {e}", config_path.display());
                    std::process::exit(app::EXIT_CONFIG);
                }
                println!(
                    "{}: OK ({} ports, {} routes, {} workers, {} classes, {} rules, {} paths in {} groups)",
                    config_path.display(),
                    c.ports.len(),
                    c.routes.len(),
                    c.eal.workers.len(),
                    c.classes.len(),
                    c.rules.len(),
                    c.paths.len(),
                    c.groups.len()
                );
                std::process::exit(app::EXIT_OK);
            }
            Err(e) => {
                eprintln!("sluiced: {e}");
                std::process::exit(app::EXIT_CONFIG);
            }
        }
    }
    if cli.print_plan {
        std::process::exit(print_plan(&config_path, cli.json));
    }
    if cli.stats_interval < 0.0 || !cli.stats_interval.is_finite() {
        eprintln!("sluiced: --stats-interval must be a number of seconds, 0 or more");
        std::process::exit(app::EXIT_CONFIG);
    }
    let duration = match cli.duration {
        Some(d) if d > 0.0 && d.is_finite() => Some(Duration::from_secs_f64(d)),
        Some(_) => {
            eprintln!("sluiced: --duration must be a positive number of seconds");
            std::process::exit(app::EXIT_CONFIG);
        }
        None => None,
    };
    if cli.link_wait < 0.0 || !cli.link_wait.is_finite() {
        eprintln!("sluiced: --link-wait must be a number of seconds, 0 or more");
        std::process::exit(app::EXIT_CONFIG);
    }
    let status = app::run(Options {
        config: config_path,
        stats_interval: cli.stats_interval,
        duration,
        stats_file: cli.stats_file,
        link_wait: Duration::from_secs_f64(cli.link_wait),
    });
    std::process::exit(status);
}

/// `--print-plan`: the plan from the configuration and this machine's sysfs.
fn print_plan(config: &std::path::Path, json: bool) -> i32 {
    let cfg = match control::Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluiced: {e}");
            return app::EXIT_CONFIG;
        }
    };
    let sys = numa::System::default();
    match dataplane::placement::plan_from_sysfs(&cfg, &sys.topology()) {
        Ok(p) if json => {
            println!("{}", dataplane::placement::to_json(&cfg, &p));
            app::EXIT_OK
        }
        Ok(p) => {
            for line in dataplane::placement::to_text(&cfg, &p) {
                println!("{line}");
            }
            app::EXIT_OK
        }
        Err(e) => {
            eprintln!("sluiced: {}: {e}", config.display());
            app::EXIT_CONFIG
        }
    }
}

/// `sluiced doctor`: prints the findings; 1 on any FAIL, 2 when the configuration is bad.
fn doctor(config: Option<&std::path::Path>, json: bool) -> i32 {
    use numa::doctor::Level;
    let cfg = match config.map(control::Config::load) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("sluiced: {e}");
            return app::EXIT_CONFIG;
        }
    };
    let findings = dataplane::placement::doctor(cfg.as_ref(), &numa::System::default());
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| serde_json::json!({"level": f.level.name(), "check": f.check, "what": f.what, "fix": f.fix}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"findings": list, "fail": failed, "warn": warned})
        );
    } else {
        for f in &findings {
            println!("{:<4}  {:<9}  {}", f.level.name(), f.check, f.what);
            if !f.fix.is_empty() {
                println!("{:<4}  {:<9}  fix: {}", "", "", f.fix);
            }
        }
        println!(
            "doctor: {failed} FAIL, {warned} WARN, {} OK",
            findings.len() - failed - warned
        );
    }
    if failed > 0 {
        1
    } else {
        0
    }
}
