#!/usr/bin/env python3
"""A full snapshot of master data as one upstream batch, in aggrelog's JSON Lines format: one
delta per aggregate holding its whole state (about 2.6 KB of JSON: six components with 12-20
attributes each), all at one seq. 400000 aggregates make a file of about 1 GiB.

    python3 scripts/snapshot-jsonl.py AGGREGATES > snapshot.jsonl
"""
import json
import random
import sys

random.seed(7)
aggregates = int(sys.argv[1])
seq = 1000
components = ["engine", "cabin", "avionics", "landing_gear", "wing", "fuselage"]
out = sys.stdout
for a in range(aggregates):
    state = {}
    for c in components:
        comp = {}
        for k in range(random.randint(12, 20)):
            r = random.random()
            if r < 0.4:
                value = random.randint(0, 10**9)
            elif r < 0.8:
                value = f"{c}-{a}-{k}-{random.randint(0, 10**6)}"
            elif r < 0.95:
                value = round(random.random() * 1000, 3)
            else:
                value = None
            comp[f"attr_{k:02d}"] = value
        state[c] = comp
    line = {"aggregate": f"aircraft-{a:07d}", "seq": seq, "patch": state}
    out.write(json.dumps(line, separators=(",", ":")))
    out.write("\n")
