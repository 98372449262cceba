//! The command-line interface: exact formats, exit statuses, atomic files, the lock.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use aggrelog::{Db, Options};

fn aggrelog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn ingest_get_scan_replay_stats_speak_the_documented_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let first = write_file(
        tmp.path(),
        "b2.jsonl",
        concat!(
            r#"{"aggregate":"B","seq":2,"patch":{"engine":{"serial":"ESN-1"},"cabin":{"seat_12C":null}}}"#,
            "\n",
            r#"{"aggregate":"E","seq":3,"delete":true}"#,
            "\n"
        ),
    );
    let second = write_file(
        tmp.path(),
        "b1.jsonl",
        "{\"aggregate\":\"B\",\"seq\":1,\"patch\":{\"wing\":{\"span_m\":35.8},\"cabin\":{\"seat_12C\":\"taken\"}}}\n",
    );
    let out = aggrelog(&["ingest", "--db", db, &first, &second]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "{{\"batch\":\"{first}\",\"deltas\":2}}\n{{\"batch\":\"{second}\",\"deltas\":1}}\n"
        )
    );

    let out = aggrelog(&["get", "--db", db, "B"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        "{\"aggregate\":\"B\",\"seq\":2,\"state\":{\"cabin\":{},\"engine\":{\"serial\":\"ESN-1\"},\"wing\":{\"span_m\":35.8}}}\n"
    );
    let out = aggrelog(&["get", "--db", db, "B", "--as-of", "1"]);
    assert_eq!(
        stdout(&out),
        "{\"aggregate\":\"B\",\"seq\":1,\"state\":{\"cabin\":{\"seat_12C\":\"taken\"},\"wing\":{\"span_m\":35.8}}}\n"
    );
    let out = aggrelog(&["get", "--db", db, "E"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("absent"));

    let out = aggrelog(&["scan", "--db", db]);
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(stdout(&out).starts_with("{\"aggregate\":\"B\",\"seq\":2,"));

    let out = aggrelog(&["replay", "--db", db]);
    assert!(out.status.success());
    let lines: Vec<_> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], r#"{"aggregate":"E","seq":3,"delete":true}"#);
    assert!(stderr(&out).contains("replayed 3 deltas in 2 batches"));

    let out = aggrelog(&["stats", "--db", db]);
    let stats: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(stats["segments"], 1);
    assert_eq!(stats["aggregates"], 2);
    assert_eq!(stats["deltas"], 3);
    assert_eq!(stats["conflicts"], 0);
    assert_eq!(stats["torn_bytes_dropped"], 0);

    let out = aggrelog(&["check", "--db", db]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("clean"));
}

#[test]
fn a_malformed_line_names_file_and_line_and_its_batch_is_not_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let good = write_file(
        tmp.path(),
        "good.jsonl",
        "{\"aggregate\":\"ok\",\"seq\":1,\"patch\":{\"a\":1}}\n",
    );
    let cases = [
        ("{\"aggregate\":\"x\",\"seq\":1,\"patch\":{\"a\":1}}\n{not json\n", 2, "bad JSON"),
        ("{\"aggregate\":\"x\",\"seq\":1,\"patch\":{}}\n{\"aggregate\":\"y\",\"patch\":{}}\n", 2, "missing field \"seq\""),
        ("{\"aggregate\":\"x\",\"seq\":\"1\",\"patch\":{}}\n", 1, "\"seq\" must be an integer"),
        ("{\"aggregate\":\"x\",\"seq\":1,\"patch\":{}}\n\n{\"aggregate\":\"x\",\"seq\":1,\"patch\":5}\n", 3, "\"patch\" must be a JSON object"),
        ("{\"aggregate\":\"\",\"seq\":1,\"patch\":{}}\n", 1, "aggregate id is empty"),
    ];
    for (n, (text, line, reason)) in cases.iter().enumerate() {
        let bad = write_file(tmp.path(), &format!("bad{n}.jsonl"), text);
        let after = write_file(
            tmp.path(),
            "after.jsonl",
            "{\"aggregate\":\"later\",\"seq\":1,\"patch\":{}}\n",
        );
        let out = aggrelog(&["ingest", "--db", db, &good, &bad, &after]);
        assert_eq!(out.status.code(), Some(2), "case {n}");
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!("{bad}:{line}: ")),
            "case {n}: {err}"
        );
        assert!(err.contains(reason), "case {n}: {err}");
        assert_eq!(err.lines().count(), 1, "one sentence: {err}");
        // The file before was committed; nothing of the bad one, and nothing after it.
        assert_eq!(
            stdout(&out),
            format!("{{\"batch\":\"{good}\",\"deltas\":1}}\n")
        );
        assert_eq!(aggrelog(&["get", "--db", db, "x"]).status.code(), Some(1));
        assert_eq!(
            aggrelog(&["get", "--db", db, "later"]).status.code(),
            Some(1)
        );
        assert_eq!(aggrelog(&["get", "--db", db, "ok"]).status.code(), Some(0));
    }
}

#[test]
fn ingest_reads_stdin_for_dash() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(["ingest", "--db", db.to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"aggregate\":\"s\",\"seq\":4,\"patch\":{\"v\":true}}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "{\"batch\":\"-\",\"deltas\":1}\n");
}

#[test]
fn usage_errors_and_missing_databases_exit_2() {
    assert_eq!(aggrelog(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(aggrelog(&["get"]).status.code(), Some(2));
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let out = aggrelog(&["get", "--db", missing.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"));
    assert!(
        !missing.exists(),
        "read commands must not create a database"
    );
}

#[test]
fn check_lists_damage_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, Options::default()).unwrap();
    let mut first = None;
    for seq in 1..=3 {
        let mut batch = aggrelog::Batch::new();
        batch
            .patch("a", seq, &serde_json::json!({"n": seq}))
            .unwrap();
        let receipt = db.write(&batch).unwrap();
        first = first.or(receipt.location);
    }
    db.close().unwrap();
    let seg = dir.join("wal").join(format!("{:020}.seg", 1));
    let mut bytes = fs::read(&seg).unwrap();
    let offset = first.unwrap().offset;
    bytes[offset as usize + 14] ^= 1;
    fs::write(&seg, bytes).unwrap();
    let out = aggrelog(&["check", "--db", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains(&format!("00000000000000000001.seg:{offset}:")),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("1 damaged ranges"));
    // Opening refuses too, naming the file and offset.
    let out = aggrelog(&["get", "--db", dir.to_str().unwrap(), "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("at byte offset {offset}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn another_process_cannot_write_a_locked_database_but_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::open(&dir, Options::default()).unwrap();
    // Read commands open read-only, beside the writer (issue 10).
    let out = aggrelog(&["stats", "--db", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = aggrelog(&["compact", "--db", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    let file = write_file(
        tmp.path(),
        "f.jsonl",
        "{\"aggregate\":\"a\",\"seq\":1,\"patch\":{}}\n",
    );
    let out = aggrelog(&["ingest", "--db", dir.to_str().unwrap(), &file]);
    assert_eq!(out.status.code(), Some(2));
    db.close().unwrap();
    let out = aggrelog(&["ingest", "--db", dir.to_str().unwrap(), &file]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn the_demo_shows_all_seven_right() {
    let out = aggrelog(&["demo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("aggrelog:      7 of 7 right"), "{text}");
    assert!(text.contains("stale"));
    assert!(text.contains("phantom"));
    assert!(text.contains("rejected"));
    // B's history in fold order, though Bch3 arrived before Bch2.
    let history: Vec<&str> = text.lines().filter(|l| l.starts_with("  seq ")).collect();
    let batches: Vec<&str> = (history.iter())
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(batches, ["Bch1:", "Bch2:", "Bch3:", "Bch4:"], "{text}");
    assert!(history[2].contains("ESN-202"), "{text}");
    assert!(history[3].ends_with("(retracted)"), "{text}");
    // G dangles while its parent F is absent: after Bch3, not after Bch2.
    assert!(text.contains("after Bch1: none"), "{text}");
    assert!(
        text.contains("after Bch3: G /parent -> F (absent)"),
        "{text}"
    );
    assert!(text.contains("after Bch2: none"), "{text}");
    // The bad batch's values are gone after its retraction.
    let after: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("after `retract Bch4`"))
        .collect();
    assert!(
        after.len() == 2
            && after
                .iter()
                .all(|l| !l.contains("A380") && !l.contains("ESN-2O2"))
    );
}

#[test]
fn bench_prints_one_json_object_with_the_documented_keys() {
    let out = aggrelog(&["bench", "--deltas", "4000", "--aggregates", "300", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let figures: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    for key in [
        "ingest_mb_s",
        "ingest_sync_mb_s",
        "open_ms",
        "open_checkpoint_ms",
        "replay_mb_s",
        "ceiling_mb_s",
        "replay_ratio",
        "materialize_deltas_s",
        "get_p50_us",
        "get_p99_us",
        "index_bytes_per_aggregate",
        "disk_bytes",
        "payload_bytes",
        "peak_rss_mb",
    ] {
        assert!(
            figures[key].is_number(),
            "{key} missing or not a number: {figures}"
        );
    }
    assert_eq!(figures["deltas"], 4000);
    assert!(figures["payload_bytes"].as_u64() > Some(4000 * 50));
}

#[test]
fn bench_sizes_prints_the_scaling_table_and_draws_it_with_the_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let table = tmp.path().join("table.json");
    let out = aggrelog(&["bench", "--sizes", "2k,4k", "--runs", "1,2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    fs::write(&table, stdout(&out)).unwrap();
    let medians: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(medians["2000"]["deltas"], 2000.0);
    assert_eq!(
        medians["4000"]["aggregates"].as_f64().map(|a| a <= 200.0),
        Some(true)
    );
    assert!(medians["4000"]["open_ms"].is_number(), "{medians}");

    let peers = write_file(
        tmp.path(),
        "peers.jsonl",
        "{\"engine\":\"rocksdb\",\"records\":4000,\"payload_bytes\":800000,\"ingest_s\":0.1,\
         \"open_ms\":3.0,\"replay_s\":0.01,\"replay_records\":4000,\"point_p50_us\":12.0,\
         \"point_p99_us\":60.0,\"peak_rss_mb\":100.0}\n",
    );
    let svg = tmp.path().join("scaling.svg");
    let svg_arg = svg.to_str().unwrap();
    let table_arg = table.to_str().unwrap();
    let out = aggrelog(&[
        "bench", "--from", table_arg, "--plot", svg_arg, "--peers", &peers,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("| figure | 0.002M | 0.004M | target |"),
        "{text}"
    );
    assert!(text.contains("| point get p50, uncompacted |"), "{text}");
    let drawn = fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<svg"),
        "{}",
        &drawn[..100.min(drawn.len())]
    );
    for label in [
        "ingest, fsync per batch (MB/s)",
        "peak RSS (MB)",
        "rocksdb",
        "aggrelog",
    ] {
        assert!(drawn.contains(label), "{label} not drawn");
    }

    let bad = aggrelog(&["bench", "--sizes", "2k,4k", "--runs", "1,1,1"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("--runs"), "{}", stderr(&bad));
}

/// Replay formats on several threads: its output is still every delta in log order, a batch
/// whole or not at all, and a batch that cannot be written ends it after everything before it.
#[test]
fn replay_writes_many_chunks_in_log_order_and_stops_at_a_bad_batch_after_the_ones_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = dir.to_str().unwrap();
    let padding = "p".repeat(200);
    let batch_lines = |file: u64| -> String {
        (0..1000)
            .map(|n| format!("{{\"aggregate\":\"a{n:04}\",\"seq\":{file},\"patch\":{{\"v\":\"{padding}\"}}}}\n"))
            .collect()
    };
    // 8 batches of about 240 KB before the bad one: more than one 1 MiB chunk.
    let mut expected = String::new();
    for file in 0..8 {
        let text = batch_lines(file);
        expected.push_str(&text);
        let path = write_file(tmp.path(), &format!("{file}.jsonl"), &text);
        assert!(aggrelog(&["ingest", "--db", db, &path]).status.success());
    }
    let whole = aggrelog(&["replay", "--db", db]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(
        stdout(&whole) == expected,
        "replay is not the batches in log order"
    );

    {
        // A body that is not a patch (its frame is valid: a custom model could have written it).
        let writer = Db::open(&dir, Options::default()).unwrap();
        let mut bad = aggrelog::Batch::new();
        bad.push_raw("z", 99, aggrelog::DeltaKind::Patch, &[0xff, 0x00])
            .unwrap();
        writer.write(&bad).unwrap();
        writer.close().unwrap();
    }
    let path = write_file(tmp.path(), "after.jsonl", &batch_lines(100));
    assert!(aggrelog(&["ingest", "--db", db, &path]).status.success());
    let cut = aggrelog(&["replay", "--db", db]);
    assert_eq!(cut.status.code(), Some(2));
    assert!(
        stdout(&cut) == expected,
        "the lines before the bad batch, and only them"
    );
    assert!(
        stderr(&cut).contains("undecodable patch"),
        "{}",
        stderr(&cut)
    ); // Named by its segment file and offset, not only by numbers.
    assert!(stderr(&cut).contains(".seg offset "), "{}", stderr(&cut));
}

#[test]
fn diff_prints_the_merge_patch_between_two_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let lines = concat!(
        r#"{"aggregate":"A","seq":1,"patch":{"engine":{"serial":"E1","cycles":3},"tail":"N1"}}"#,
        "\n",
        r#"{"aggregate":"A","seq":2,"patch":{"engine":{"cycles":4},"tail":null,"cabin":{"rows":30}}}"#,
        "\n",
        r#"{"aggregate":"A","seq":3,"delete":true}"#,
        "\n"
    );
    let file = write_file(tmp.path(), "a.jsonl", lines);
    assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    let diff = |from: &str, to: &str| {
        let out = aggrelog(&["diff", "--db", db, "A", "--from", from, "--to", to]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    assert_eq!(
        diff("1", "2"),
        serde_json::json!({"engine": {"cycles": 4}, "tail": null, "cabin": {"rows": 30}})
    );
    assert_eq!(
        diff("2", "1"),
        serde_json::json!({"engine": {"cycles": 3}, "tail": "N1", "cabin": null})
    );
    assert_eq!(
        diff("0", "1"),
        serde_json::json!({"engine": {"serial": "E1", "cycles": 3}, "tail": "N1"})
    );
    assert_eq!(diff("2", "3"), serde_json::Value::Null, "absent at seq 3");
    assert_eq!(diff("2", "2"), serde_json::json!({}));
}

#[test]
fn validate_lists_each_violation_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let lines = concat!(
        r#"{"aggregate":"A","seq":1,"patch":{"engine":{"serial":"E1"}}}"#,
        "\n",
        r#"{"aggregate":"B","seq":1,"patch":{"engine":{"serial":7}}}"#,
        "\n",
        r#"{"aggregate":"C","seq":1,"patch":{"cabin":{}}}"#,
        "\n"
    );
    let file = write_file(tmp.path(), "in.jsonl", lines);
    assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    let schema = write_file(
        tmp.path(),
        "schema.json",
        r#"{"type":"object","required":["engine"],
            "properties":{"engine":{"type":"object","properties":{"serial":{"type":"string"}}}}}"#,
    );
    let out = aggrelog(&["validate", "--db", db, "--schema", &schema]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["aggregate"], "B");
    assert_eq!(lines[0]["pointer"], "/engine/serial");
    assert!(lines[0]["error"].as_str().unwrap().contains("string"));
    assert_eq!(lines[1]["aggregate"], "C");
    assert_eq!(lines[1]["pointer"], "");
    assert!(stderr(&out).contains("2 of 3 aggregates"));

    let loose = write_file(tmp.path(), "loose.json", r#"{"type":"object"}"#);
    let out = aggrelog(&["validate", "--db", db, "--schema", &loose]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    let broken = write_file(tmp.path(), "broken.json", r#"{"type":"no-such-type"}"#);
    let out = aggrelog(&["validate", "--db", db, "--schema", &broken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.json"), "{}", stderr(&out));
}

#[test]
fn batches_lists_each_named_batch_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let bch1 = write_file(
        tmp.path(),
        "bch1.jsonl",
        concat!(
            r#"{"aggregate":"A","seq":1,"patch":{"x":1}}"#,
            "\n",
            r#"{"aggregate":"B","seq":1,"patch":{"x":2}}"#,
            "\n",
            r#"{"aggregate":"A","seq":1,"patch":{"y":3}}"#,
            "\n"
        ),
    );
    let bch2 = write_file(
        tmp.path(),
        "bch2.jsonl",
        concat!(
            r#"{"aggregate":"C","seq":2,"patch":{}}"#,
            "\n",
            r#"{"aggregate":"C","seq":4,"delete":true}"#,
            "\n"
        ),
    );
    assert!(aggrelog(&["ingest", "--db", db, &bch1]).status.success());
    let named = aggrelog(&["ingest", "--db", db, "--batch-name", "late fix", &bch2]);
    assert!(named.status.success(), "{}", stderr(&named));
    let parts = aggrelog(&["ingest", "--db", db, "--batch-lines", "1", &bch2]);
    assert!(parts.status.success(), "{}", stderr(&parts));
    let two = aggrelog(&["ingest", "--db", db, "--batch-name", "x", &bch1, &bch2]);
    assert_eq!(two.status.code(), Some(2), "--batch-name names one FILE");

    let out = aggrelog(&["batches", "--db", db]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |name: &str, min: u64, max: u64, deltas: u64, aggregates: u64| {
        serde_json::json!({"name": name, "min_seq": min, "max_seq": max, "deltas": deltas,
                           "aggregates": aggregates, "retracted": false})
    };
    let mut expected = vec![
        line(&bch1, 1, 1, 3, 2),
        line(&bch2, 2, 4, 2, 1),
        line("late fix", 2, 4, 2, 1),
    ];
    expected.sort_by_key(|l| l["name"].as_str().unwrap().to_owned());
    assert_eq!(lines, expected);
}

#[test]
fn history_prints_each_delta_with_its_batch_in_fold_order() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let bch3 = write_file(
        tmp.path(),
        "bch3.jsonl",
        concat!(
            r#"{"aggregate":"B","seq":3,"patch":{"engine":{"cycles":9}}}"#,
            "\n"
        ),
    );
    let bch1 = write_file(
        tmp.path(),
        "bch1.jsonl",
        concat!(
            r#"{"aggregate":"B","seq":1,"patch":{"engine":{"cycles":1}}}"#,
            "\n",
            r#"{"aggregate":"B","seq":1,"delete":true}"#,
            "\n"
        ),
    );
    for file in [&bch3, &bch1] {
        assert!(aggrelog(&["ingest", "--db", db, "--no-compaction", file])
            .status
            .success());
    }
    let out = aggrelog(&["history", "--db", db, "B"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![
            serde_json::json!({"seq": 1, "pos": 0, "batch": bch1, "patch": {"engine": {"cycles": 1}}}),
            serde_json::json!({"seq": 1, "pos": 1, "batch": bch1, "delete": true}),
            serde_json::json!({"seq": 3, "pos": 0, "batch": bch3, "patch": {"engine": {"cycles": 9}}}),
        ]
    );
    assert_eq!(
        aggrelog(&["history", "--db", db, "nobody"]).status.code(),
        Some(1)
    );
}

#[test]
fn retract_refs_and_dangling_work_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let db = db.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let out = aggrelog(&["refs", "declare", "--db", db, "/parent"]);
    assert_eq!(
        stdout(&out).trim(),
        r#"{"declared":["/parent"]}"#,
        "{}",
        stderr(&out)
    );
    let child = write(
        "child.jsonl",
        "{\"aggregate\":\"G\",\"seq\":1,\"patch\":{\"parent\":\"F\"}}\n",
    );
    let parent = write(
        "parent.jsonl",
        "{\"aggregate\":\"F\",\"seq\":2,\"patch\":{\"m\":1}}\n",
    );
    let ingest = |file: &str| aggrelog(&["ingest", "--db", db, "--history", "all", file]);
    assert!(ingest(&child).status.success());
    let out = aggrelog(&["dangling", "--db", db]);
    assert_eq!(
        stdout(&out).trim(),
        r#"{"aggregate":"G","pointer":"/parent","target":"F"}"#
    );
    assert!(ingest(&parent).status.success());
    assert_eq!(stdout(&aggrelog(&["dangling", "--db", db])), "");
    let out = aggrelog(&["refs", "--db", db, "F"]);
    assert_eq!(
        stdout(&out).trim(),
        r#"{"aggregate":"F","incoming":[{"aggregate":"G","pointer":"/parent"}],"outgoing":[]}"#
    );
    let out = aggrelog(&["retract", "--db", db, "--history", "all", &parent]);
    assert_eq!(
        stdout(&out).trim(),
        format!(
            r#"{{"batch":"{parent}","changed":["F"],"deltas":1,"recorded":true,"retracted":true}}"#
        )
    );
    assert!(stdout(&aggrelog(&["dangling", "--db", db])).contains("\"target\":\"F\""));
    let out = aggrelog(&["history", "--db", db, "F"]);
    assert!(
        stdout(&out).contains("\"retracted\":true"),
        "{}",
        stdout(&out)
    );
    let out = aggrelog(&["batches", "--db", db]);
    let retracted = stdout(&out)
        .lines()
        .filter(|l| l.contains("\"retracted\":true"))
        .count();
    assert_eq!(retracted, 1, "{}", stdout(&out));
    let out = aggrelog(&["retract", "--db", db, "never-arrived"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--pending"), "{}", stderr(&out));
    let out = aggrelog(&["unretract", "--db", db, "--history", "all", &parent]);
    assert!(
        stdout(&out).contains("\"retracted\":false"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&aggrelog(&["dangling", "--db", db])), "");
    // Compacted with the default history (none), a batch is out of reach.
    assert!(aggrelog(&["compact", "--db", db]).status.success());
    let out = aggrelog(&["retract", "--db", db, &parent]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("out of reach"), "{}", stderr(&out));
}
