#!/usr/bin/env bash
# Installs what Sluice needs from Debian's packages, and only what is missing.
#   DPDK (libraries, PMDs, testpmd, the l3fwd example sources), libclang and pkg-config
#   for the bindings, and the tools the tests and benchmarks use (prometheus and promtool,
#   nfcapd and nfdump for the telemetry tests).
# Needs root (or sudo) when something is missing. Idempotent.
set -euo pipefail

PACKAGES=(dpdk dpdk-dev libdpdk-dev dpdk-doc libclang-dev pkg-config
          build-essential python3 iproute2 iputils-ping tcpdump procps
          prometheus nfdump)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: everything is installed (${PACKAGES[*]})"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install-deps: missing ${missing[*]}; run as root" >&2; exit 1; }
        SUDO=sudo
    fi
    echo "install-deps: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "install-deps: installed ${missing[*]}"
fi

if ! command -v cargo >/dev/null && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
    echo "install-deps: no Rust toolchain (cargo) found; install one with rustup (https://rustup.rs)" >&2
    exit 1
fi
