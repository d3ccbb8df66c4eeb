#!/usr/bin/env bash
# Instructions per packet of the pipeline, counted by valgrind's callgrind (repeatable on
# a shared machine, unlike time): for each variant, the driver `dataplane/benches/
# instructions.rs` runs 2 and then 10 passes of 4 096 packets, and the difference is
# divided by the 8 * 4 096 packets between them, so start-up does not count. The driver's
# own copy of each frame into its buffer (about 22 instructions a packet) is included.
#
# usage: scripts/instructions.sh [VARIANT ...]   (default: full forward forward-packet)
# FRAMES=ipv6-udp (or ipv4-tcp, vlan-ipv4-udp) counts other frames than IPv4 UDP.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
command -v valgrind >/dev/null || { echo "instructions.sh: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
cd "$here"
exe=$(cargo bench --no-run -p dataplane --bench instructions --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')
[ -x "$exe" ] || { echo "instructions.sh: could not build the driver" >&2; exit 1; }
count() {
    VARIANT=$1 PASSES=$2 valgrind --tool=callgrind --callgrind-out-file=/dev/null "$exe" 2>&1 \
        | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(full forward forward-packet)
for variant in "${variants[@]}"; do
    a=$(count "$variant" 2)
    b=$(count "$variant" 10)
    echo "$variant${FRAMES:+ ($FRAMES)}: $(( (b - a) / (8 * 4096) )) instructions/packet"
done
