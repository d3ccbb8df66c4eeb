#!/usr/bin/env bash
# Applies hugepages.conf: reserves hugepages and mounts hugetlbfs. Idempotent; says what it
# did. Where pages cannot be reserved it says so and exits 0 (sluiced then falls back to
# --no-huge) unless --strict is given.
#
# Per-node lines (nodeN.2M, nodeN.1G) reserve on each NUMA node instead.
#
# usage: scripts/hugepages.sh [--conf FILE] [--root DIR] [--strict]
#   --root DIR  operate on a fake tree (DIR/sys/..., DIR/proc/mounts) for tests; no mount.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
conf="$here/hugepages.conf"
root=""
strict=0
while [ $# -gt 0 ]; do
    case "$1" in
        --conf) conf="$2"; shift 2 ;;
        --root) root="$2"; shift 2 ;;
        --strict) strict=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "hugepages: unknown argument $1" >&2; exit 2 ;;
    esac
done

value() {  # value KEY DEFAULT
    local v
    v=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\([^#[:space:]]*\).*/\1/p" "$conf" | tail -n 1)
    echo "${v:-$2}"
}
[ -r "$conf" ] || { echo "hugepages: cannot read $conf" >&2; exit 2; }
size=$(value page_size 2M)
pages=$(value pages 1024)
mnt=$(value mount /dev/hugepages)
case "$size" in
    2M|2m|2048k|2048kB) kb=2048; size=2M ;;
    1G|1g|1048576k|1048576kB) kb=1048576; size=1G ;;
    *) echo "hugepages: page_size '$size' in $conf: expected 2M or 1G" >&2; exit 2 ;;
esac
[[ "$pages" =~ ^[0-9]+$ ]] || { echo "hugepages: pages '$pages' in $conf: expected a number" >&2; exit 2; }

problem() {
    echo "hugepages: $1" >&2
    [ $strict -eq 1 ] && exit 1
    exit 0
}

kb_of() {  # kb_of SIZE -> kB
    case "$1" in
        2M|2m) echo 2048 ;;
        1G|1g) echo 1048576 ;;
    esac
}

# reserve DIR COUNT WHAT: have COUNT pages reserved in DIR (a hugepages-<size>kB directory),
# never fewer than already are.
reserve() {
    local dir=$1 want=$2 what=$3 have got
    [ -d "$dir" ] || problem "this kernel offers no $what ($dir missing)"
    have=$(cat "$dir/nr_hugepages")
    if [ "$have" -ge "$want" ]; then
        echo "hugepages: $have x $what already reserved (want $want): nothing to do"
        return
    fi
    if ! echo "$want" > "$dir/nr_hugepages" 2>/dev/null; then
        problem "cannot reserve $want x $what (need root); $have reserved"
    fi
    got=$(cat "$dir/nr_hugepages")
    if [ "$got" -lt "$want" ]; then
        problem "asked for $want x $what, the kernel reserved $got (memory too fragmented or too small; reserve at boot instead)"
    fi
    echo "hugepages: reserved $got x $what (was $have)"
}

# Per-node lines "nodeN.2M = COUNT" / "nodeN.1G = COUNT"; anything else starting with
# "node" is a mistake worth stopping for.
per_node=$(sed -n 's/^[[:space:]]*node\([0-9][0-9]*\)\.\([12][MGmg]\)[[:space:]]*=[[:space:]]*\([0-9][0-9]*\)[[:space:]]*\(#.*\)\{0,1\}$/\1 \2 \3/p' "$conf" | tr 'mg' 'MG')
bad=$(grep -E '^[[:space:]]*node' "$conf" | grep -vE '^[[:space:]]*node[0-9]+\.(2M|1G|2m|1g)[[:space:]]*=[[:space:]]*[0-9]+[[:space:]]*(#.*)?$' || true)
[ -z "$bad" ] || { echo "hugepages: in $conf: '$bad': expected nodeN.2M = COUNT or nodeN.1G = COUNT" >&2; exit 2; }

# Machine-wide reservation for page_size, unless node lines give that size per node.
if ! grep -qE "^[0-9]+ $size " <<<"$per_node"; then
    reserve "$root/sys/kernel/mm/hugepages/hugepages-${kb}kB" "$pages" "$size pages"
fi
while read -r node nsize count; do
    [ -n "$node" ] || continue
    reserve "$root/sys/devices/system/node/node$node/hugepages/hugepages-$(kb_of "$nsize")kB" "$count" \
        "$nsize pages on node $node"
done <<<"$per_node"

if [ -n "$root" ]; then
    exit 0
fi
# A hugetlbfs per page size in use: page_size at "mount", another size given per node at
# "mount_1G" / "mount_2M" (default /dev/hugepages-1G, /dev/hugepages-2M).
mounts="$size $mnt"
for other in $(awk '{print $2}' <<<"$per_node" | sort -u); do
    [ "$other" = "$size" ] || mounts="$mounts
$other $(value "mount_$other" "/dev/hugepages-$other")"
done
while read -r msize at; do
    if grep -qs " $at hugetlbfs " /proc/mounts; then
        echo "hugepages: hugetlbfs already mounted at $at"
        continue
    fi
    mkdir -p "$at"
    if mount -t hugetlbfs -o "pagesize=$msize" nodev "$at" 2>/dev/null; then
        echo "hugepages: mounted hugetlbfs ($msize pages) at $at"
    else
        problem "cannot mount hugetlbfs at $at (need root)"
    fi
done <<<"$mounts"
