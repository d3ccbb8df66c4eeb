#!/usr/bin/env bash
# Applies hugepages.conf: reserves hugepages and mounts hugetlbfs. Idempotent; says what it
# did. Where pages cannot be reserved it says so and exits 0 (sluiced then falls back to
# --no-huge) unless --strict is given.
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
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
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
    2M|2m|2048k|2048kB) kb=2048 ;;
    1G|1g|1048576k|1048576kB) kb=1048576 ;;
    *) echo "hugepages: page_size '$size' in $conf: expected 2M or 1G" >&2; exit 2 ;;
esac
[[ "$pages" =~ ^[0-9]+$ ]] || { echo "hugepages: pages '$pages' in $conf: expected a number" >&2; exit 2; }

problem() {
    echo "hugepages: $1" >&2
    [ $strict -eq 1 ] && exit 1
    exit 0
}

sys="$root/sys/kernel/mm/hugepages/hugepages-${kb}kB"
[ -d "$sys" ] || problem "this kernel offers no ${size} hugepages ($sys missing)"
have=$(cat "$sys/nr_hugepages")
if [ "$have" -ge "$pages" ]; then
    echo "hugepages: $have x $size pages already reserved (want $pages): nothing to do"
else
    if ! echo "$pages" > "$sys/nr_hugepages" 2>/dev/null; then
        problem "cannot reserve $pages x $size pages (need root); $have reserved"
    fi
    got=$(cat "$sys/nr_hugepages")
    if [ "$got" -lt "$pages" ]; then
        problem "asked for $pages x $size pages, the kernel reserved $got (memory too fragmented or too small; reserve at boot instead)"
    fi
    echo "hugepages: reserved $got x $size pages (was $have)"
fi

if [ -n "$root" ]; then
    exit 0
fi
if grep -qs " $mnt hugetlbfs " /proc/mounts; then
    echo "hugepages: hugetlbfs already mounted at $mnt"
else
    mkdir -p "$mnt"
    if mount -t hugetlbfs -o "pagesize=$size" nodev "$mnt" 2>/dev/null; then
        echo "hugepages: mounted hugetlbfs at $mnt"
    else
        problem "cannot mount hugetlbfs at $mnt (need root)"
    fi
fi
