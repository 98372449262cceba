//! Deterministic simulation: many seeds, each a random scenario of writes (duplicated, out of
//! order), reads, checkpoints, compactions, seals, injected faults (short writes, ENOSPC, failing
//! fsync and reads) and crashes over the simulated storage, checked after every recovery
//! (see `aggrelog::testing::simulation`).
//!
//! `SIM_SEEDS=N` sets how many seeds run (default 2000, of `SIM_STEPS` = 100 steps), `SIM_FIRST_SEED=S` where they start, and
//! `SIM_SEED=S` runs exactly one seed: a failure prints the command that reproduces it.

use aggrelog::testing::simulation::{random_scenario, run, Outcome};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn every_seed_keeps_every_acknowledged_batch_and_the_oracle_state() {
    let (first, count) = match env_u64("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (
            env_u64("SIM_FIRST_SEED").unwrap_or(0),
            env_u64("SIM_SEEDS").unwrap_or(2000),
        ),
    };
    let steps = env_u64("SIM_STEPS").unwrap_or(100) as usize;
    let mut total = Outcome::default();
    for seed in first..first + count {
        match run(&random_scenario(seed, steps)) {
            Ok(outcome) => {
                total.crashes += outcome.crashes;
                total.recoveries += outcome.recoveries;
                total.acknowledged += outcome.acknowledged;
                total.failed_writes += outcome.failed_writes;
                total.faults += outcome.faults;
            }
            Err(e) => panic!(
                "{e}\nreproduce with: SIM_SEED={seed} SIM_STEPS={steps} cargo test --release --test simulation -- --nocapture"
            ),
        }
    }
    eprintln!("simulated {count} seeds from {first}: {total:?}");
    assert!(
        total.crashes >= count,
        "every scenario crashes at least once"
    );
    if count >= 50 {
        assert!(
            total.faults > 0 && total.failed_writes > 0,
            "faults were exercised: {total:?}"
        );
    }
}
