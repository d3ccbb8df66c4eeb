#!/usr/bin/env python3
"""Failover benchmark: how long traffic has no working path when the preferred cloud
gateway goes silent, at default probe settings (100 ms +-25 %, 3 missed rounds, timeout
three times the RTT seen and at least 25 ms).

Per trial, three DPDK processes over memif (as pktgen/tests/failover.rs):
  sluice-pktgen run (lan) -> sluiced -> sluice-pktgen reflect (wan: gateways aws, gcp)
sluiced resolves both gateways by ARP and prefers aws (lowest cost). The generator sends
64 UDP flows at RATE pps; the reflector returns them through the appliance, and takes aws
silent DOWN_AT after its start, for good. Time without a path = packets lost / rate.

Prints one JSON line ("bench":"failover") with p50 and max over the trials and appends it
to bench-results/failover.jsonl.   TRIALS=N (default 20; QUICK=1: 3).
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import pktgen  # noqa: E402  (stop, remove_hugepage_files)

TRIALS = int(os.environ.get("TRIALS", 3 if bench.QUICK else 20))
RATE = 50_000
DOWN_AT_S = 3
GEN_S = 4  # the failover is over about half a second after DOWN_AT_S
PKTGEN = os.path.join(bench.BIN, "sluice-pktgen")
SLUICED = os.path.join(bench.BIN, "sluiced")


def log(msg):
    print(f"failover-bench: {msg}", file=sys.stderr, flush=True)


def config(prefix, lan, wan):
    return f"""[eal]
workers = [{bench.CORE}]
control_core = {bench.CONTROL_CORE}
hugepages = "auto"
file_prefix = "{prefix}"
[[ports]]
name = "lan"
device = "net_memif0,role=server,id=0,socket={lan},socket-abstract=no"
ipv4 = ["192.0.2.1/24"]
mac = "02:00:00:00:00:01"
[[ports]]
name = "wan"
device = "net_memif1,role=server,id=0,socket={wan},socket-abstract=no"
ipv4 = ["100.64.0.1/24"]
mac = "02:00:00:00:00:02"
[[paths]]
name = "site"
cloud = "onprem"
port = "lan"
next_hop = "192.0.2.2"
next_hop_mac = "02:00:00:00:00:99"
probe = "none"
[[paths]]
name = "aws"
cloud = "aws"
port = "wan"
next_hop = "100.64.0.2"
cost_per_gb = 0.02
[[paths]]
name = "gcp"
cloud = "gcp"
port = "wan"
next_hop = "100.64.0.3"
cost_per_gb = 0.05
[[path_groups]]
name = "clouds"
paths = ["aws", "gcp"]
policy = "lowest-cost"
[[path_groups]]
name = "back"
paths = ["site"]
[[routes]]
prefix = "198.51.100.0/24"
group = "clouds"
[[routes]]
prefix = "10.1.0.0/16"
group = "back"
"""


def wait_for(path, needles, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        text = open(path).read() if os.path.exists(path) else ""
        if all(n in text for n in needles):
            return True
        time.sleep(0.02)
    return False


def trial(i, pid):
    d = os.path.join(bench.WORK, f"failover{pid}_{i}")
    os.makedirs(d, exist_ok=True)
    lan, wan = os.path.join(d, "lan.sock"), os.path.join(d, "wan.sock")
    for s in (lan, wan):
        if os.path.exists(s):
            os.unlink(s)
    prefix = f"fo{pid}_{i}"
    with open(os.path.join(d, "sluice.toml"), "w") as f:
        f.write(config(prefix, lan, wan))
    with open(os.path.join(d, "gw.toml"), "w") as f:
        f.write(f'[[gateway]]\nname = "aws"\nip = "100.64.0.2"\ndown = [["{DOWN_AT_S}s", "3600s"]]\n'
                '[[gateway]]\nname = "gcp"\nip = "100.64.0.3"\n')
    with open(os.path.join(d, "streams.toml"), "w") as f:
        f.write('[[stream]]\nname = "site"\nsrc = "10.1.0.0/24"\ndst = "198.51.100.0/24"\nflows = 64\n'
                f'size = 128\nrate = "{RATE}pps"\ndst_mac = "02:00:00:00:00:01"\n')
    err = os.path.join(d, "sluiced.stderr")
    stats = os.path.join(d, "sluiced.json")
    procs = []
    try:
        sl = subprocess.Popen([SLUICED, "--config", os.path.join(d, "sluice.toml"), "--stats-file", stats,
                               "--link-wait", "0"], stdout=subprocess.DEVNULL, stderr=open(err, "w"))
        procs.append(sl)
        refl = subprocess.Popen([PKTGEN, "reflect", "--port",
                                 f"net_memif0,role=client,id=0,socket={wan},socket-abstract=no",
                                 "--config", os.path.join(d, "gw.toml"), "--queues", "2", "--eal", "--lcores 0@0,1@0",
                                 "--link-wait", "20s", "--json", "-q", "--file-prefix", prefix + "r"],
                                stdout=subprocess.PIPE, stderr=open(os.path.join(d, "refl.stderr"), "w"))
        procs.append(refl)
        if not wait_for(err, ["100.64.0.2 on port", "100.64.0.3 on port"], 30):
            raise RuntimeError(f"gateways not resolved; see {err}")
        gen_err = os.path.join(d, "gen.stderr")
        gen = subprocess.Popen([PKTGEN, "run", "--port",
                                f"net_memif0,role=client,id=0,socket={lan},socket-abstract=no",
                                "--streams", os.path.join(d, "streams.toml"), "--queues", "2",
                                "--duration", f"{GEN_S}s", "--drain", "500ms", "--peer-wait", "30s",
                                "--eal", "--lcores 0@0,1@1", "--link-wait", "20s", "--json", "--file-prefix",
                                prefix + "g"], stdout=subprocess.PIPE, stderr=open(gen_err, "w"), text=True)
        procs.append(gen)
        # memif: nobody may close while the other side polls. The generator, done, stops
        # polling and waits; the reflector likewise when stopped; sluiced closes first.
        needle = "for memif peers to disconnect"
        if not wait_for(gen_err, [needle], GEN_S + 60):
            raise RuntimeError(f"the generator did not finish; see {gen_err}")
        refl.send_signal(signal.SIGINT)
        wait_for(os.path.join(d, "refl.stderr"), [needle], 2)
        pktgen.stop(sl)
        out, _ = gen.communicate(timeout=60)
        if gen.returncode != 0:
            raise RuntimeError(f"generator failed ({gen.returncode}); see {gen_err}")
        s = json.loads(out)["streams"][0]
        pktgen.stop(refl)
        st = json.load(open(stats))
        events = [e for e in st["paths"]["events"] if e["path"] == "aws"]
        return {"lost": s["lost"], "tx": s["tx_packets"], "outage_ms": s["lost"] * 1000.0 / RATE,
                "down_events": sum(1 for e in events if e["to"] == "down")}
    finally:
        for p in reversed(procs):
            pktgen.stop(p)
        for p in (prefix, prefix + "r", prefix + "g"):
            pktgen.remove_hugepage_files(p)


def main():
    os.makedirs(bench.WORK, exist_ok=True)
    os.makedirs(bench.RESULTS, exist_ok=True)
    pid = os.getpid()
    trials = []
    for i in range(TRIALS):
        t = trial(i, pid)
        trials.append(t)
        log(f"trial {i + 1}/{TRIALS}: {t['lost']} packets lost, {t['outage_ms']:.1f} ms without a path")
    ms = [t["outage_ms"] for t in trials]
    lost = [t["lost"] for t in trials]
    line = {
        "bench": "failover", "trials": TRIALS, "rate_pps": RATE, "flows": 64,
        "probe_interval_ms": 100, "down_after": 3,
        "p50_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1), "min_ms": round(min(ms), 1),
        "p50_lost": int(statistics.median(lost)), "max_lost": max(lost),
        "all_failed_over": all(t["down_events"] == 1 for t in trials),
        "outage_ms": [round(x, 1) for x in ms],
    }
    print(json.dumps(line), flush=True)
    with open(os.path.join(bench.RESULTS, "failover.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")
    print(f"failover at default probe settings over {TRIALS} trials: p50 {line['p50_ms']} ms, "
          f"max {line['max_ms']} ms without a path (p50 {line['p50_lost']}, max {line['max_lost']} packets "
          f"lost at {RATE} pps)")


if __name__ == "__main__":
    main()
