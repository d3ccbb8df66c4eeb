#!/usr/bin/env python3
"""Sluice benchmarks, BENCHMARKS.md setup 1: per-core throughput on pcap replay.

Sluice (one worker), DPDK's l3fwd (LPM) and dpdk-testpmd (io) each forward the same pcap
file, replayed forever by net_pcap, on the same core. Sluice runs with the whole pipeline
configured ("full": 100 classifier rules, classes with trTCM meters and DSCP marking, an
active-active path group of two paths) and, on the 64-byte IPv4 input, with one stage's
work configured away in turn ("no-classify": no rules; "no-shape": no meters; "no-mark":
no DSCP) and with routes only ("forward"); "forward-packet" and "full-packet" are the
same in packet mode (flows.mode = "packet": no flow table; "full-packet" only when asked
for with STAGES=...). Parsing, the flow table (except in packet mode), routing and the
per-stage accounting always run, and so does the default telemetry (the Prometheus
endpoint on loopback, merged once a second; benches/telemetry.py measures its cost).
Runs are interleaved (A B C, B C A, ...) because absolute figures on a shared machine
drift from run to run, in whole phases where every process on the core runs slower. The ratio reported is the median of the
per-round ratios (each Sluice run against the peer run next to it in time); the medians of
the raw rates are reported too. Rates are read from each process's DPDK telemetry socket
(port 0's opackets).

Prints one JSON line per result and peer, then a human table; writes the lines to
bench-results/latest.jsonl.   QUICK=1: fewer rounds, shorter windows (under 2 minutes).
L3FWD_LINK=static: l3fwd built with `make static` (DPDK linked in, as `sluiced` is by default).
CONTROL=1: flow-scale inputs also run Sluice "forward-packet" (no flow table) on the large
and the 4 K-flow file: what replaying that many distinct packets costs by itself (net_pcap
copies each from a stored mbuf, which for a large file is not in cache), apart from the
flow table's share.
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
WORK = os.path.join(ROOT, "target", "bench")
PEERS = os.path.join(ROOT, "target", "peers")
RESULTS = os.path.join(ROOT, "bench-results")
QUICK = os.environ.get("QUICK", "") not in ("", "0")
ONLY = os.environ.get("ONLY", "")  # run only the inputs whose name contains this
# `make bench` (every bench script) must finish within 10 minutes on two cores, and within
# 2 with QUICK=1: these set most of that time.
ROUNDS = 2 if QUICK else 5
WINDOW_S = 1.0 if QUICK else 2.0
WARMUP_S = 0.5
# "static": l3fwd linked statically, as Sluice is by default (BENCHMARKS.md's peer is shared).
L3FWD_LINK = os.environ.get("L3FWD_LINK", "shared")
CONTROL = os.environ.get("CONTROL", "") not in ("", "0")
if L3FWD_LINK not in ("shared", "static"):
    sys.exit(f"bench: L3FWD_LINK={L3FWD_LINK}: use shared (the default) or static")
CORE = 1  # the worker / forwarding core for every process
CONTROL_CORE = 0


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# ---- inputs and peers -------------------------------------------------------------------

FILES = [
    # name, frame size shown in results, flows, family, pcapgen arguments
    ("v4-64B-4k", 64, 4096, "v4", ["--flows", "4096", "--size", "60", "--dst", "198.18.0.0/24", "--tcp-pct", "0"]),
] + ([] if QUICK else [
    ("v4-imix-4k", "imix", 4096, "v4",
     ["--flows", "4096", "--packets", "4104", "--size", "imix", "--dst", "198.18.0.0/24", "--tcp-pct", "0"]),
    # The smallest IPv6/UDP frame: 62 bytes + FCS. l3fwd routes 2001:200::/64 to port 0.
    ("v6-66B-4k", 66, 4096, "v6",
     ["--flows", "4096", "--size", "62", "--family", "v6", "--dst", "2001:200::/64", "--tcp-pct", "0"]),
    # As many flows as hugepages.conf's 2 GB hold in replayed mbufs (1 M flows: below).
    # l3fwd and testpmd cannot replay it (their pools are too small): Sluice runs against
    # itself on the 4 k-flow file, interleaved, for the flow-scale ratio.
    ("v4-64B-256k", 64, 262144, "v4", ["--flows", "262144", "--size", "60", "--dst", "198.18.0.0/24", "--tcp-pct", "0"]),
]) + ([
    # Only when asked for by name (`ONLY=1m`): its mbufs need about 2.7 GB of hugepages, more
    # than hugepages.conf reserves, and it adds 40 s. Against 4 K flows as above, both with
    # a flow table of 2 M entries (the default 1 M would evict).
    ("v4-64B-1m", 64, 1048576, "v4", ["--flows", "1048576", "--size", "60", "--dst", "198.18.0.0/24", "--tcp-pct", "0"]),
] if "1m" in ONLY else [])

# Hugepages the 1 M-flow input needs free (its file's mbufs, the flow table is not in them).
MIB_FOR_1M = 2900


def scale_config(flows):
    """Extra configuration of a flow-scale run (and its 4 K-flow comparison)."""
    return "[flows]\ncapacity = 2000000\n" if flows > 1_000_000 else ""

# Sluice configurations: the pipeline's work, whole and with one stage's work left out;
# "-packet": the same in packet mode (flows.mode = "packet": no flow table, every packet
# classified and routed on its own).
# STAGES=a,b,... picks others for the 64-byte IPv4 input (e.g. STAGES=full,full-packet).
VARIANTS = (os.environ["STAGES"].split(",") if os.environ.get("STAGES") else
            ["full", "forward", "forward-packet"] + ([] if QUICK else ["no-classify", "no-shape", "no-mark"]))


def make_pcaps():
    os.makedirs(WORK, exist_ok=True)
    out = {}
    for name, _, _, _, args in FILES:
        path = os.path.join(WORK, name + ".pcap")
        run([os.path.join(BIN, "sluice-pcapgen"), "--out", path] + args, stdout=subprocess.DEVNULL)
        out[name] = path
    return out


def build_l3fwd():
    """DPDK's l3fwd from dpdk-doc's sources; RX checksum offload off (net_pcap has none).
    Built with `make` (shared DPDK), as BENCHMARKS.md has it; with L3FWD_LINK=static, with
    `make static`, linked as Sluice is by default (see static_libs)."""
    exe = os.path.join(PEERS, "l3fwd", "build", f"l3fwd-{L3FWD_LINK}")
    if os.path.exists(exe):
        return exe
    src = "/usr/share/dpdk/examples"
    main_c = os.path.join(PEERS, "l3fwd", "main.c")
    if not os.path.exists(main_c):
        if not os.path.isdir(os.path.join(src, "l3fwd")):
            sys.exit("bench: /usr/share/dpdk/examples/l3fwd is missing; install dpdk-doc (scripts/install-deps.sh)")
        shutil.rmtree(PEERS, ignore_errors=True)
        os.makedirs(PEERS)
        for d in ("l3fwd", "common"):
            shutil.copytree(os.path.join(src, d), os.path.join(PEERS, d))
        text = open(main_c).read()
        patched = text.replace(".offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,", ".offloads = 0,")
        if patched == text:
            sys.exit("bench: could not turn off RX checksum offload in l3fwd's main.c")
        open(main_c, "w").write(patched)
    log(f"building DPDK's l3fwd example ({L3FWD_LINK})")
    make = ["make", "-C", os.path.join(PEERS, "l3fwd"), "-j2"]
    if L3FWD_LINK == "static":
        make += ["static", f"LDFLAGS_STATIC={static_libs()}"]
    run(make, stdout=subprocess.DEVNULL)
    return exe


def static_libs():
    """`pkg-config --static --libs libdpdk` less what only a fully static link needs
    (rdma-core's providers, systemd), which Debian does not install: the system libraries
    stay shared, as in dpdk-sys/build.rs."""
    libs = subprocess.run(["pkg-config", "--static", "--libs", "libdpdk"], check=True,
                          capture_output=True, text=True).stdout.split()
    return " ".join(l for l in libs if "rdmav" not in l and l != "-lsystemd" and not l.startswith("-lrte_"))


def hugepages_free_mib():
    total = 0
    base = "/sys/kernel/mm/hugepages"
    mounted = any(l.split()[2] == "hugetlbfs" for l in open("/proc/mounts") if len(l.split()) > 2)
    if not mounted or not os.path.isdir(base):
        return 0
    for d in os.listdir(base):
        kb = int(d.split("-")[1].rstrip("kB"))
        total += int(open(os.path.join(base, d, "free_hugepages")).read()) * kb // 1024
    return total


# ---- telemetry --------------------------------------------------------------------------

class Telemetry:
    """DPDK's telemetry v2 socket of one process."""

    def __init__(self, prefix, timeout_s=30.0):
        path = f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2"
        deadline = time.time() + timeout_s
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise RuntimeError(f"no telemetry socket at {path}")
                time.sleep(0.05)
        self.s.recv(16384)  # the greeting

    def opackets(self, port=0):
        self.s.send(f"/ethdev/stats,{port}".encode())
        reply = json.loads(self.s.recv(1 << 16))
        return int(reply["/ethdev/stats"]["opackets"])

    def close(self):
        self.s.close()


def thread_cpu_s(pid, tid):
    """CPU seconds (user and system) one thread of a process has used."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name, cmd, prefix, control_cpu=None):
    """Starts cmd, waits until it forwards, returns Mpps over WINDOW_S, stops it. With a
    list for control_cpu, appends the share of a core the process's main thread (Sluice's
    control thread) used over the window."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        tel = Telemetry(prefix)
        deadline = time.time() + 30
        while tel.opackets() == 0:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{name} did not forward: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        time.sleep(WARMUP_S)
        cpu0 = thread_cpu_s(proc.pid, proc.pid) if control_cpu is not None else 0.0
        t0, c0 = time.monotonic(), tel.opackets()
        time.sleep(WINDOW_S)
        t1, c1 = time.monotonic(), tel.opackets()
        if control_cpu is not None:
            control_cpu.append((thread_cpu_s(proc.pid, proc.pid) - cpu0) / (t1 - t0))
        tel.close()
        return (c1 - c0) / (t1 - t0) / 1e6
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def pcap_packets(path):
    n = 0
    with open(path, "rb") as f:
        f.seek(24)
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return n
            f.seek(int.from_bytes(rec[8:12], "little"), 1)
            n += 1


def pipeline_config(variant):
    """The traffic part of Sluice's configuration for a variant."""
    if variant.endswith("-packet"):
        return '[flows]\nmode = "packet"\n' + pipeline_config(variant.removesuffix("-packet"))
    if variant == "forward":
        return """
[[routes]]
prefix = "198.18.0.0/16"
port = "p0"
next_hop_mac = "02:00:00:00:00:02"

[[routes]]
prefix = "2001:200::/64"
port = "p0"
next_hop_mac = "02:00:00:00:00:02"
"""
    meter = variant != "no-shape"
    mark = variant != "no-mark"
    rules = variant != "no-classify"
    out = []
    for name, prio, dscp in (("gold", "p0", "ef"), ("bulk", "p3", "af11")):
        out.append(f'[[classes]]\nname = "{name}"\npriority = "{prio}"\n')
        if mark:
            out.append(f'dscp = "{dscp}"\n')
        if meter:
            # Rates far above what one core forwards: everything conforms, nothing drops.
            out.append('meter = { type = "trtcm", cir = "400Gbit", pir = "800Gbit" }\n')
    out.append('[[classes]]\nname = "default"\n' + ('dscp = "cs1"\n' if mark else "")
               + ('meter = { type = "token-bucket", rate = "400Gbit" }\n' if meter else ""))
    if rules:
        # 99 rules that the traffic does not match, then the one it does.
        for i in range(99):
            out.append(f'[[rules]]\nclass = "bulk"\ndst = "10.{i}.0.0/16"\nprotocol = "tcp"\ndst_ports = 443\n')
        out.append('[[rules]]\nclass = "gold"\nprotocol = "udp"\n')
    for i, cloud in enumerate(("aws", "gcp")):
        out.append(f'[[paths]]\nname = "{cloud}"\ncloud = "{cloud}"\nport = "p0"\nnext_hop = "203.0.113.{i + 1}"\n'
                   f'next_hop_mac = "02:00:00:00:00:0{i + 2}"\nlatency_ms = 10\n')
    out.append('[[path_groups]]\nname = "clouds"\npaths = ["aws", "gcp"]\npolicy = "active-active"\n')
    out.append('[[routes]]\nprefix = "198.18.0.0/16"\ngroup = "clouds"\n')
    out.append('[[routes]]\nprefix = "2001:200::/64"\ngroup = "clouds"\n')
    return "\n".join(out)


def sluice_cmd(pcap, prefix, mem_args, variant="full", extra=""):
    cfg = os.path.join(WORK, prefix + ".toml")
    # net_pcap's infinite_rx keeps the whole file in mbufs, on top of rings and caches.
    # (At most 64 K beyond the file's packets: a power of two less one for 1 M flows would
    # double the hugepages needed.)
    packets = pcap_packets(pcap)
    mbufs = min((1 << (packets + 16384).bit_length()) - 1, packets + 65536)
    hugepages = '"off"' if mem_args else '"on"'
    with open(cfg, "w") as f:
        f.write(f"""[eal]
workers = [{CORE}]
control_core = {CONTROL_CORE}
hugepages = {hugepages}
file_prefix = "{prefix}"
mbufs = {mbufs}
{'memory_mb = 1536' if mem_args else ''}

[[ports]]
name = "p0"
device = "net_pcap0,rx_pcap={pcap},infinite_rx=1"

{pipeline_config(variant)}
{extra}
""")
    return [os.path.join(BIN, "sluiced"), "--config", cfg, "--log-level", "warn", "--link-wait", "0"]


def l3fwd_cmd(exe, pcap, prefix, mem_args):
    # One lcore: it polls and transmits, needing one TX queue (net_pcap has one).
    return [exe, "-l", str(CORE), "--no-pci", "--file-prefix", prefix, "--log-level=*:4", *mem_args,
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
            "--", "-L", "--parse-ptype", "-p", "0x1", f"--config=(0,0,{CORE})"]


def testpmd_cmd(pcap, prefix, mem_args):
    return ["dpdk-testpmd", "-l", f"{CONTROL_CORE},{CORE}", "--main-lcore", str(CONTROL_CORE), "--no-pci",
            "--file-prefix", prefix, "--log-level=*:4", *mem_args,
            "--vdev", f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
            "--", "--forward-mode=io", "--port-topology=loop", "--auto-start", "--stats-period=60"]


def main():
    for exe in ("sluiced", "sluice-pcapgen"):
        if not os.path.exists(os.path.join(BIN, exe)):
            sys.exit(f"bench: {exe} is not built; run `make build`")
    if not shutil.which("dpdk-testpmd"):
        sys.exit("bench: dpdk-testpmd not found; run scripts/install-deps.sh")
    pcaps = make_pcaps()
    l3fwd = build_l3fwd()
    mem_args = [] if hugepages_free_mib() >= 1024 else ["--no-huge", "-m", "1536"]
    if mem_args:
        log("not enough free hugepages: every process runs with --no-huge (slower for all)")
    if "1m" in ONLY and hugepages_free_mib() < MIB_FOR_1M:
        sys.exit(f"bench: the 1 M-flow input needs {MIB_FOR_1M} MiB of free hugepages, "
                 f"{hugepages_free_mib()} are free; reserve more, e.g. `echo 1600 > /proc/sys/vm/nr_hugepages`")
    pid = os.getpid()
    results = []
    scale = []
    for name, frame, flows, family, _ in FILES:
        if ONLY and ONLY not in name:
            continue
        pcap = pcaps[name]
        variants = VARIANTS if name == "v4-64B-4k" else ["full"]
        duts = {}
        for v in variants:
            code = "".join(w[:3] for w in v.split("-"))
            duts[f"sluice-{v}"] = (lambda v, code: lambda r: measure(
                "sluiced", sluice_cmd(pcap, f"bs{pid}{code}{r}", mem_args, v, scale_config(flows)),
                f"bs{pid}{code}{r}"))(v, code)
        if flows > 4096:
            small = pcaps["v4-64B-4k"]
            duts["sluice-full-4k"] = lambda r: measure(
                "sluiced", sluice_cmd(small, f"bs{pid}4k{r}", mem_args, "full", scale_config(flows)), f"bs{pid}4k{r}")
            if CONTROL:
                # Packet mode keeps no flows: no flow-table capacity to give.
                duts["sluice-forward-packet"] = lambda r: measure(
                    "sluiced", sluice_cmd(pcap, f"bs{pid}c{r}", mem_args, "forward-packet"), f"bs{pid}c{r}")
                duts["sluice-forward-packet-4k"] = lambda r: measure(
                    "sluiced", sluice_cmd(small, f"bs{pid}c4k{r}", mem_args, "forward-packet"), f"bs{pid}c4k{r}")
            runs = {k: [] for k in duts}
            for r in range(ROUNDS):
                for dut in (list(duts) if r % 2 == 0 else list(duts)[::-1]):
                    runs[dut].append(duts[dut](r))
                    log(f"{name} round {r + 1}/{ROUNDS}: {dut} {runs[dut][-1]:.2f} Mpps")
            line = {
                "bench": "flow-scale", "dut": "sluice", "stages": "full", "frame": frame, "family": family,
                "flows": flows, "mpps": round(statistics.median(runs["sluice-full"]), 2),
                "mpps_4k_flows": round(statistics.median(runs["sluice-full-4k"]), 2),
                "ratio_to_4k": round(statistics.median(a / b for a, b in zip(runs["sluice-full"], runs["sluice-full-4k"])), 3),
                "rounds": ROUNDS, "window_s": WINDOW_S, "core": CORE,
                "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "hugepages": not mem_args,
            }
            if CONTROL:
                a, b = runs["sluice-forward-packet"], runs["sluice-forward-packet-4k"]
                line["control"] = {
                    "stages": "forward-packet", "mpps": round(statistics.median(a), 2),
                    "mpps_4k_flows": round(statistics.median(b), 2),
                    "ratio_to_4k": round(statistics.median(x / y for x, y in zip(a, b)), 3),
                }
            scale.append(line)
            print(json.dumps(line), flush=True)
            continue
        duts["l3fwd"] = lambda r: measure("l3fwd", l3fwd_cmd(l3fwd, pcap, f"bl{pid}{r}", mem_args), f"bl{pid}{r}")
        duts["testpmd"] = lambda r: measure("testpmd", testpmd_cmd(pcap, f"bt{pid}{r}", mem_args), f"bt{pid}{r}")
        runs = {k: [] for k in duts}
        order = list(duts)
        for r in range(ROUNDS):
            k = r % len(order)
            for dut in order[k:] + order[:k]:
                mpps = duts[dut](r)
                runs[dut].append(mpps)
                log(f"{name} round {r + 1}/{ROUNDS}: {dut} {mpps:.2f} Mpps")
        med = {k: statistics.median(v) for k, v in runs.items()}
        for v in variants:
            me = f"sluice-{v}"
            for peer in ("l3fwd", "testpmd"):
                paired = statistics.median(a / b for a, b in zip(runs[me], runs[peer]))
                line = {
                    "bench": "throughput", "dut": "sluice", "stages": v, "frame": frame, "family": family,
                    "flows": flows, "mpps": round(med[me], 2), "peer": peer, "peer_mpps": round(med[peer], 2),
                    **({"peer_link": L3FWD_LINK} if peer == "l3fwd" else {}),
                    "ratio": round(paired, 3), "ratio_of_medians": round(med[me] / med[peer], 3),
                    "rounds": ROUNDS, "window_s": WINDOW_S, "core": CORE,
                    "runs": {k: [round(x, 2) for x in runs[k]] for k in (me, peer)},
                    "hugepages": not mem_args,
                }
                results.append(line)
                print(json.dumps(line), flush=True)

    print()
    print(f"{'input':<14} {'stages':<14} {'sluice Mpps':>12} {'l3fwd Mpps':>11} {'testpmd io':>11} {'vs l3fwd':>9} {'vs testpmd':>11}")
    for i in range(0, len(results), 2):
        a, b = results[i], results[i + 1]
        name = f"{a['family']} {a['frame']}{'B' if a['frame'] != 'imix' else ''} {a['flows'] // 1024}k"
        print(f"{name:<14} {a['stages']:<14} {a['mpps']:>12.2f} {a['peer_mpps']:>11.2f} {b['peer_mpps']:>11.2f} "
              f"{a['ratio']:>9.3f} {b['ratio']:>11.3f}")
    for line in scale:
        print(f"flow scale: {line['flows']} flows {line['mpps']:.2f} Mpps, 4k flows {line['mpps_4k_flows']:.2f} Mpps: "
              f"{line['ratio_to_4k']:.3f} of the 4k-flow rate")
        if "control" in line:
            c = line["control"]
            print(f"  control, forward-packet (no flow table): {c['mpps']:.2f} Mpps against {c['mpps_4k_flows']:.2f}: "
                  f"{c['ratio_to_4k']:.3f}")
    print(f"(Mpps: medians of {ROUNDS} interleaved rounds of {WINDOW_S:.0f} s on core {CORE}; "
          "ratios: medians of the per-round ratios)")
    results += scale
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.jsonl"), "w") as f:
        for line in results:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
