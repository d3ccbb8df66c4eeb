#!/usr/bin/env python3
"""sluice-pktgen benchmarks (BENCHMARKS.md setups 3 and 4, and the generator's own speed).

pktgen-tx: sluice-pktgen's transmit rate (one TX lcore, 64-byte UDP frames over 4096
  flows, signature, timestamp and checksums in every frame) against dpdk-testpmd
  --forward-mode=txonly --txonly-multi-flow (60-byte packets + FCS), both into net_null on
  core 1; interleaved rounds, rates read from DPDK telemetry; the ratio is the median of
  the per-round ratios.
flow-scale-pktgen (setup 2): sluiced with the full pipeline, memif in and net_null out,
  fed by pktgen TX-only at its maximum with 4 K, 1 M and 10 M distinct flows; sluiced's
  forwarding rate at each, and as a ratio to the 4 K-flow rate, interleaved rounds. memif
  pushes back, so pktgen sends exactly what sluiced takes.
zero-loss and latency: sluice-pktgen <-> device under test over net_memif, the DUT's
  worker on core 1, pktgen's TX+RX lcore on core 0, memif rings of 4096. DUTs: sluiced
  (full pipeline, as in bench.py) and dpdk-testpmd --forward-mode=io. NDR and PDR (0.5 %)
  by pktgen's RFC 2544 search from pktgen's own maximum (a failing trial is repeated
  twice before the rate fails), then latency at 10 %, 50 % and 90 % of the NDR. When the
  first trial, at pktgen's maximum, passes, the DUT is faster than the generator and the
  figure is the generator's ("generator_bound").

Prints one JSON line per result and a human table; writes the lines to
bench-results/pktgen.jsonl.   QUICK=1: shorter trials and fewer rounds.
"""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (shares the telemetry reader, the Sluice pipeline config and paths)

QUICK = bench.QUICK
ROUNDS = int(os.environ.get("ROUNDS", 2 if QUICK else 3))
TRIAL = "1s" if QUICK else "2s"
SETTLE = "500ms"
PKTGEN = os.path.join(bench.BIN, "sluice-pktgen")
WORK = bench.WORK
# memif rings of 4096 slots (default 1024): the two processes share two CPUs, and a
# millisecond's descheduling of either must not overflow a ring and pass for a limit.
RSIZE = 12
# A failing search trial is repeated this many more times before its rate counts as
# failed (QUICK: none).
RETRIES = "0" if QUICK else "2"


def log(msg):
    print(f"pktgen-bench: {msg}", file=sys.stderr, flush=True)


def mem_args():
    return [] if bench.hugepages_free_mib() >= 1024 else ["--no-huge", "-m", "1024"]


def stop(proc, timeout=30):
    """SIGINT, then SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def remove_hugepage_files(prefix):
    """memif regions leave hugepage files behind after a DPDK process exits."""
    for f in os.listdir("/dev/hugepages") if os.path.isdir("/dev/hugepages") else []:
        if f.startswith(f"{prefix}map_"):
            os.unlink(os.path.join("/dev/hugepages", f))


def pktgen_tx_cmd(prefix, mem):
    huge = ["--hugepages", "off"] if mem else []
    return [PKTGEN, "run", "--port", "net_null0", "--rx-lcores", "none", "--tx-lcores", str(bench.CORE),
            "--dst", "198.18.0.0/20", "--flows", "4096", "--duration", "120s", "-q",
            "--file-prefix", prefix, *huge]


def testpmd_txonly_cmd(prefix, mem):
    return ["dpdk-testpmd", "-l", f"{bench.CONTROL_CORE},{bench.CORE}", "--main-lcore", str(bench.CONTROL_CORE),
            "--no-pci", "--file-prefix", prefix, "--log-level=*:4", *mem, "--vdev", "net_null0",
            "--", "--forward-mode=txonly", "--txonly-multi-flow", "--txpkts=60", "--auto-start",
            "--stats-period=60"]


def bench_tx(mem, pid):
    runs = {"pktgen": [], "testpmd": []}
    duts = {
        "pktgen": lambda r: bench.measure("sluice-pktgen", pktgen_tx_cmd(f"pgt{pid}{r}", mem), f"pgt{pid}{r}"),
        "testpmd": lambda r: bench.measure("testpmd", testpmd_txonly_cmd(f"tpt{pid}{r}", mem), f"tpt{pid}{r}"),
    }
    for r in range(ROUNDS):
        for d in (["pktgen", "testpmd"] if r % 2 == 0 else ["testpmd", "pktgen"]):
            runs[d].append(duts[d](r))
            log(f"tx round {r + 1}/{ROUNDS}: {d} {runs[d][-1]:.2f} Mpps")
    return {
        "bench": "pktgen-tx", "frame": 64, "flows": 4096, "port": "net_null", "core": bench.CORE,
        "mpps": round(statistics.median(runs["pktgen"]), 2), "peer": "testpmd-txonly",
        "peer_mpps": round(statistics.median(runs["testpmd"]), 2),
        "ratio": round(statistics.median(a / b for a, b in zip(runs["pktgen"], runs["testpmd"])), 3),
        "rounds": ROUNDS, "window_s": bench.WINDOW_S,
        "runs": {k: [round(x, 2) for x in v] for k, v in runs.items()}, "hugepages": not mem,
    }


def sluiced_cmd(prefix, ports, mem, extra=""):
    """sluiced with the full pipeline of bench.py (which routes to port "p0"), the given
    [[ports]] tables and extra sections; worker on CORE, control thread on CONTROL_CORE."""
    cfg = os.path.join(WORK, prefix + ".toml")
    with open(cfg, "w") as f:
        f.write(f"""[eal]
workers = [{bench.CORE}]
control_core = {bench.CONTROL_CORE}
hugepages = {'"off"' if mem else '"auto"'}
file_prefix = "{prefix}"
{'memory_mb = 1024' if mem else ''}
{extra}
{ports}
{bench.pipeline_config("full")}
""")
    return [os.path.join(bench.BIN, "sluiced"), "--config", cfg, "--log-level", "warn", "--link-wait", "0"]


def sluiced_memif(prefix, sock, mem):
    ports = f'[[ports]]\nname = "p0"\ndevice = "net_memif0,role=server,socket={sock},rsize={RSIZE}"\n'
    # sluiced has one memif queue per worker plus the control thread's: pktgen matches it.
    return sluiced_cmd(prefix, ports, mem), 2


def testpmd_memif(prefix, sock, mem):
    return ["dpdk-testpmd", "-l", f"{bench.CONTROL_CORE},{bench.CORE}", "--main-lcore", str(bench.CONTROL_CORE),
            "--no-pci", "--file-prefix", prefix, "--log-level=*:4", *mem,
            "--vdev", f"net_memif0,role=server,socket={sock},rsize={RSIZE}",
            "--", "--forward-mode=io", "--port-topology=loop", "--auto-start", "--stats-period=60"], 1


def pktgen_json(args, prefix, sock, queues, mem):
    huge = ["--hugepages", "off"] if mem else []
    cmd = [PKTGEN, "run", "--port", f"net_memif0,role=client,socket={sock},rsize={RSIZE}", "--queues", str(queues),
           "--tx-lcores", "1", "--rx-lcores", "1", "--eal", "--lcores 0@0,1@0", "--link-wait", "20s",
           "--dst", "198.18.0.0/20", "--flows", "4096", "--json", "-q", "--file-prefix", prefix, *huge,
           # The DUT's control thread shares core 0 with this generator's lcores here, so
           # it may see the new memif link up late: give it time before the first packet.
           "--settle", SETTLE, *args]
    for attempt in range(3):
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
        # A memif server may still hold the previous client's connection for a moment.
        if out.returncode == 0 or b"starting port" not in out.stderr:
            break
        log(f"memif peer busy, retrying ({out.stderr.decode().strip()[-200:]})")
        time.sleep(1.0)
    if out.returncode != 0:
        raise RuntimeError(f"sluice-pktgen failed: {' '.join(cmd)}\n{out.stderr.decode()[-3000:]}")
    return json.loads(out.stdout)


def bench_dut(name, make_cmd, mem, pid):
    sock = os.path.join(WORK, f"pg{pid}{name}.sock")
    cmd, queues = make_cmd(f"dut{pid}{name}", sock, mem)

    def start():
        if os.path.exists(sock):
            os.unlink(sock)
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    dut = start()
    restarts = 0

    def trial(args, prefix):
        # A DPDK memif server can die when a client disconnects (memif_disconnect unmaps
        # regions the forwarding lcore may still read). testpmd io does; sluiced waits for
        # its pollers first (dataplane::quiesce). A server that died is started again and
        # the trial run again, at most twice per trial.
        nonlocal dut, restarts
        for attempt in range(3):
            if dut.poll() is not None:
                restarts += 1
                log(f"{name} exited (status {dut.returncode}): starting it again (restart {restarts})")
                stop(dut)
                remove_hugepage_files(f"dut{pid}{name}")
                dut = start()
            try:
                return pktgen_json(args, prefix, sock, queues, mem)
            except RuntimeError:
                if dut.poll() is None or attempt == 2:
                    raise
    try:
        res = {}
        for goal in ("ndr", "pdr"):
            r = trial(["--rate", "max", "--search", goal, "--retries", RETRIES, "--duration", TRIAL],
                      f"pg{pid}{name}{goal}")
            res[goal] = r
            log(f"{name}: {goal} {r['rate_pps'] / 1e6:.3f} Mpps after {len(r['trials'])} trials")
        ndr = res["ndr"]["rate_pps"]
        lat = {}
        for pct in (10, 50, 90):
            pps = max(int(ndr * pct / 100), 1000)
            r = trial(["--rate", f"{pps}pps", "--duration", TRIAL], f"pg{pid}{name}l{pct}")
            lat[pct] = r["total"]
            log(f"{name}: at {pct}% of NDR ({pps} pps) p50 {r['total']['latency']['p50_ns']} ns, "
                f"p99 {r['total']['latency']['p99_ns']} ns, loss {r['total']['lost']}")
        res["restarts"] = restarts
        return res, lat
    finally:
        stop(dut)
        remove_hugepage_files(f"dut{pid}{name}")


def sluiced_scale(prefix, sock, mem, capacity):
    ports = (f'[[ports]]\nname = "in"\ndevice = "net_memif0,role=server,socket={sock},rsize={RSIZE}"\n\n'
             '[[ports]]\nname = "p0"\ndevice = "net_null0,no-rx=1"\n')
    return sluiced_cmd(prefix, ports, mem, f"[flows]\ncapacity = {capacity}\n")


def scale_run(flows, capacity, mem, tag):
    """sluiced (memif in, net_null out, full pipeline) fed by pktgen TX-only at its maximum
    with `flows` distinct flows; returns (sluiced Mpps, pktgen Mpps, flow-table MiB)."""
    sock = os.path.join(WORK, f"sc{tag}.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    dprefix, gprefix = f"scd{tag}", f"scg{tag}"
    dut = subprocess.Popen(sluiced_scale(dprefix, sock, mem, capacity), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gen = None
    try:
        huge = ["--hugepages", "off"] if mem else []
        gen = subprocess.Popen([PKTGEN, "run", "--port", f"net_memif0,role=client,socket={sock},rsize={RSIZE}",
                                "--queues", "2", "--tx-lcores", "1", "--rx-lcores", "none", "--eal", "--lcores 0@0,1@0",
                                "--link-wait", "30s", "--dst", "198.18.0.0/16", "--sport", "1024-1279",
                                "--flows", str(flows), "--duration", "600s", "-q", "--file-prefix", gprefix, *huge],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        td, tg = bench.Telemetry(dprefix, 60), bench.Telemetry(gprefix, 60)
        deadline = time.time() + 60
        while td.opackets(1) == 0:
            if dut.poll() is not None or gen.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"flow scale {flows}: no traffic: {dut.stderr.read().decode()[-1500:]}")
            time.sleep(0.05)
        # Every flow seen at least once before the window (10 M flows take a second or two).
        # Inserting a new flow costs more than finding one: wait until every flow is in.
        time.sleep(bench.WARMUP_S + flows / 2e6)
        t0, d0, g0 = time.monotonic(), td.opackets(1), tg.opackets(0)
        time.sleep(bench.WINDOW_S)
        t1, d1, g1 = time.monotonic(), td.opackets(1), tg.opackets(0)
        td.close()
        tg.close()
        return (d1 - d0) / (t1 - t0) / 1e6, (g1 - g0) / (t1 - t0) / 1e6
    finally:
        stop(gen)
        stop(dut)
        remove_hugepage_files(dprefix)


def bench_scale(mem, pid):
    """Setup 2: the whole pipeline's rate at 4 K, 1 M and 10 M concurrent flows, interleaved."""
    sizes = [4096, 1 << 20] + ([] if QUICK else [10_000_000])
    capacity = 12_000_000 if not QUICK else 2_000_000
    rounds = 1 if QUICK else 2
    runs = {n: [] for n in sizes}
    gen = {n: [] for n in sizes}
    for r in range(rounds):
        for n in (sizes if r % 2 == 0 else sizes[::-1]):
            d, g = scale_run(n, capacity, mem, f"{pid}{r}{n}")
            runs[n].append(d)
            gen[n].append(g)
            log(f"flow scale round {r + 1}/{rounds}: {n} flows: sluiced {d:.2f} Mpps (pktgen sent {g:.2f})")
    out = []
    base = runs[4096]
    for n in sizes:
        out.append({
            "bench": "flow-scale-pktgen", "dut": "sluice", "stages": "full", "frame": 64, "flows": n,
            "flow_capacity": capacity, "link": "net_memif", "mpps": round(statistics.median(runs[n]), 2),
            "pktgen_mpps": round(statistics.median(gen[n]), 2),
            "ratio_to_4k": round(statistics.median(a / b for a, b in zip(runs[n], base)), 3),
            "rounds": rounds, "window_s": bench.WINDOW_S, "runs": [round(x, 2) for x in runs[n]],
            "hugepages": not mem,
        })
    return out


def main():
    for exe in ("sluiced", "sluice-pktgen"):
        if not os.path.exists(os.path.join(bench.BIN, exe)):
            sys.exit(f"pktgen-bench: {exe} is not built; run `make build`")
    os.makedirs(WORK, exist_ok=True)
    mem = mem_args()
    if mem:
        log("not enough free hugepages: every process runs with --no-huge (slower for all)")
    pid = os.getpid()
    only_scale = os.environ.get("SCALE") == "only"
    lines = [bench_tx(mem, pid)] if not os.environ.get("DUT") and not only_scale else [{}]
    if lines[0]:
        print(json.dumps(lines[0]), flush=True)
    if os.environ.get("TX") == "only":
        return
    if os.environ.get("SCALE", "1") != "0" and not os.environ.get("DUT"):
        for line in bench_scale(mem, pid):
            lines.append(line)
            print(json.dumps(line), flush=True)
    duts = {}
    for name, make in (("sluiced", sluiced_memif), ("testpmd-io", testpmd_memif)):
        if os.environ.get("DUT", name) == name and not only_scale:
            duts[name] = bench_dut(name, make, mem, pid)
    for name, (res, lat) in duts.items():
        for goal in ("ndr", "pdr"):
            r = res[goal]
            best = r["result"]["total"] if r["result"] else {}
            line = {"bench": f"zero-loss-{goal}", "dut": name, "link": "net_memif", "frame": 64, "flows": 4096,
                    "mpps": round(r["rate_pps"] / 1e6, 3), "max_loss_ratio": r["max_loss_ratio"],
                    "trials": len(r["trials"]), "trial_s": TRIAL, "retries": int(RETRIES),
                    "dut_restarts": res["restarts"],
                    "p99_ns": best.get("latency", {}).get("p99_ns"),
                    # Passing at the generator's own maximum: the DUT is faster than this test.
                    "generator_bound": bool(r["trials"]) and r["trials"][0]["pass"] and r["trials"][0]["scale"] == 1.0,
                    "hugepages": not mem}
            lines.append(line)
            print(json.dumps(line), flush=True)
        for pct, t in lat.items():
            l = t["latency"]
            line = {"bench": "latency", "dut": name, "link": "net_memif", "frame": 64, "flows": 4096,
                    "pct_of_ndr": pct, "pps": round(t["tx_pps"]), "lost": t["lost"],
                    **{k: l[k] for k in ("min_ns", "p50_ns", "p99_ns", "p999_ns", "max_ns")}, "hugepages": not mem}
            lines.append(line)
            print(json.dumps(line), flush=True)
    # Ratios of Sluice to testpmd io.
    for goal in ("ndr", "pdr") if len(duts) == 2 else ():
        a = next(l for l in lines if l.get("bench") == f"zero-loss-{goal}" and l["dut"] == "sluiced")
        b = next(l for l in lines if l.get("bench") == f"zero-loss-{goal}" and l["dut"] == "testpmd-io")
        a["peer"], a["peer_mpps"] = "testpmd-io", b["mpps"]
        a["ratio"] = round(a["mpps"] / b["mpps"], 3) if b["mpps"] else None
    print()
    t = lines[0]
    if t:
        print(f"pktgen TX {t['mpps']:.2f} Mpps vs testpmd txonly {t['peer_mpps']:.2f} Mpps: {t['ratio']:.3f} "
              f"(medians of {ROUNDS} interleaved rounds)")
    print(f"{'dut':<12} {'NDR Mpps':>9} {'PDR Mpps':>9} | latency at % of NDR: p50 / p99 / max (us)")
    for name in duts:
        n = next(l for l in lines if l.get("bench") == "zero-loss-ndr" and l["dut"] == name)
        p = next(l for l in lines if l.get("bench") == "zero-loss-pdr" and l["dut"] == name)
        lat = " | ".join(f"{l['pct_of_ndr']}%: {l['p50_ns'] / 1e3:.1f} / {l['p99_ns'] / 1e3:.1f} / {l['max_ns'] / 1e3:.1f}"
                         for l in lines if l.get("bench") == "latency" and l["dut"] == name)
        print(f"{name:<12} {n['mpps']:>9.3f} {p['mpps']:>9.3f} | {lat}")
    for l in lines:
        if l.get("bench") == "flow-scale-pktgen":
            print(f"flow scale: {l['flows']} flows: sluiced {l['mpps']:.2f} Mpps (offered {l['pktgen_mpps']:.2f}), "
                  f"{l['ratio_to_4k']:.3f} of the 4k-flow rate")
    if any(l.get("bench") == "flow-scale-pktgen" for l in lines):
        print("(memif pushes back: pktgen sends what sluiced takes, so the offered and forwarded rates match; "
              "if the 4k-flow rate is the generator's limit, the true ratios are lower)")
    os.makedirs(bench.RESULTS, exist_ok=True)
    with open(os.path.join(bench.RESULTS, "pktgen.jsonl"), "w") as f:
        for l in lines:
            if l:
                f.write(json.dumps(l) + "\n")


if __name__ == "__main__":
    main()
