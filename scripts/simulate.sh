#!/usr/bin/env bash
# Runs the deterministic crash simulation (tests/simulation.rs) over fresh seeds for a chosen
# time, in chunks, and stops at the first failing seed (printing the command that reproduces it).
# Usage: scripts/simulate.sh SECONDS [FIRST_SEED] [STEPS] [SEEDS_PER_CHUNK]
set -euo pipefail
seconds=${1:?usage: scripts/simulate.sh SECONDS [FIRST_SEED] [STEPS] [SEEDS_PER_CHUNK]}
seed=${2:-100000}
steps=${3:-120}
chunk=${4:-2000}
cd "$(dirname "$0")/.."
cargo test --release --test simulation --no-run >/dev/null 2>&1
deadline=$(( $(date +%s) + seconds ))
total=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! out=$(SIM_FIRST_SEED=$seed SIM_SEEDS=$chunk SIM_STEPS=$steps \
      cargo test --release --test simulation -- --nocapture 2>&1); then
    echo "$out" | grep -E "seed [0-9]+:|reproduce with" || echo "$out" | tail -20
    exit 1
  fi
  echo "$out" | grep "simulated"
  seed=$(( seed + chunk ))
  total=$(( total + chunk ))
done
echo "no failure in $total seeds of $steps steps (up to seed $seed) in $seconds s"
