//! (a) Exactly once through crashes: 100k deltas in messages of 1 to 5 lines over 4
//! partitions, some messages produced twice and later seqs before earlier ones, while the
//! follower is SIGKILLed at random moments at least 20 times and restarted. Afterwards every
//! state equals the oracle, every stored position is its partition's end offset, and no
//! message was applied twice (`reapplied` 0).
//!
//! `AGGRELOG_KAFKA_SEED` replays a run; `AGGRELOG_KAFKA_DELTAS` and `AGGRELOG_KAFKA_KILLS` size it.

mod kafka_harness;

use std::thread;
use std::time::{Duration, Instant};

use kafka_harness::*;

const PARTITIONS: u32 = 4;

/// Whether every partition's stored position in the follower directory `db` is `ends`.
fn caught_up(db: &std::path::Path, ends: &[u64]) -> bool {
    if !db.join(aggrelog_kafka::layout::MARKER_FILE).exists() {
        return false;
    }
    let positions = positions(db);
    (ends.iter().enumerate())
        .all(|(p, end)| positions.get(&(p as u32)).is_some_and(|s| s.0 == *end))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn every_message_is_applied_exactly_once_across_sigkills() {
    let mut rng = seeded_rng("exactly_once_across_sigkills");
    let target = env_or("AGGRELOG_KAFKA_DELTAS", 100_000);
    let kills = env_or("AGGRELOG_KAFKA_KILLS", 20);
    let broker = Broker::start();
    broker.create_topic("deltas", PARTITIONS);
    let (messages, deltas) = workload(&mut rng, 2_000, target);
    let delivered = disorder(&mut rng, &messages, 10);
    let expected = oracle(&deltas);
    eprintln!(
        "{} deltas in {} messages, {} produced, {} live aggregates",
        deltas.len(),
        messages.len(),
        delivered.len(),
        expected.len()
    );

    let brokers = broker.address();
    let producing = thread::spawn(move || {
        let producer = Producer::new(&brokers);
        for chunk in delivered.chunks(1_000) {
            producer.send("deltas", chunk);
            thread::sleep(Duration::from_millis(150));
        }
        producer.flush();
    });

    let (_tmp, dir) = scratch();
    let db = dir.join("follower");
    // Small batches: many commits, so a kill lands between, inside and after them.
    // A short session: tansu hands a SIGKILLed member's partitions on only when its session
    // times out.
    let args = [
        "--max-batch-messages",
        "200",
        "--flush-ms",
        "50",
        "--kafka-property",
        "session.timeout.ms=3000",
        "--kafka-property",
        "heartbeat.interval.ms=500",
    ];
    let started = Instant::now();
    for kill in 0..kills {
        let mut follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &args);
        // Kill once it holds partitions, or once there is nothing left to do: tansu was seen to
        // leave a restarted member unassigned for over a minute when the topic was consumed
        // to its end (a message produced then makes the follower's stall watch rejoin).
        let waiting = Instant::now();
        wait_for(Duration::from_secs(60), "partitions to be assigned", || {
            let assigned = (follower.status.lock().unwrap().as_ref())
                .is_some_and(|s| s["partitions"].as_array().is_some_and(|p| !p.is_empty()));
            let long = waiting.elapsed() > Duration::from_secs(10);
            assigned || (long && caught_up(&db, &broker.end_offsets("deltas", PARTITIONS)))
        });
        thread::sleep(Duration::from_millis(rng.below(800)));
        assert!(follower.is_running(), "the follower exited on its own");
        let applied = follower.status.lock().unwrap().clone();
        follower.kill();
        eprintln!("kill {kill} at {:?}: {applied:?}", started.elapsed());
    }
    producing.join().expect("the producer");

    let follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &args);
    let ends = broker.end_offsets("deltas", PARTITIONS);
    wait_caught_up(&db, &ends, Duration::from_secs(120));
    follower.terminate();

    assert_states_equal(&scan(&db), &expected);
    let positions = positions(&db);
    for (partition, end) in ends.iter().enumerate() {
        let (next, dead, reapplied) = positions[&(partition as u32)];
        assert_eq!(next, *end, "partition {partition}: stored position");
        assert_eq!(dead, 0, "partition {partition}: dead letters");
        assert_eq!(
            reapplied, 0,
            "partition {partition}: messages applied twice"
        );
    }
}
