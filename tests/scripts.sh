#!/usr/bin/env bash
# Tests of the shell scripts: hugepages.sh against fake sysfs trees, bind-nics.sh refusals.
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
