#!/usr/bin/env bash
# The demo: sluiced on virtual devices with sluice-pktgen as traffic source and analyser.
#   lan: net_memif server; sluice-pktgen sends IMIX over 4096 flows into it
#   wan: net_memif server; sluice-pktgen receives what Sluice forwards, and measures loss
#        and latency through the whole appliance
# The whole pipeline runs: rules put a quarter of the traffic in a metered "interactive"
# class (remarked above its committed rate, dropped above its peak) and TCP in "bulk";
# an active-active group spreads flows over two clouds' next hops; a second stream (5 %
# of the packets) has no route and is dropped. sluiced prints a line per second, then its
# counters (per port, per stage, per class, flows, drops); sluice-pktgen prints its live
# line per second on stderr and its table at the end.
#
# usage: scripts/demo.sh [SECONDS]    (default 10)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
bin="$here/target/release"
work=${SLUICE_DEMO_DIR:-/tmp/sluice-demo}
mkdir -p "$work"
rm -f "$work/lan.sock" "$work/wan.sock"
gen_secs=$(( secs > 4 ? secs - 3 : 1 ))

cat > "$work/demo.toml" <<TOML
# Written by scripts/demo.sh
[eal]
workers = [1]
control_core = 0
hugepages = "auto"
file_prefix = "sluice-demo"

[[ports]]
name = "lan"
device = "net_memif0,role=server,id=0,socket=$work/lan.sock,socket-abstract=no"
ipv4 = ["192.0.2.1/24"]
mac = "02:00:00:00:00:01"

[[ports]]
name = "wan"
device = "net_memif1,role=server,id=0,socket=$work/wan.sock,socket-abstract=no"
ipv4 = ["100.64.0.1/30"]
mac = "02:00:00:00:00:02"

[[classes]]
name = "interactive"
priority = "p1"
dscp = "af41"
meter = { type = "trtcm", cir = "500Mbit", pir = "600Mbit" }
exceed = "remark af42"
violate = "drop"

[[classes]]
name = "bulk"
priority = "p3"
dscp = "af11"

[[rules]]
class = "interactive"
dst = "198.18.0.0/22"

[[rules]]
class = "bulk"
protocol = "tcp"

[[paths]]
name = "aws-euw3"
cloud = "aws"
region = "eu-west-3"
port = "wan"
next_hop = "100.64.0.2"
next_hop_mac = "02:00:00:00:aa:01"
# The generator analyses what leaves by this port; it answers no probes.
probe = "none"
latency_ms = 4

[[paths]]
name = "gcp-euw1"
cloud = "gcp"
region = "europe-west1"
port = "wan"
next_hop = "100.64.0.2"
next_hop_mac = "02:00:00:00:bb:01"
probe = "none"
latency_ms = 5

[[path_groups]]
name = "clouds"
paths = ["aws-euw3", "gcp-euw1"]
policy = "active-active"
tolerance_pct = 50

[[routes]]
prefix = "198.18.0.0/16"
group = "clouds"
TOML

cat > "$work/streams.toml" <<TOML
# Written by scripts/demo.sh: what sluice-pktgen sends into port lan.
[[stream]]
name = "site"
dst = "198.18.0.0/16"
src = "10.1.0.0/24"
proto = "udp"
size = "imix"
flows = 4096
rate = "950kpps"
dst_mac = "02:00:00:00:00:01"

[[stream]]
name = "unrouted"
dst = "203.0.113.0/24"
size = 64
rate = "50kpps"
dst_mac = "02:00:00:00:00:01"
TOML

echo "== sluiced doctor: is this machine ready? =="
"$bin/sluiced" doctor --config "$work/demo.toml" || echo "demo: the doctor found problems (above); trying anyway"
echo
echo "== Sluice demo: $secs s; sluice-pktgen sends 1 Mpps (IMIX, 4096 flows, 5 % unroutable) into lan =="
echo "   and analyses what comes out of wan. config: $work/demo.toml, streams: $work/streams.toml"
"$bin/sluiced" --config "$work/demo.toml" --duration "$secs" --stats-interval 1 --log-level warn &
sluiced=$!
# The generator: its own EAL (file prefix), its lcore on CPU 0 beside its main thread,
# leaving CPU 1 to Sluice's worker; two queues per port to match sluiced's memif rings.
"$bin/sluice-pktgen" run --port "net_memif0,role=client,id=0,socket=$work/lan.sock,socket-abstract=no" \
    --port "net_memif1,role=client,id=0,socket=$work/wan.sock,socket-abstract=no" \
    --streams "$work/streams.toml" --queues 2 --eal "--lcores 0@0,1@0" --file-prefix sluice-demo-gen \
    --duration "${gen_secs}s" --link-wait 20s --peer-wait 10s > "$work/pktgen.txt" || echo "demo: sluice-pktgen failed" >&2
wait "$sluiced"
echo
echo "== sluice-pktgen: sent into lan, received from wan (the unrouted stream is dropped by Sluice, by design) =="
cat "$work/pktgen.txt"
