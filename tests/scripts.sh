#!/usr/bin/env bash
# Tests of the shell scripts: hugepages.sh and irq-affinity.sh against fake trees, bind-nics.sh
# refusals.
# Prints "N passed, N failed" and exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pass=0
fail=0
check() {  # check NAME CONDITION-EXIT-CODE
    if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fake_root() {  # fake_root DIR NR
    mkdir -p "$1/sys/kernel/mm/hugepages/hugepages-2048kB"
    echo "$2" > "$1/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
}
conf="$tmp/hp.conf"
printf 'page_size = 2M  # comment\npages = 512\nmount = /mnt/huge\n' > "$conf"

# Reserves when fewer are reserved, and says so.
fake_root "$tmp/r1" 0
out=$("$here/scripts/hugepages.sh" --conf "$conf" --root "$tmp/r1" 2>&1)
[ "$(cat "$tmp/r1/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" = 512 ]; check "writes nr_hugepages" $?
grep -q "reserved 512 x 2M pages (was 0)" <<<"$out"; check "says what it did: $out" $?

# Idempotent, and never lowers a larger reservation.
fake_root "$tmp/r2" 2048
out=$("$here/scripts/hugepages.sh" --conf "$conf" --root "$tmp/r2" 2>&1)
[ "$(cat "$tmp/r2/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" = 2048 ]; check "keeps a larger reservation" $?
grep -q "already reserved" <<<"$out"; check "says nothing to do: $out" $?

# 1G pages the kernel does not offer: a warning and exit 0, or exit 1 with --strict.
printf 'page_size = 1G\npages = 4\n' > "$tmp/g.conf"
"$here/scripts/hugepages.sh" --conf "$tmp/g.conf" --root "$tmp/r1" >/dev/null 2>&1; check "missing size is not fatal" $?
"$here/scripts/hugepages.sh" --conf "$tmp/g.conf" --root "$tmp/r1" --strict >/dev/null 2>&1
[ $? -eq 1 ]; check "--strict makes it fatal" $?

# Bad configuration values are refused with exit 2.
printf 'page_size = 3M\n' > "$tmp/bad.conf"
"$here/scripts/hugepages.sh" --conf "$tmp/bad.conf" --root "$tmp/r1" >/dev/null 2>&1
[ $? -eq 2 ]; check "bad page size refused" $?
printf 'pages = many\n' > "$tmp/bad2.conf"
"$here/scripts/hugepages.sh" --conf "$tmp/bad2.conf" --root "$tmp/r1" >/dev/null 2>&1
[ $? -eq 2 ]; check "bad page count refused" $?

# The kernel reserving fewer than asked is reported (a file that ignores writes).
fake_root "$tmp/r3" 0
chmod 444 "$tmp/r3/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
if [ "$(id -u)" -ne 0 ]; then
    out=$("$here/scripts/hugepages.sh" --conf "$conf" --root "$tmp/r3" 2>&1)
    grep -q "cannot reserve" <<<"$out"; check "unwritable reported: $out" $?
fi

# Per-node counts: each node's own file, the machine-wide one left alone for that size.
node_root() {  # node_root DIR: two nodes with 2M and 1G pools, all at 0 but node1 2M at 300
    fake_root "$1" 0
    for n in 0 1; do
        for kb in 2048 1048576; do
            mkdir -p "$1/sys/devices/system/node/node$n/hugepages/hugepages-${kb}kB"
            echo 0 > "$1/sys/devices/system/node/node$n/hugepages/hugepages-${kb}kB/nr_hugepages"
        done
    done
    echo 300 > "$1/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"
}
node_root "$tmp/n1"
printf 'page_size = 2M\npages = 512\nnode0.2M = 256  # local\nnode1.2M = 128\nnode1.1G = 2\n' > "$tmp/n.conf"
out=$("$here/scripts/hugepages.sh" --conf "$tmp/n.conf" --root "$tmp/n1" 2>&1)
nr() { cat "$tmp/n1/sys/devices/system/node/node$1/hugepages/hugepages-$2kB/nr_hugepages"; }
[ "$(nr 0 2048)" = 256 ] && [ "$(nr 1 1048576)" = 2 ]; check "per-node counts written: $out" $?
[ "$(nr 1 2048)" = 300 ]; check "a node's larger reservation kept" $?
[ "$(nr 0 1048576)" = 0 ]; check "a node without a line untouched" $?
[ "$(cat "$tmp/n1/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")" = 0 ]; check "node lines replace pages" $?
grep -q "reserved 2 x 1G pages on node 1 (was 0)" <<<"$out"; check "says what it did per node: $out" $?
# A node the machine does not have: reported (fatal with --strict); a bad line: refused.
printf 'node7.2M = 8\n' > "$tmp/n7.conf"
out=$("$here/scripts/hugepages.sh" --conf "$tmp/n7.conf" --root "$tmp/n1" --strict 2>&1)
[ $? -eq 1 ] && grep -q "no 2M pages on node 7" <<<"$out"; check "missing node reported: $out" $?
printf 'node0.3M = 8\n' > "$tmp/nb.conf"
out=$("$here/scripts/hugepages.sh" --conf "$tmp/nb.conf" --root "$tmp/n1" 2>&1)
[ $? -eq 2 ] && grep -q "expected nodeN.2M = COUNT" <<<"$out"; check "bad node line refused: $out" $?

# irq-affinity: IRQs, the default affinity and RPS/XPS masks lose the worker cores.
irq_root() {  # irq_root DIR: 4 CPUs; IRQs 10 (0-3, eth0-rx), 11 (0), 12 (2); masks
    local r=$1
    mkdir -p "$r/sys/devices/system/cpu" "$r/proc/irq/10/eth0-rx" "$r/proc/irq/11" "$r/proc/irq/12"
    echo 0-3 > "$r/sys/devices/system/cpu/online"
    echo 0-3 > "$r/proc/irq/10/smp_affinity_list"
    echo 0 > "$r/proc/irq/11/smp_affinity_list"
    echo 2 > "$r/proc/irq/12/smp_affinity_list"
    echo f > "$r/proc/irq/default_smp_affinity"
    mkdir -p "$r/sys/class/net/eth0/queues/rx-0" "$r/sys/class/net/eth0/queues/tx-0" "$r/sys/class/net/eth1/queues/rx-0"
    echo e > "$r/sys/class/net/eth0/queues/rx-0/rps_cpus"
    echo 0 > "$r/sys/class/net/eth0/queues/tx-0/xps_cpus"
    echo 00000000,0000000c > "$r/sys/class/net/eth1/queues/rx-0/rps_cpus"
}
irq_root "$tmp/i1"
out=$("$here/scripts/irq-affinity.sh" --cores 2-3 --root "$tmp/i1" 2>&1)
expected="worker cores: 2,3; interrupts and packet steering go to: 0,1
irq 10 (eth0-rx): 0-3 -> 0,1 (dry run)
irq 12: 2 -> 0,1 (dry run)
default irq affinity: f -> 3 (dry run)
eth0 rx-0/rps_cpus: e -> 2 (dry run)
eth1 rx-0/rps_cpus: 00000000,0000000c -> 00000000,00000003 (dry run)
5 changes shown; run with --apply (as root) to make them"
[ "$out" = "$expected" ]; check "irq-affinity dry run shows before and after: $out" $?
[ "$(cat "$tmp/i1/proc/irq/10/smp_affinity_list")" = 0-3 ]; check "a dry run changes nothing" $?
out=$("$here/scripts/irq-affinity.sh" --cores 2-3 --root "$tmp/i1" --apply 2>&1)
[ "$(cat "$tmp/i1/proc/irq/10/smp_affinity_list")" = 0,1 ] && [ "$(cat "$tmp/i1/proc/irq/11/smp_affinity_list")" = 0 ] \
    && [ "$(cat "$tmp/i1/proc/irq/default_smp_affinity")" = 3 ] \
    && [ "$(cat "$tmp/i1/sys/class/net/eth1/queues/rx-0/rps_cpus")" = 00000000,00000003 ] \
    && [ "$(cat "$tmp/i1/sys/class/net/eth0/queues/tx-0/xps_cpus")" = 0 ]; check "irq-affinity --apply: $out" $?
out=$("$here/scripts/irq-affinity.sh" --cores 2-3 --root "$tmp/i1" 2>&1)
grep -q "no change needed" <<<"$out"; check "irq-affinity is idempotent: $out" $?
printf '[eal]\nworkers = [1, 3]\n' > "$tmp/w.toml"
out=$("$here/scripts/irq-affinity.sh" --config "$tmp/w.toml" --root "$tmp/i1" 2>&1)
grep -q "^worker cores: 1,3; interrupts and packet steering go to: 0,2$" <<<"$out"; check "irq-affinity reads eal.workers: $out" $?
"$here/scripts/irq-affinity.sh" --cores 0-3 --root "$tmp/i1" >/dev/null 2>&1
[ $? -eq 2 ]; check "irq-affinity refuses taking every core" $?
"$here/scripts/irq-affinity.sh" --cores 7 --root "$tmp/i1" >/dev/null 2>&1
[ $? -eq 2 ]; check "irq-affinity refuses an offline core" $?
"$here/scripts/irq-affinity.sh" --root "$tmp/i1" >/dev/null 2>&1
[ $? -eq 2 ]; check "irq-affinity needs cores" $?

# bind-nics: usage errors and unknown devices are refused before anything is touched.
"$here/scripts/bind-nics.sh" >/dev/null 2>&1
[ $? -eq 2 ]; check "bind-nics without a command" $?
"$here/scripts/bind-nics.sh" bind >/dev/null 2>&1
[ $? -eq 2 ]; check "bind-nics bind without a device" $?
out=$("$here/scripts/bind-nics.sh" bind 0000:ff:1f.7 2>&1)
[ $? -eq 1 ] && grep -q "no PCI device" <<<"$out"; check "bind-nics unknown device: $out" $?
# An interface with an address is refused without --force.
for n in /sys/class/net/*; do
    dev=$(readlink -f "$n/device" 2>/dev/null) || continue
    pci=$(basename "$dev")
    [[ "$pci" =~ ^[0-9a-f]{4}: ]] || continue
    if [ -n "$(ip -o addr show dev "$(basename "$n")" 2>/dev/null)" ]; then
        out=$("$here/scripts/bind-nics.sh" bind "$pci" 2>&1)
        [ $? -eq 1 ] && grep -q "looks in use" <<<"$out"; check "bind-nics refuses $pci in use: $out" $?
        break
    fi
done

echo "scripts: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
