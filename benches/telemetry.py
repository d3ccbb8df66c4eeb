#!/usr/bin/env python3
"""Telemetry overhead, BENCHMARKS.md setup 1: Sluice's per-core throughput with all its
telemetry on against the same run with it off.

The input is the 64-byte IPv4 pcap of 4k flows, replayed forever by net_pcap, through the
full pipeline (bench.py's "full" configuration) on one worker core. "off": no metrics
endpoint, so the control thread does no telemetry work. "on": the Prometheus endpoint
with a 1 s period, the 20 top flows, and a scraper reading /metrics every second, as a
Prometheus server would. Runs are interleaved (off on, on off, ...); the ratio is the
median of the per-round ratios on/off. Prints one JSON line ("bench":
"telemetry-overhead") and appends it to bench-results/latest.jsonl.
QUICK=1: fewer rounds and shorter windows.
"""

import json
import os
import socket
import statistics
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scraper(port, stop, scrapes):
    """GETs /metrics every second until stopped; counts the good answers."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                if r.status == 200 and b"sluice_port_rx_packets_total" in r.read():
                    scrapes[0] += 1
        except OSError:
            pass
        stop.wait(1.0)


def main():
    pcap = bench.make_pcaps()["v4-64B-4k"]
    mem_args = [] if bench.hugepages_free_mib() >= 1024 else ["--no-huge", "-m", "1536"]
    pid = os.getpid()
    runs = {"off": [], "on": []}
    scrapes_total = 0
    for r in range(bench.ROUNDS):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            prefix = f"bT{pid}{mode}{r}"
            if mode == "off":
                extra = '[telemetry]\nprometheus = "off"\n'
                stop = None
            else:
                port = free_port()
                extra = f'[telemetry]\nprometheus = "127.0.0.1:{port}"\ninterval_ms = 1000\ntop_flows = 20\n'
                stop, scrapes = threading.Event(), [0]
                t = threading.Thread(target=scraper, args=(port, stop, scrapes), daemon=True)
                t.start()
            mpps = bench.measure("sluiced", bench.sluice_cmd(pcap, prefix, mem_args, "full", extra), prefix)
            if stop is not None:
                stop.set()
                t.join()
                if scrapes[0] == 0:
                    sys.exit("bench: the scraper never got the metrics: telemetry was not on")
                scrapes_total += scrapes[0]
            runs[mode].append(mpps)
            bench.log(f"telemetry round {r + 1}/{bench.ROUNDS}: {mode} {mpps:.2f} Mpps")
    ratio = statistics.median(a / b for a, b in zip(runs["on"], runs["off"]))
    line = {
        "bench": "telemetry-overhead", "dut": "sluice", "stages": "full", "frame": 64, "family": "ipv4",
        "flows": 4096, "mpps_off": round(statistics.median(runs["off"]), 2),
        "mpps_on": round(statistics.median(runs["on"]), 2), "ratio": round(ratio, 3),
        "scrapes": scrapes_total, "rounds": bench.ROUNDS, "window_s": bench.WINDOW_S, "core": bench.CORE,
        "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "hugepages": not mem_args,
    }
    print(json.dumps(line), flush=True)
    print(f"telemetry on/off: {line['mpps_on']:.2f} / {line['mpps_off']:.2f} Mpps, ratio {ratio:.3f} "
          f"(median of {bench.ROUNDS} interleaved rounds of {bench.WINDOW_S:.0f} s; {scrapes_total} scrapes)")
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, "latest.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
