#!/usr/bin/env python3
"""How long a read-only `aggrelog get` (a whole process: open beside the writer, one fold) takes
on DB when idle, while `aggrelog ingest --db DB FILE` runs, and after it.

    python3 scripts/get-during-ingest.py DB FILE [AGGREGATE]

AGGRELOG names the binary (default: target/release/aggrelog).
"""
import os
import statistics
import subprocess
import sys
import time

binary = os.environ.get("AGGRELOG", "target/release/aggrelog")
db, data = sys.argv[1], sys.argv[2]
aggregate = sys.argv[3] if len(sys.argv) > 3 else "aircraft-0000042"


def get_ms():
    started = time.perf_counter()
    done = subprocess.run([binary, "get", "--db", db, aggregate], capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"get failed: {done.stderr.decode()}")
    return elapsed


def summary(name, times):
    times = sorted(times)
    p90 = times[int(len(times) * 0.9)]
    print(f"{name}: n={len(times)} p50={statistics.median(times):.0f} ms "
          f"p90={p90:.0f} ms max={times[-1]:.0f} ms")


summary("idle", [get_ms() for _ in range(30)])
ingest = subprocess.Popen([binary, "ingest", "--db", db, data],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
during = []
while ingest.poll() is None:
    during.append(get_ms())
print(ingest.stderr.read().decode().strip())
summary("during the ingest", during)
summary("after", [get_ms() for _ in range(30)])
