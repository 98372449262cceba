//! (b) Two followers in one group, each with its own directory (two machines): they split the
//! partitions; one is SIGKILLed mid-stream and the other takes its partitions over, restoring
//! those it never held from the earliest offset. Its directory then holds every partition and
//! the union of their states equals the oracle.

mod kafka_harness;

use std::thread;
use std::time::Duration;

use kafka_harness::*;

const PARTITIONS: u32 = 4;
const ARGS: [&str; 0] = [];

fn held(follower: &FollowerProcess) -> usize {
    let status = follower.status.lock().unwrap();
    status
        .as_ref()
        .and_then(|s| s["partitions"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn a_survivor_takes_over_and_restores_the_partitions_it_never_held() {
    let mut rng = seeded_rng("survivor_takes_over");
    let broker = Broker::start();
    broker.create_topic("deltas", PARTITIONS);
    let (messages, deltas) = workload(&mut rng, 500, 20_000);
    let delivered = disorder(&mut rng, &messages, 10);
    // Half before A dies, half after: B must follow A's partitions on, not only restore them.
    let (before, after) = delivered.split_at(delivered.len() / 2);
    let produce = |messages: Vec<Message>| {
        let brokers = broker.address();
        thread::spawn(move || {
            let producer = Producer::new(&brokers);
            for chunk in messages.chunks(200) {
                producer.send("deltas", chunk);
                thread::sleep(Duration::from_millis(100));
            }
            producer.flush();
        })
    };
    let producing = produce(before.to_vec());

    let (_tmp, dir) = scratch();
    let (db_a, db_b) = (dir.join("a"), dir.join("b"));
    let a = FollowerProcess::start(&broker.address(), "deltas", "g", &db_a, &ARGS);
    wait_for(Duration::from_secs(60), "A to hold partitions", || {
        held(&a) == 4
    });
    let b = FollowerProcess::start(&broker.address(), "deltas", "g", &db_b, &ARGS);
    // tansu 0.6 loses the partitions of a member that dies while the group rebalances (it
    // drops the member without starting a new generation): kill A once the split held still.
    let mut stable_since = std::time::Instant::now();
    let mut last = (0, 0);
    wait_for(
        Duration::from_secs(90),
        "the group to split and settle",
        || {
            let now = (held(&a), held(&b));
            if now != last {
                (last, stable_since) = (now, std::time::Instant::now());
            }
            now.0 > 0
                && now.1 > 0
                && now.0 + now.1 == 4
                && stable_since.elapsed() > Duration::from_secs(8)
        },
    );
    let held_by_b_before: Vec<u32> = positions(&db_b).keys().copied().collect();
    producing.join().expect("the producer");
    thread::sleep(Duration::from_millis(rng.below(1000)));
    a.kill();
    produce(after.to_vec()).join().expect("the producer");

    let ends = broker.end_offsets("deltas", PARTITIONS);
    wait_caught_up(&db_b, &ends, Duration::from_secs(120));
    b.terminate();
    assert!(
        held_by_b_before.len() < 4,
        "B held every partition before A died"
    );
    assert_states_equal(&scan(&db_b), &oracle(&deltas));
    for (partition, (next, dead, reapplied)) in positions(&db_b) {
        assert_eq!(next, ends[partition as usize], "partition {partition}");
        assert_eq!((dead, reapplied), (0, 0), "partition {partition}");
    }
}
