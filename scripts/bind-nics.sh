#!/usr/bin/env bash
# Binds NICs to DPDK (vfio-pci) and back, around dpdk-devbind.py.
#
# usage: scripts/bind-nics.sh status
#        scripts/bind-nics.sh bind PCI... [--force]    bind to vfio-pci (loads the module)
#        scripts/bind-nics.sh unbind PCI... [--driver D] give back to the kernel driver
#
# bind refuses an interface that has an IP address or a route (it is probably in use, maybe
# by your SSH session) unless --force is given.
set -euo pipefail

devbind=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
[ -n "$devbind" ] || { echo "bind-nics: dpdk-devbind.py not found; run scripts/install-deps.sh" >&2; exit 1; }

usage() { sed -n '2,9p' "$0"; exit 2; }
[ $# -ge 1 ] || usage
cmd=$1; shift
force=0
driver=""
devs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --force) force=1; shift ;;
        --driver) driver="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) devs+=("$1"); shift ;;
    esac
done

full_pci() {  # 03:00.0 -> 0000:03:00.0
    if [[ "$1" =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then echo "0000:$1"; else echo "$1"; fi
}

case "$cmd" in
    status)
        "$devbind" --status-dev net
        ;;
    bind)
        [ ${#devs[@]} -ge 1 ] || usage
        for d in "${devs[@]}"; do
            pci=$(full_pci "$d")
            [ -d "/sys/bus/pci/devices/$pci" ] || { echo "bind-nics: no PCI device $pci" >&2; exit 1; }
            for n in /sys/bus/pci/devices/"$pci"/net/*; do
                [ -e "$n" ] || continue
                ifname=$(basename "$n")
                addrs=$(ip -o addr show dev "$ifname" 2>/dev/null | awk '{print $4}' | tr '\n' ' ')
                routes=$(ip route show dev "$ifname" 2>/dev/null | head -n 3 | tr '\n' ';')
                if [ -n "$addrs$routes" ] && [ $force -eq 0 ]; then
                    echo "bind-nics: $pci is $ifname with addresses [$addrs] routes [$routes]; it looks in use. Use --force to bind it anyway." >&2
                    exit 1
                fi
                ip link set dev "$ifname" down 2>/dev/null || true
            done
            if ! lsmod | grep -q '^vfio_pci'; then
                modprobe vfio-pci || { echo "bind-nics: cannot load vfio-pci (is the IOMMU on? intel_iommu=on / amd_iommu=on)" >&2; exit 1; }
                echo "bind-nics: loaded vfio-pci"
            fi
            flags=()
            [ $force -eq 1 ] && flags+=(--force)
            "$devbind" --bind=vfio-pci "${flags[@]}" "$pci"
            echo "bind-nics: $pci bound to vfio-pci"
        done
        ;;
    unbind)
        [ ${#devs[@]} -ge 1 ] || usage
        for d in "${devs[@]}"; do
            pci=$(full_pci "$d")
            drv=$driver
            if [ -z "$drv" ]; then
                # dpdk-devbind lists the kernel driver a device could use as unused=...
                drv=$("$devbind" --status-dev net | grep "^$pci" | sed -n 's/.*unused=\([^, ]*\).*/\1/p' | head -n 1)
                drv=${drv%%,*}
            fi
            [ -n "$drv" ] && [ "$drv" != "vfio-pci" ] || { echo "bind-nics: cannot tell $pci's kernel driver; give --driver NAME" >&2; exit 1; }
            "$devbind" --bind="$drv" "$pci"
            echo "bind-nics: $pci given back to $drv"
        done
        ;;
    *) usage ;;
esac
