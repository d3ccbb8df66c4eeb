#!/usr/bin/env python3
"""Telemetry overhead, BENCHMARKS.md setup 1: Sluice's per-core throughput with all its
telemetry on against the same run with it off.

The input is the 64-byte IPv4 pcap of 4k flows, replayed forever by net_pcap, through the
full pipeline (bench.py's "full" configuration) on one worker core. "off": no metrics
endpoint, so the control thread does no telemetry work. "on": every sink: the Prometheus
endpoint with a 1 s period, the 20 top flows, and a scraper reading /metrics every second,
as a Prometheus server would; OTLP/HTTP (metrics every second, spans, flow records as log
records) to a collector in this script that answers 200; IPFIX to a UDP socket here that
reads every datagram; and a 1 s active timeout, so that every one of the 4096 flows is
reported each second to both. The scraper and the sinks stand in for servers elsewhere
and are kept off the worker's core. Runs are interleaved (off on, on off, ...); the ratio is the
median of the per-round ratios on/off. It also reports the share of a core that the
control thread (the process's main thread, on core 0) used in each mode: the cost of the
merging and encoding. Prints one JSON line ("bench":
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


def off_the_worker_core(fn):
    """fn, run in a thread kept off the worker's core (threads it starts inherit that):
    the scraper and the sinks stand in for a Prometheus server and collectors elsewhere,
    and must not take the worker's CPU time as a real deployment's would not."""

    def run(*args):
        others = os.sched_getaffinity(0) - {bench.CORE}
        if others:
            os.sched_setaffinity(0, others)  # pid 0: this thread only
        fn(*args)

    return run


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


class Sinks:
    """An OTLP/HTTP collector answering 200 and an IPFIX socket, counting what they get."""

    def __init__(self):
        import http.server

        got = self.got = {"otlp_requests": 0, "otlp_bytes": 0, "ipfix_datagrams": 0}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                got["otlp_bytes"] += len(self.rfile.read(n))
                got["otlp_requests"] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.otlp_port = self.http.server_address[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.ipfix_port = self.udp.getsockname()[1]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=off_the_worker_core(self.http.serve_forever), daemon=True),
                        threading.Thread(target=off_the_worker_core(self.drain), daemon=True)]
        for t in self.threads:
            t.start()

    def drain(self):
        while not self.stop.is_set():
            try:
                self.udp.recv(65536)
                self.got["ipfix_datagrams"] += 1
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.http.shutdown()
        for t in self.threads:
            t.join()
        self.http.server_close()
        self.udp.close()


def main():
    pcap = bench.make_pcaps()["v4-64B-4k"]
    mem_args = [] if bench.hugepages_free_mib() >= 1024 else ["--no-huge", "-m", "1536"]
    pid = os.getpid()
    runs = {"off": [], "on": []}
    control = {"off": [], "on": []}
    scrapes_total = 0
    sinks = Sinks()
    for r in range(bench.ROUNDS):
        for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
            prefix = f"bT{pid}{mode}{r}"
            if mode == "off":
                extra = '[telemetry]\nprometheus = "off"\n'
                stop = None
            else:
                port = free_port()
                extra = (f'[flows]\nactive_timeout_s = 1\n[telemetry]\nprometheus = "127.0.0.1:{port}"\n'
                         f'interval_ms = 1000\ntop_flows = 20\notlp = "http://127.0.0.1:{sinks.otlp_port}"\n'
                         f'otlp_interval_ms = 1000\nipfix = "127.0.0.1:{sinks.ipfix_port}"\n')
                stop, scrapes = threading.Event(), [0]
                t = threading.Thread(target=off_the_worker_core(scraper), args=(port, stop, scrapes), daemon=True)
                t.start()
            mpps = bench.measure("sluiced", bench.sluice_cmd(pcap, prefix, mem_args, "full", extra), prefix,
                                 control[mode])
            if stop is not None:
                stop.set()
                t.join()
                if scrapes[0] == 0:
                    sys.exit("bench: the scraper never got the metrics: telemetry was not on")
                scrapes_total += scrapes[0]
            runs[mode].append(mpps)
            bench.log(f"telemetry round {r + 1}/{bench.ROUNDS}: {mode} {mpps:.2f} Mpps, "
                      f"control thread {100 * control[mode][-1]:.1f} % of a core")
    sinks.close()
    if sinks.got["otlp_requests"] == 0 or sinks.got["ipfix_datagrams"] == 0:
        sys.exit(f"bench: a sink got nothing: {sinks.got}")
    ratio = statistics.median(a / b for a, b in zip(runs["on"], runs["off"]))
    line = {
        "bench": "telemetry-overhead", "dut": "sluice", "stages": "full", "frame": 64, "family": "ipv4",
        "flows": 4096, "mpps_off": round(statistics.median(runs["off"]), 2),
        "mpps_on": round(statistics.median(runs["on"]), 2), "ratio": round(ratio, 3),
        "control_cpu_off": round(statistics.median(control["off"]), 3),
        "control_cpu_on": round(statistics.median(control["on"]), 3),
        "scrapes": scrapes_total, **sinks.got, "rounds": bench.ROUNDS, "window_s": bench.WINDOW_S, "core": bench.CORE,
        "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "hugepages": not mem_args,
    }
    print(json.dumps(line), flush=True)
    print(f"telemetry on/off: {line['mpps_on']:.2f} / {line['mpps_off']:.2f} Mpps, ratio {ratio:.3f} "
          f"(median of {bench.ROUNDS} interleaved rounds of {bench.WINDOW_S:.0f} s; {scrapes_total} scrapes, "
          f"{sinks.got['otlp_requests']} OTLP requests of {sinks.got['otlp_bytes']} bytes, "
          f"{sinks.got['ipfix_datagrams']} IPFIX datagrams); control thread "
          f"{100 * line['control_cpu_off']:.1f} % / {100 * line['control_cpu_on']:.1f} % of a core off / on")
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, "latest.jsonl"), "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
