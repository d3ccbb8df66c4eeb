//! Generates bindings to the system DPDK and compiles the C shim.
//!
//! Everything comes from `pkg-config libdpdk` (Debian: `libdpdk-dev`); DPDK is linked
//! statically when it can be (see `link`). The exact cflags go
//! to both bindgen and the shim: they carry `-include rte_config.h` and `-march=...`,
//! without which DPDK's inline headers do not compile.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

fn fail(msg: &str) -> ! {
    eprintln!("\n==== dpdk-sys: {msg}\n");
    println!("cargo:warning=dpdk-sys: {msg}");
    exit(1);
}

fn pkg_config(args: &[&str]) -> String {
    let out = Command::new("pkg-config").args(args).arg("libdpdk").output();
    match out {
        Err(e) => fail(&format!(
            "cannot run pkg-config ({e}); install it: apt-get install pkg-config \
             (or run scripts/install-deps.sh)"
        )),
        Ok(o) if !o.status.success() => fail(&format!(
            "pkg-config cannot find libdpdk: {}install DPDK's development files: \
             apt-get install libdpdk-dev (or run scripts/install-deps.sh)",
            String::from_utf8_lossy(&o.stderr)
        )),
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
    }
}

/// bindgen loads libclang at run time and panics with a long backtrace when it is missing;
/// look for it first so the message names the package. Pin LLVM 14 (Debian 12's) when it is
/// there, since two LLVMs side by side can mix builtin headers.
fn find_libclang() {
    if let Ok(p) = env::var("LIBCLANG_PATH") {
        if Path::new(&p).exists() {
            return;
        }
    }
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/usr/lib/llvm-14/lib")];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        let mut more: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path().join("lib"))
            .filter(|p| p.to_string_lossy().contains("llvm-"))
            .collect();
        more.sort();
        dirs.extend(more.into_iter().rev());
    }
    dirs.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    for d in dirs {
        let has = std::fs::read_dir(&d)
            .map(|rd| {
                rd.flatten().any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("libclang") && n.contains(".so") && !n.contains("cpp")
                })
            })
            .unwrap_or(false);
        if has {
            env::set_var("LIBCLANG_PATH", &d);
            return;
        }
    }
    fail("libclang not found (bindgen needs it); install it: apt-get install libclang-dev");
}

fn main() {
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/wrapper.h");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=SLUICE_DPDK_LINK");

    let version = pkg_config(&["--modversion"]);
    let major: u32 = version.split('.').next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if major < 21 {
        fail(&format!(
            "DPDK {version} is too old; Sluice needs DPDK 21.11 or newer (Debian 12 ships 22.11)"
        ));
    }
    let cflags: Vec<String> = pkg_config(&["--cflags"]).split_whitespace().map(String::from).collect();

    find_libclang();

    // The shim: compiled with exactly DPDK's flags.
    let mut cc = cc::Build::new();
    cc.file("shim/shim.c").include("shim").opt_level(3).warnings(false);
    let mut i = 0;
    while i < cflags.len() {
        // `-include rte_config.h` is two words; keep them together.
        if cflags[i] == "-include" && i + 1 < cflags.len() {
            cc.flag("-include").flag(&cflags[i + 1]);
            i += 2;
            continue;
        }
        cc.flag(&cflags[i]);
        i += 1;
    }
    cc.compile("sluice_dpdk_shim");

    write_linked(link(&version));

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut b = bindgen::Builder::default()
        .header("shim/wrapper.h")
        .clang_arg("-Ishim")
        .allowlist_function("rte_.*")
        .allowlist_function("sluice_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // Reordered by a statically linked primary to match shared secondaries.
        .allowlist_var("rte_mempool_ops_table")
        .blocklist_type("max_align_t")
        // Aligned structs inside packed ones are rejected by rustc (E0588).
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false);
    for f in &cflags {
        b = b.clang_arg(f);
    }
    let bindings = match b.generate() {
        Ok(b) => b,
        Err(e) => fail(&format!(
            "bindgen could not read DPDK's headers ({e}); check that libdpdk-dev and libclang-dev are installed"
        )),
    };
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");
}

/// Driver classes Sluice never opens: left out of a static link (a third of the archives'
/// size). Buses, mempool handlers, common code and every net PMD stay in.
const UNUSED_DRIVERS: &[&str] = &[
    "librte_crypto_",
    "librte_compress_",
    "librte_regex_",
    "librte_vdpa_",
    "librte_event_",
    "librte_baseband_",
    "librte_raw_",
    "librte_dma_",
];

/// Links DPDK statically when its archives are installed (Debian's libdpdk-dev has
/// them), otherwise shared; `SLUICE_DPDK_LINK=shared|static` chooses.
///
/// Static is the default because it is faster: the PMDs, EAL and the mbuf library become
/// one executable, so what a driver reaches of EAL's per-lcore state is a plain
/// thread-local load instead of a `__tls_get_addr` call per access, and calls between
/// them need no PLT. The drivers are linked whole (their constructors register them;
/// without `--whole-archive` the linker drops them and EAL cannot find the device).
/// Shared: Debian's EAL loads every PMD from its plugin directory by itself.
///
/// Returns the network drivers linked in when static, `None` when shared.
fn link(version: &str) -> Option<Vec<String>> {
    let libdir = pkg_config(&["--variable=libdir"]);
    let choice = env::var("SLUICE_DPDK_LINK").unwrap_or_default();
    let have_static = Path::new(&libdir).join("librte_eal.a").exists();
    let use_static = match choice.as_str() {
        "shared" => false,
        "static" if !have_static => fail(&format!(
            "SLUICE_DPDK_LINK=static, but DPDK {version}'s static libraries are not in {libdir}"
        )),
        "static" => true,
        "" => have_static,
        other => fail(&format!("SLUICE_DPDK_LINK={other}: use `static` or `shared`")),
    };
    println!("cargo:rustc-link-search=native={libdir}");
    if !use_static {
        for tok in pkg_config(&["--libs"]).split_whitespace() {
            if let Some(l) = tok.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={l}");
            } else if let Some(p) = tok.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={p}");
            }
        }
        // rte_vdev_init lives in the vdev bus library, which libdpdk.pc does not list.
        println!("cargo:rustc-link-lib=dylib=rte_bus_vdev");
        return None;
    }
    let mut linked = Vec::new();
    let mut whole = false;
    let mut system = Vec::new();
    let libs = pkg_config(&["--static", "--libs"]);
    for tok in libs.split_whitespace() {
        match tok {
            "-Wl,--whole-archive" => whole = true,
            "-Wl,--no-whole-archive" => whole = false,
            _ => {}
        }
        if let Some(archive) = tok.strip_prefix("-l:") {
            if UNUSED_DRIVERS.iter().any(|d| archive.starts_with(d)) {
                continue;
            }
            let name = archive
                .strip_prefix("lib")
                .and_then(|a| a.strip_suffix(".a"))
                .unwrap_or(archive);
            let modifiers = if whole { "+whole-archive,-bundle" } else { "-bundle" };
            println!("cargo:rustc-link-lib=static:{modifiers}={name}");
            if let Some(driver) = name.strip_prefix("rte_").filter(|d| d.starts_with("net_")) {
                linked.push(driver.to_string());
            }
        } else if let Some(p) = tok.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={p}");
        } else if let Some(l) = tok.strip_prefix("-l") {
            // pkg-config also gives `-lrte_*`, the same libraries by their shared names.
            if !l.starts_with("rte_") && !system.contains(&l) {
                system.push(l);
            }
        }
    }
    // The libraries the archives call into, linked shared. pkg-config also lists what
    // those libraries need for a fully static link (rdma-core's providers, systemd): not
    // needed when they are shared, and often not installed, so only the ones present go.
    let search = [
        PathBuf::from(&libdir),
        PathBuf::from("/usr/lib"),
        PathBuf::from("/lib/x86_64-linux-gnu"),
    ];
    for l in system {
        // glibc's parts and libatomic are found by the compiler driver, not in these paths.
        let toolchain = matches!(l, "dl" | "pthread" | "rt" | "m" | "atomic");
        if toolchain || search.iter().any(|d| d.join(format!("lib{l}.so")).exists()) {
            println!("cargo:rustc-link-lib=dylib={l}");
        }
    }
    Some(linked)
}

/// `linked.rs` for `lib.rs`: how DPDK was linked (`link`'s answer).
fn write_linked(linked: Option<Vec<String>>) {
    let drivers = linked.as_deref().unwrap_or_default();
    let list: Vec<String> = drivers.iter().map(|d| format!("{d:?}")).collect();
    let text = format!(
        "pub const LINKED_STATIC: bool = {};\npub const LINKED_NET_DRIVERS: &[&str] = &[{}];\n",
        linked.is_some(),
        list.join(", ")
    );
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    std::fs::write(out.join("linked.rs"), text).expect("write linked.rs");
}
