#!/usr/bin/env python3
"""The scaling table of issue 11: `aggrelog bench --json` at several sizes (20 deltas per
aggregate), medians over RUNS runs per size, each figure printed beside its target.

    python3 scripts/scaling.py [--sizes 2000000,8000000] [--runs 3] [--json]

AGGRELOG names the binary (default: target/release/aggrelog). 32M deltas need about 5 GB of
disk and several minutes per run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

BINARY = os.environ.get("AGGRELOG", "target/release/aggrelog")

# (figure, bench key, unit, target text, is the target met by this value?)
FIGURES = [
    ("open, full replay", "open_ms", "ms", "<= 150 ms at 2M, 2.5 s at 32M", None),
    ("open, checkpoint (uncompacted)", "open_checkpoint_ms", "ms", "<= 20 ms at 2M", None),
    ("open, checkpoint after compaction", "open_compacted_checkpoint_ms", "ms", "-", None),
    ("ingest, fsync per batch", "ingest_sync_mb_s", "MB/s", ">= 300", lambda v: v >= 300),
    ("ingest, one spanning batch", "ingest_spanning_mb_s", "MB/s", "-", None),
    ("replay, log order", "replay_mb_s", "MB/s", ">= 2000 (open)", None),
    ("materialize (2 threads)", "materialize_deltas_s", "deltas/s", ">= 4M", lambda v: v >= 4e6),
    ("point get p50, uncompacted", "get_p50_us", "us", "<= 5", lambda v: v <= 5),
    ("point get p99, uncompacted", "get_p99_us", "us", "<= 40", lambda v: v <= 40),
    ("point get p50, compacted", "get_compacted_p50_us", "us", "<= 2.5", lambda v: v <= 2.5),
    ("point get p99, compacted", "get_compacted_p99_us", "us", "<= 15", lambda v: v <= 15),
    ("full compaction", "compact_s", "s", "-", None),
    ("index bytes per aggregate", "index_bytes_per_aggregate", "B", "<= 64 + id + 8/delta", None),
    ("peak RSS", "peak_rss_mb", "MB", "<= index + 128 MB", None),
]


def run(deltas, runs):
    results = []
    for n in range(runs):
        out = subprocess.run(
            [BINARY, "bench", "--json", "--deltas", str(deltas), "--aggregates", str(deltas // 20)],
            capture_output=True, check=True, text=True)
        results.append(json.loads(out.stdout))
        print(f"  {deltas} deltas, run {n + 1} of {runs} done", file=sys.stderr)
    return {key: statistics.median(r[key] for r in results) for key in results[0]
            if isinstance(results[0][key], (int, float))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2000000,8000000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    medians = {size: run(size, args.runs) for size in sizes}
    if args.json:
        print(json.dumps({str(k): v for k, v in medians.items()}))
        return
    head = " | ".join(f"{s / 1e6:g}M" for s in sizes)
    print(f"| figure | {head} | target |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    for name, key, unit, target, met in FIGURES:
        cells = []
        for size in sizes:
            value = medians[size].get(key)
            if value is None:
                cells.append("-")
                continue
            mark = "" if met is None else (" (met)" if met(value) else " (not met)")
            cells.append(f"{value:,.1f} {unit}{mark}")
        print(f"| {name} | " + " | ".join(cells) + f" | {target} |")


if __name__ == "__main__":
    main()
