#!/usr/bin/env bash
# Reproduces the checkpoint/compaction figures of README.md on the mfg workload:
# ingest with background compaction off and on, open with and without a checkpoint, and disk
# bytes after a full compaction against a fresh log holding only the live state.
# Usage: scripts/compaction-figures.sh [DELTAS] [AGGREGATES] [WORKDIR]
set -euo pipefail
deltas=${1:-2000000}
aggregates=${2:-100000}
work=${3:-$(mktemp -d)}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --manifest-path "$here/Cargo.toml" >/dev/null 2>&1
bin="$here/target/release/aggrelog"
seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }

[ -d "$work/mfg" ] || python3 "$here/../shared/workload/mfg.py" --out "$work/mfg" \
  --aggregates "$aggregates" --deltas "$deltas"
rm -rf "$work/off" "$work/on" "$work/live" "$work/live-db"
echo "ingest, background compaction off: $(seconds "$bin" ingest --db "$work/off" --no-compaction "$work"/mfg/*.jsonl) s"
echo "ingest, background compaction on:  $(seconds "$bin" ingest --db "$work/on" "$work"/mfg/*.jsonl) s"

for db in off on; do
  "$bin" checkpoint --db "$work/$db" >/dev/null
  for i in 1 2 3; do echo "open $db with checkpoint: $(seconds "$bin" stats --db "$work/$db") s"; done
  mv "$work/$db/checkpoints" "$work/$db.ckpt"
  for i in 1 2 3; do echo "open $db full replay:     $(seconds "$bin" stats --db "$work/$db") s"; done
  mv "$work/$db.ckpt" "$work/$db/checkpoints"
done

"$bin" compact --db "$work/off"
mkdir -p "$work/live"
"$bin" scan --db "$work/off" | python3 -c '
import json, sys
out, n = None, 0
for line in sys.stdin:
    d = json.loads(line)
    if n % 1000 == 0:
        out = open(sys.argv[1] + "/live-%06d.jsonl" % (n // 1000), "w")
    out.write(json.dumps({"aggregate": d["aggregate"], "seq": d["seq"], "patch": d["state"]}, separators=(",", ":")) + "\n")
    n += 1
' "$work/live"
"$bin" ingest --db "$work/live-db" --no-compaction "$work"/live/*.jsonl >/dev/null
echo "disk bytes after full compaction: $(du -sb "$work/off" | cut -f1) (log $(du -sb "$work/off/wal" | cut -f1))"
echo "fresh log of the live state:      $(du -sb "$work/live-db" | cut -f1) (log $(du -sb "$work/live-db/wal" | cut -f1))"
