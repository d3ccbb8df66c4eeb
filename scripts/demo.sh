#!/usr/bin/env bash
# The demo: sluiced on virtual devices with traffic flowing.
#   lan: net_pcap replaying an IMIX pcap of 4096 flows forever (the "site" side)
#   wan: net_null, a sink (the "cloud" side)
# The whole pipeline runs: rules put a quarter of the traffic in a metered "interactive"
# class (remarked above its committed rate, dropped above its peak) and TCP in "bulk";
# an active-active group spreads flows over two clouds' next hops; 5 % of the traffic has
# no route and is dropped. Prints a line per second, then the final counters: per port,
# per stage (cycles per packet), per class (conform / exceed / violate), flows, drops.
#
# usage: scripts/demo.sh [SECONDS]    (default 10)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
bin="$here/target/release"
work=${SLUICE_DEMO_DIR:-/tmp/sluice-demo}
mkdir -p "$work"

"$bin/sluice-pcapgen" --out "$work/site.pcap" --flows 4096 --packets 12288 --size imix \
    --dst 198.18.0.0/16 --unroutable-pct 5 >/dev/null

cat > "$work/demo.toml" <<TOML
# Written by scripts/demo.sh
[eal]
workers = [1]
control_core = 0
hugepages = "auto"
file_prefix = "sluice-demo"
mbufs = 32767          # net_pcap keeps the whole replayed file in mbufs

[[ports]]
name = "lan"
device = "net_pcap0,rx_pcap=$work/site.pcap,infinite_rx=1"
ipv4 = ["192.0.2.1/24"]
mac = "02:00:00:00:00:01"

[[ports]]
name = "wan"
device = "net_null0,no-rx=1"
ipv4 = ["100.64.0.1/30"]
mac = "02:00:00:00:00:02"

[[classes]]
name = "interactive"
priority = "p1"
dscp = "af41"
meter = { type = "trtcm", cir = "4Gbit", pir = "5Gbit" }
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
latency_ms = 4

[[paths]]
name = "gcp-euw1"
cloud = "gcp"
region = "europe-west1"
port = "wan"
next_hop = "100.64.0.2"
next_hop_mac = "02:00:00:00:bb:01"
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

echo "== Sluice demo: $secs s of IMIX traffic, 4096 flows, lan (pcap replay) -> wan (sink) =="
echo "   config: $work/demo.toml"
"$bin/sluiced" --config "$work/demo.toml" --duration "$secs" --stats-interval 1 --log-level warn
