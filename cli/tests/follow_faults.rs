//! `aggrelog follow` against a real broker: malformed messages go to the dead-letter file and
//! the follower goes on; a broker stopped and restarted mid-stream loses nothing; `get` reads a
//! follower directory while the follower runs.

mod kafka_harness;

use std::sync::Mutex;
use std::time::Duration;

use kafka_harness::*;
use serde_json::Value;

/// The tests of this file one at a time: each runs a broker and a follower on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn get_reads_a_follower_directory_while_the_follower_runs() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = seeded_rng("get_while_running");
    let broker = Broker::start();
    broker.create_topic("deltas", 3);
    let (messages, deltas) = workload(&mut rng, 200, 3000);
    let producer = Producer::new(&broker.address());
    let (half, rest) = messages.split_at(messages.len() / 2);
    producer.send("deltas", half);
    producer.flush();
    let (_tmp, dir) = scratch();
    let db = dir.join("follower");
    let follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &[]);
    wait_caught_up(
        &db,
        &broker.end_offsets("deltas", 3),
        Duration::from_secs(60),
    );
    let half_deltas: usize = half.iter().map(|m| m.value.lines().count()).sum();
    let expected = oracle(&deltas[..half_deltas]);
    let (id, want) = expected.iter().next().expect("a live aggregate");
    let (code, out) = aggrelog(&["get", "--db", &db.display().to_string(), id]);
    assert_eq!(code, 0, "get {id} failed");
    let got: Value = serde_json::from_str(&out).expect("get JSON");
    assert_eq!(&got["state"], want);

    producer.send("deltas", rest);
    producer.flush();
    wait_caught_up(
        &db,
        &broker.end_offsets("deltas", 3),
        Duration::from_secs(60),
    );
    assert_states_equal(&scan(&db), &oracle(&deltas));
    let (absent, _) = aggrelog(&["get", "--db", &db.display().to_string(), "no-such-aircraft"]);
    assert_eq!(absent, 1);
    follower.terminate();
    for (partition, (_, dead, reapplied)) in positions(&db) {
        assert_eq!((dead, reapplied), (0, 0), "partition {partition}");
    }
}

#[test]
fn malformed_messages_go_to_the_dead_letter_file_and_the_follower_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = seeded_rng("dead_letters");
    let broker = Broker::start();
    broker.create_topic("deltas", 2);
    let (mut messages, deltas) = workload(&mut rng, 50, 500);
    let good = r#"{"aggregate":"x","seq":1,"patch":{"a":1}}"#;
    let bad: Vec<(Option<&str>, String, &str)> = vec![
        (Some("x"), format!("{good}\n{{oops"), "line 2: bad JSON"),
        (
            Some("y"),
            good.to_owned(),
            "line 1: aggregate \"x\" is not the record key \"y\"",
        ),
        (Some("x"), "\n \n".to_owned(), "the value holds no delta"),
        (
            Some("x"),
            r#"{"aggregate":"x","seq":-1,"patch":{}}"#.to_owned(),
            "line 1: ",
        ),
    ];
    for (i, (key, value, _)) in bad.iter().enumerate() {
        let at = (i + 1) * messages.len() / (bad.len() + 1);
        let message = Message {
            key: key.unwrap_or_default().to_owned(),
            value: value.clone(),
            partition: Some((i % 2) as u32),
        };
        messages.insert(at, message);
    }
    let producer = Producer::new(&broker.address());
    producer.send("deltas", &messages);
    producer.flush();

    let (_tmp, dir) = scratch();
    let db = dir.join("follower");
    let letters = dir.join("dead.jsonl");
    let letters_arg = letters.display().to_string();
    let follower = FollowerProcess::start(
        &broker.address(),
        "deltas",
        "g",
        &db,
        &["--dead-letter", &letters_arg],
    );
    let ends = broker.end_offsets("deltas", 2);
    wait_caught_up(&db, &ends, Duration::from_secs(60));
    follower.terminate();

    assert_states_equal(&scan(&db), &oracle(&deltas));
    let text = std::fs::read_to_string(&letters).expect("the dead-letter file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), bad.len(), "{text}");
    for (i, (_, value, reason)) in bad.iter().enumerate() {
        let line = (lines.iter())
            .find(|l| l["value"] == value.as_str())
            .unwrap_or_else(|| panic!("no dead letter for bad message {i}: {text}"));
        assert_eq!(line["topic"], "deltas");
        assert_eq!(line["partition"], (i % 2) as u64);
        let offset = line["offset"].as_u64().expect("offset");
        assert!(offset < ends[i % 2], "offset {offset} past the end");
        let got = line["reason"].as_str().expect("reason");
        assert!(
            got.starts_with(reason),
            "reason {got:?}, expected {reason:?}..."
        );
    }
    let positions = positions(&db);
    let dead: u64 = positions.values().map(|p| p.1).sum();
    assert_eq!(
        dead,
        bad.len() as u64,
        "dead letters counted in stats: {positions:?}"
    );
    for (partition, (next, _, reapplied)) in positions {
        assert_eq!((next, reapplied), (ends[partition as usize], 0));
    }
}

#[test]
fn a_broker_restarted_mid_stream_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = seeded_rng("broker_restart");
    let mut broker = Broker::start();
    broker.create_topic("deltas", 2);
    let (messages, deltas) = workload(&mut rng, 300, 6000);
    let (first, second) = messages.split_at(messages.len() / 2);
    let (_tmp, dir) = scratch();
    let db = dir.join("follower");
    let mut follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &[]);
    {
        let producer = Producer::new(&broker.address());
        producer.send("deltas", first);
        producer.flush();
    }
    wait_caught_up(
        &db,
        &broker.end_offsets("deltas", 2),
        Duration::from_secs(60),
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        follower.is_running(),
        "the follower gave up while the broker was away"
    );
    broker.restart();
    {
        let producer = Producer::new(&broker.address());
        producer.send("deltas", second);
        producer.flush();
    }
    let ends = broker.end_offsets("deltas", 2);
    wait_caught_up(&db, &ends, Duration::from_secs(120));
    assert!(follower.is_running());
    follower.terminate();
    assert_states_equal(&scan(&db), &oracle(&deltas));
    for (partition, (next, dead, reapplied)) in positions(&db) {
        assert_eq!((next, dead, reapplied), (ends[partition as usize], 0, 0));
    }
}

#[test]
fn a_message_below_a_partitions_seal_is_a_dead_letter_not_a_stop() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let broker = Broker::start();
    broker.create_topic("deltas", 1);
    let message = |key: &str, seq: u64| Message {
        key: key.into(),
        value: format!(r#"{{"aggregate":"{key}","seq":{seq},"patch":{{"seq":{seq}}}}}"#),
        partition: Some(0),
    };
    let producer = Producer::new(&broker.address());
    producer.send("deltas", &[message("a", 10)]);
    producer.flush();
    let (_tmp, dir) = scratch();
    let db = dir.join("follower");
    let follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &[]);
    wait_caught_up(&db, &[1], Duration::from_secs(60));
    follower.terminate();
    let partition_db = db.join("deltas.0").display().to_string();
    assert_eq!(aggrelog(&["seal", "--db", &partition_db, "5"]).0, 0);

    // seq 3 is below the seal: the whole batch is refused, so the follower must set the message
    // aside and write the others.
    producer.send("deltas", &[message("b", 3), message("c", 7)]);
    producer.flush();
    let history = ["--history", "all"];
    let follower = FollowerProcess::start(&broker.address(), "deltas", "g", &db, &history);
    wait_caught_up(&db, &[3], Duration::from_secs(60));
    follower.terminate();
    let letters = std::fs::read_to_string(db.join("dead-letters.jsonl")).expect("dead letters");
    let letter: Value = serde_json::from_str(letters.trim()).expect("one dead letter");
    assert_eq!(letter["offset"], 1);
    assert!(
        letter["reason"].as_str().unwrap().contains("seal 5"),
        "{letter}"
    );
    let states = scan(&db);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(positions(&db)[&0], (3, 1, 0));
    // Each applied message is a named batch, topic/partition/offset; the dead letter is not.
    let (code, listed) = aggrelog(&["batches", "--db", &db.display().to_string()]);
    assert_eq!(code, 0);
    let names: Vec<String> = (listed.lines())
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, ["deltas/0/0", "deltas/0/2"]);
    // A message's batch can be taken back (kept unfolded by --history all).
    let retract = [
        "retract",
        "--db",
        &partition_db,
        "--history",
        "all",
        "deltas/0/2",
    ];
    let (code, out) = aggrelog(&retract);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""changed":["c"]"#), "{out}");
    assert_eq!(scan(&db).keys().collect::<Vec<_>>(), ["a"]);
    // References cross partition databases: declaring them on the follower's directory is
    // refused, and creates no stray database there.
    let follower_dir = db.display().to_string();
    let (code, out) = aggrelog(&["refs", "declare", "--db", &follower_dir, "/parent"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        !db.join("wal").exists(),
        "no database in the follower's directory"
    );
}
