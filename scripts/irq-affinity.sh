#!/usr/bin/env bash
# Moves kernel work off the worker cores: every IRQ's affinity, the default affinity of new
# IRQs, and each network queue's RPS and XPS masks lose the worker cores (they keep the
# others). Dry run by default: shows each change as "before -> after"; --apply makes them.
# Settings do not survive a reboot (irqbalance may also undo them: stop it, or ban the
# cores with IRQBALANCE_BANNED_CPULIST).
#
# usage: scripts/irq-affinity.sh (--cores LIST | --config FILE) [--apply] [--root DIR]
#   --cores LIST   worker cores, e.g. 2-5,8
#   --config FILE  take them from sluiced's configuration (eal.workers)
#   --root DIR     operate on a fake tree (DIR/proc/irq, DIR/sys/...) for tests
set -euo pipefail

cores=""
config=""
apply=0
root=""
while [ $# -gt 0 ]; do
    case "$1" in
        --cores) cores="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --apply) apply=1; shift ;;
        --root) root="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "irq-affinity: unknown argument $1" >&2; exit 2 ;;
    esac
done

# expand LIST -> one CPU per line ("0-2,5" -> 0 1 2 5)
expand() {
    local part a b
    IFS=',' read -ra parts <<<"$1"
    for part in "${parts[@]}"; do
        part=${part//[[:space:]]/}
        [ -n "$part" ] || continue
        if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]}; b=${BASH_REMATCH[2]}
            [ "$a" -le "$b" ] || return 1
            seq "$a" "$b"
        elif [[ "$part" =~ ^[0-9]+$ ]]; then
            echo "$part"
        else
            return 1
        fi
    done
}

if [ -n "$config" ]; then
    [ -r "$config" ] || { echo "irq-affinity: cannot read $config" >&2; exit 2; }
    cores=$(sed -n 's/^[[:space:]]*workers[[:space:]]*=[[:space:]]*\[\([0-9,[:space:]]*\)\].*/\1/p' "$config" | head -n 1)
    [ -n "$cores" ] || { echo "irq-affinity: no 'workers = [...]' line in $config" >&2; exit 2; }
fi
[ -n "$cores" ] || { echo "irq-affinity: give --cores LIST or --config FILE" >&2; exit 2; }
workers=$(expand "$cores" | sort -nu) || { echo "irq-affinity: '$cores' is not a CPU list" >&2; exit 2; }
online=$(expand "$(cat "$root/sys/devices/system/cpu/online")" | sort -nu)
for w in $workers; do
    grep -qx "$w" <<<"$online" || { echo "irq-affinity: core $w is not online" >&2; exit 2; }
done
keep=$(grep -vxF -f <(echo "$workers") <<<"$online" || true)
[ -n "$keep" ] || { echo "irq-affinity: every online core is a worker; nothing would be left for interrupts" >&2; exit 2; }
keep_list=$(paste -sd, <<<"$keep")

# The CPUs set in a hex CPU mask ("ff" or "00000000,0000000f": 32-bit groups, last first).
mask_cpus() {
    local i g b n
    IFS=',' read -ra groups <<<"$1"
    n=${#groups[@]}
    for ((i = 0; i < n; i++)); do
        g=$((16#${groups[$i]}))
        for ((b = 0; b < 32; b++)); do
            [ $(((g >> b) & 1)) -eq 1 ] && echo $((32 * (n - 1 - i) + b))
        done
    done
    return 0
}

# A mask shaped like $1 (same groups and widths) with the CPUs given after it set.
list_mask() {
    local like=$1 out="" i c n
    shift
    IFS=',' read -ra groups <<<"$like"
    n=${#groups[@]}
    local vals=()
    for ((i = 0; i < n; i++)); do vals[i]=0; done
    for c in "$@"; do
        i=$((n - 1 - c / 32))
        [ $i -ge 0 ] && vals[i]=$((vals[i] | (1 << (c % 32))))
    done
    for ((i = 0; i < n; i++)); do
        out+=$(printf "%0${#groups[$i]}x" "${vals[i]}")
        [ $i -lt $((n - 1)) ] && out+=","
    done
    echo "$out"
}

# CPUs (one per line) without the workers; all kept cores when nothing would be left.
without_workers() {
    local left
    left=$(grep -vxF -f <(echo "$workers") <<<"$1" || true)
    echo "${left:-$keep}"
}

changes=0
change() {  # change FILE BEFORE AFTER WHAT
    [ "$2" = "$3" ] && return 0
    changes=$((changes + 1))
    if [ $apply -eq 1 ]; then
        if echo "$3" > "$1" 2>/dev/null; then
            echo "$4: $2 -> $(cat "$1")"
        else
            echo "$4: $2 -> $3 refused by the kernel (need root; some IRQs cannot move)" >&2
        fi
    else
        echo "$4: $2 -> $3 (dry run)"
    fi
}

echo "worker cores: $(paste -sd, <<<"$workers"); interrupts and packet steering go to: $keep_list"
for dir in "$root"/proc/irq/[0-9]*; do
    [ -e "$dir/smp_affinity_list" ] || continue
    irq=$(basename "$dir")
    before=$(cat "$dir/smp_affinity_list" 2>/dev/null) || continue
    cpus=$(expand "$before" | sort -nu) || continue
    grep -qxF -f <(echo "$workers") <<<"$cpus" || continue
    after=$(without_workers "$cpus" | paste -sd,)
    names=$(find "$dir" -mindepth 1 -maxdepth 1 -type d -printf '%f ' 2>/dev/null | sed 's/ $//')
    change "$dir/smp_affinity_list" "$before" "$after" "irq $irq${names:+ ($names)}"
done
# A mask file loses the worker cores (an empty mask, RPS or XPS off, stays as it is).
mask_file() {  # mask_file FILE WHAT
    local before cpus
    # Some drivers list the file but cannot say (virtio's xps_cpus without multiqueue).
    before=$(cat "$1" 2>/dev/null) || return 0
    cpus=$(mask_cpus "$before")
    [ -n "$cpus" ] && grep -qxF -f <(echo "$workers") <<<"$cpus" || return 0
    # shellcheck disable=SC2046
    change "$1" "$before" "$(list_mask "$before" $(without_workers "$cpus"))" "$2"
}
[ -e "$root/proc/irq/default_smp_affinity" ] && mask_file "$root/proc/irq/default_smp_affinity" "default irq affinity"
for q in "$root"/sys/class/net/*/queues/rx-*/rps_cpus "$root"/sys/class/net/*/queues/tx-*/xps_cpus; do
    [ -e "$q" ] || continue
    what="${q#"$root"/sys/class/net/}"
    mask_file "$q" "${what%%/*} ${what#*/queues/}"
done
if [ $changes -eq 0 ]; then
    echo "nothing runs on the worker cores: no change needed"
elif [ $apply -eq 0 ]; then
    echo "$changes changes shown; run with --apply (as root) to make them"
fi
