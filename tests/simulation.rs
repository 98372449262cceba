//! Deterministic simulation: many seeds, each a random scenario of writes (duplicated, out of
//! order, some spanning segments), reads, checkpoints, compactions, seals, retractions and
//! unretractions, injected faults (short writes, ENOSPC, failing fsync and reads) and crashes over the simulated storage, checked after every recovery
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
                total.spanning_writes += outcome.spanning_writes;
                total.retractions += outcome.retractions;
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
        assert!(
            total.spanning_writes > 0,
            "spanning batches were written: {total:?}"
        );
        assert!(
            total.retractions > 0,
            "retraction records were written: {total:?}"
        );
    }
}

/// The runner checks any model against its own oracle, and catches one that is not
/// order-independent: this register lets the delta that *arrives* last win.
#[test]
fn a_model_that_depends_on_arrival_order_is_caught() {
    use aggrelog::testing::simulation::{run_model, Simulated};
    use aggrelog::{DeltaKind, DeltaView, Model, ModelError};
    use serde_json::Value;

    #[derive(Clone)]
    struct ArrivalWins;

    impl Model for ArrivalWins {
        type State = Option<Option<Vec<u8>>>;
        type Output = Vec<u8>;
        fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError> {
            *state = Some((delta.kind == DeltaKind::Patch).then(|| delta.body.to_vec()));
            Ok(())
        }
        fn output(&self, state: &Self::State) -> Option<Vec<u8>> {
            state.clone().flatten()
        }
        fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>) {
            if let Some(body) = state {
                out.push(u8::from(body.is_some()));
                out.extend_from_slice(body.as_deref().unwrap_or_default());
            }
        }
        fn join_encoded_state(
            &self,
            state: &mut Self::State,
            bytes: &[u8],
        ) -> Result<(), ModelError> {
            if let Some((&present, body)) = bytes.split_first() {
                *state = Some((present == 1).then(|| body.to_vec()));
            }
            Ok(())
        }
        fn forget_below(&self, _state: &mut Self::State, _seal: u64) {}
        fn is_empty(&self, state: &Self::State) -> bool {
            state.is_none()
        }
    }

    impl Simulated for ArrivalWins {
        fn encode_patch(&self, patch: &Value) -> Vec<u8> {
            patch.to_string().into_bytes()
        }
        fn expected(&self, deltas: &[Option<&Value>]) -> Option<Vec<u8>> {
            deltas.last()?.map(|patch| patch.to_string().into_bytes())
        }
    }

    let failures = (0..200)
        .filter(|&seed| run_model(&random_scenario(seed, 100), ArrivalWins).is_err())
        .count();
    assert!(
        failures > 0,
        "no scenario caught a model that depends on arrival order"
    );
}
