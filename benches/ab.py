#!/usr/bin/env python3
"""A/B of two sluiced binaries on setup 1's 64-byte, 4 K-flow input, interleaved.

usage: python3 benches/ab.py OLD_SLUICED NEW_SLUICED [VARIANTS [ROUNDS]]
  VARIANTS: bench.py's Sluice configurations, comma-separated (default full)
  ROUNDS:   default 7

Each round runs every variant with the old and the new binary, the one going first
alternating from round to round, then l3fwd once for scale. Prints the medians and the
median of the per-round new/old ratios: on these shared machines rates move by up to 2×
between minutes, so only a ratio of runs made side by side means anything.

Take OLD from a clean clone at the old commit: `cargo bench` and scripts/instructions.sh
rebuild target/release/sluiced from the working tree.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    if len(sys.argv) < 3 or not all(os.access(p, os.X_OK) for p in sys.argv[1:3]):
        sys.exit(__doc__)
    old, new = sys.argv[1], sys.argv[2]
    variants = sys.argv[3].split(",") if len(sys.argv) > 3 else ["full"]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 7
    pcap = bench.make_pcaps()["v4-64B-4k"]
    l3fwd = bench.build_l3fwd()
    mem_args = [] if bench.hugepages_free_mib() >= 1024 else ["--no-huge", "-m", "1536"]
    pid = os.getpid()
    runs = {}
    for r in range(rounds):
        order = [("old", old), ("new", new)] if r % 2 == 0 else [("new", new), ("old", old)]
        for v in variants:
            for tag, exe in order:
                prefix = f"ab{pid}{tag}{r}"
                cmd = bench.sluice_cmd(pcap, prefix, mem_args, v)
                cmd[0] = exe
                runs.setdefault((v, tag), []).append(bench.measure("sluiced", cmd, prefix))
        prefix = f"abl{pid}{r}"
        runs.setdefault(("l3fwd", ""), []).append(
            bench.measure("l3fwd", bench.l3fwd_cmd(l3fwd, pcap, prefix, mem_args), prefix))
        bench.log(f"round {r + 1}/{rounds}: " + ", ".join(f"{v}{'/' + t if t else ''} {x[-1]:.2f}"
                                                         for (v, t), x in runs.items()))
    for v in variants:
        a, b = runs[(v, "old")], runs[(v, "new")]
        ratio = statistics.median(y / x for x, y in zip(a, b))
        print(f"{v}: old {statistics.median(a):.2f} Mpps, new {statistics.median(b):.2f} Mpps, "
              f"new/old {ratio:.3f} (median of {rounds} rounds)")
    print(f"l3fwd: {statistics.median(runs[('l3fwd', '')]):.2f} Mpps")


if __name__ == "__main__":
    main()
