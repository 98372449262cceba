//! The CLI as an operator uses it: closed pipes, files checked before anything is committed,
//! summaries, `check --json`, `--recovery skip-corrupt`, redelivery after a seal, messages that
//! name FILE:LINE and stay short, the library's log on stderr, completions.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn aggrelog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn line(aggregate: &str, seq: u64, value: u64) -> String {
    format!("{{\"aggregate\":\"{aggregate}\",\"seq\":{seq},\"patch\":{{\"v\":{value}}}}}\n")
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let many: String = (0..20_000)
        .map(|n| line(&format!("a{n:05}"), 1, n))
        .collect();
    let file = write_file(tmp.path(), "many.jsonl", &many);
    assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    for command in ["scan", "replay"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
            .args([command, "--db", db])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(first.starts_with('{'), "{command}: {first}");
        // The reader is gone (like `| head -1`): the rest cannot be written.
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{command}");
        assert!(
            !text(&out.stderr).contains("Broken pipe"),
            "{command}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn ingest_checks_every_file_first_and_ends_with_a_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let a = write_file(tmp.path(), "a.jsonl", &line("a", 1, 1));
    let c = write_file(tmp.path(), "c.jsonl", &(line("c", 1, 1) + &line("c", 1, 2)));
    let missing = tmp.path().join("missing.jsonl");
    let missing = missing.to_str().unwrap();
    let out = aggrelog(&["ingest", "--db", db, &a, missing, &c]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{missing}: cannot open")), "{err}");
    assert_eq!(text(&out.stdout), "", "nothing committed");
    assert!(!Path::new(db).exists(), "not even the database was created");

    let out = aggrelog(&["ingest", "--db", db, &a, &c]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.starts_with("2 of 2 files committed, 3 deltas, "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn check_json_reports_clean_and_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db_arg = db.to_str().unwrap();
    for seq in 1..=3 {
        let file = write_file(tmp.path(), &format!("b{seq}.jsonl"), &line("a", seq, seq));
        assert!(aggrelog(&["ingest", "--db", db_arg, &file])
            .status
            .success());
    }
    let out = aggrelog(&["check", "--db", db_arg, "--json"]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!({"clean": true, "damage": [], "torn_tail_bytes": 0})
    );

    // Flip a byte inside the first batch: damage that valid data follows.
    let segment = db.join("wal").join("00000000000000000001.seg");
    let mut bytes = fs::read(&segment).unwrap();
    bytes[80] ^= 0x40;
    fs::write(&segment, &bytes).unwrap();
    let out = aggrelog(&["check", "--db", db_arg, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["clean"], false);
    let damage = &report["damage"][0];
    assert_eq!(damage["file"], segment.to_str().unwrap());
    assert!(damage["offset"].as_u64().unwrap() <= 80);
    assert!(damage["bytes"].as_u64().unwrap() > 0);
    assert!(damage["reason"].is_string());

    // Strict refuses; skip-corrupt opens past it and says what it skipped.
    let strict = aggrelog(&["get", "--db", db_arg, "a"]);
    assert_eq!(strict.status.code(), Some(2));
    let skipping = aggrelog(&["get", "--db", db_arg, "--recovery", "skip-corrupt", "a"]);
    assert!(skipping.status.success(), "{}", text(&skipping.stderr));
    assert!(text(&skipping.stdout).contains("\"seq\":3"));
    let err = text(&skipping.stderr);
    assert!(
        err.contains("skipped corrupt data") && err.contains("00000000000000000001.seg"),
        "{err}"
    );
}

#[test]
fn a_redelivered_batch_after_a_seal_is_accepted_a_new_late_delta_named_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let batch = write_file(
        tmp.path(),
        "b3.jsonl",
        &(line("a", 3, 1) + &line("b", 3, 2)),
    );
    assert!(aggrelog(&["ingest", "--db", db, &batch]).status.success());
    let sealed = aggrelog(&["seal", "--db", db, "10"]);
    assert_eq!(text(&sealed.stdout), "{\"seal\":10}\n");
    let again = aggrelog(&["ingest", "--db", db, &batch]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        format!("{{\"batch\":\"{batch}\",\"deltas\":2}}\n")
    );

    let late = write_file(
        tmp.path(),
        "late.jsonl",
        &(line("c", 12, 1) + "\n" + &line("d", 4, 1)),
    );
    let out = aggrelog(&["ingest", "--db", db, &late]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.starts_with(&format!("{late}:3: ")), "{err}");
    assert!(err.contains("below the seal at 10"), "{err}");

    let lower = aggrelog(&["seal", "--db", db, "5"]);
    assert!(lower.status.success());
    assert!(text(&lower.stderr).contains("below the current seal 10"));
    assert_eq!(text(&lower.stdout), "{\"seal\":10}\n");
}

#[test]
fn bad_lines_name_file_and_line_once_and_long_values_are_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let broken = write_file(
        tmp.path(),
        "broken.jsonl",
        "{\"aggregate\":\"a\",\"seq\":1,\"patch\":{\"x\":}}\n",
    );
    let out = aggrelog(&["ingest", "--db", db, &broken]);
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("{broken}:1: bad JSON at column ")),
        "{err}"
    );
    assert!(!err.contains("line 1 column"), "{err}");

    let huge = format!(
        "{{\"aggregate\":\"a\",\"seq\":1,\"patch\":\"{}\"}}\n",
        "x".repeat(100_000)
    );
    let long = write_file(tmp.path(), "long.jsonl", &huge);
    let err = text(&aggrelog(&["ingest", "--db", db, &long]).stderr);
    assert!(err.len() < 600, "{} bytes: {}", err.len(), &err[..300]);
    assert!(err.contains("must be a JSON object"), "{err}");

    let absent = aggrelog(&["get", "--db", db, &"y".repeat(1000)]);
    assert_eq!(absent.status.code(), Some(1));
    let err = text(&absent.stderr);
    assert!(
        err.len() < 300 && err.contains("(1002 bytes) is absent"),
        "{err}"
    );
}

#[test]
fn library_log_records_reach_stderr_under_a_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db_arg = db.to_str().unwrap();
    let file = write_file(tmp.path(), "a.jsonl", &line("a", 1, 1));
    assert!(aggrelog(&["ingest", "--db", db_arg, &file])
        .status
        .success());
    let segment = db.join("wal").join("00000000000000000001.seg");
    let torn = || {
        let mut f = fs::OpenOptions::new().append(true).open(&segment).unwrap();
        f.write_all(&[0x5a; 7]).unwrap();
    };
    let clean_len = fs::metadata(&segment).unwrap().len();
    torn();
    // A read command reads beside a writer and truncates nothing: it says nothing either.
    let read = aggrelog(&["stats", "--db", db_arg]);
    assert_eq!(text(&read.stderr), "");
    assert_eq!(fs::metadata(&segment).unwrap().len(), clean_len + 7);
    // A writing command recovers: the library's record of it reaches stderr.
    let out = aggrelog(&["checkpoint", "--db", db_arg]);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("aggrelog: warn: dropped a torn tail"),
        "{err}"
    );
    assert_eq!(fs::metadata(&segment).unwrap().len(), clean_len);
    torn();
    let quiet = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(["checkpoint", "--db", db_arg])
        .env("AGGRELOG_LOG", "off")
        .output()
        .unwrap();
    assert!(quiet.status.success());
    assert_eq!(text(&quiet.stderr), "");
    assert_eq!(fs::metadata(&segment).unwrap().len(), clean_len);
}

#[test]
fn compact_prints_only_its_result_when_not_on_a_terminal_and_completions_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let file = write_file(tmp.path(), "a.jsonl", &(line("a", 1, 1) + &line("a", 2, 2)));
    assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    let out = aggrelog(&["compact", "--db", db]);
    assert!(out.status.success());
    assert_eq!(text(&out.stderr), "");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deltas_folded"], 2);

    let bash = aggrelog(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(text(&bash.stdout).contains("aggrelog"));
}

#[test]
fn commands_on_a_directory_that_is_not_a_database_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for args in [
        vec!["get", "--db", dir, "a"],
        vec!["scan", "--db", dir],
        vec!["replay", "--db", dir],
        vec!["stats", "--db", dir],
        vec!["compact", "--db", dir],
        vec!["check", "--db", dir],
    ] {
        let out = aggrelog(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("is not an aggrelog database"),
            "{args:?}"
        );
    }
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing created"
    );
}

#[test]
fn backup_writes_a_copy_that_opens_with_the_same_states() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    for n in 0..5 {
        let file = write_file(tmp.path(), &format!("b{n}.jsonl"), &line("a", n + 1, n));
        assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    }
    assert!(aggrelog(&["checkpoint", "--db", db]).status.success());
    let dest = tmp.path().join("copy");
    let dest = dest.to_str().unwrap();
    let out = aggrelog(&["backup", "--db", db, dest]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["backup"], dest);
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(
        report["linked_bytes"].as_u64().unwrap() > 0,
        "the checkpoint is linked"
    );
    assert_eq!(
        text(&aggrelog(&["scan", "--db", dest]).stdout),
        text(&aggrelog(&["scan", "--db", db]).stdout)
    );
    assert!(aggrelog(&["check", "--db", dest]).status.success());
    let again = aggrelog(&["backup", "--db", db, dest]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("exists"));
}

#[test]
fn read_commands_work_while_an_ingest_runs_and_writers_can_wait_for_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let first = write_file(tmp.path(), "first.jsonl", &line("a", 1, 1));
    assert!(aggrelog(&["ingest", "--db", db, &first]).status.success());
    // An ingest that holds the database while it waits for its input.
    let mut ingest = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(["ingest", "--db", db, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for args in [
        vec!["get", "--db", db, "a"],
        vec!["stats", "--db", db],
        vec!["scan", "--db", db],
    ] {
        let out = aggrelog(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let copy = tmp.path().join("copy");
    let out = aggrelog(&["backup", "--db", db, copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let busy = aggrelog(&["seal", "--db", db, "1"]);
    assert_eq!(busy.status.code(), Some(2));
    assert!(text(&busy.stderr).contains("locked"));

    // A writer that waits gets the database once the ingest is done.
    let waiting = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args(["seal", "--db", db, "--lock-wait", "20", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = ingest.stdin.take().unwrap();
    stdin.write_all(line("b", 2, 2).as_bytes()).unwrap();
    drop(stdin);
    assert!(ingest.wait().unwrap().success());
    let sealed = waiting.wait_with_output().unwrap();
    assert!(sealed.status.success(), "{}", text(&sealed.stderr));
    assert_eq!(text(&sealed.stdout), "{\"seal\":1}\n");
}

#[test]
fn replay_says_how_many_aggregates_it_cannot_yield_as_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let file = write_file(tmp.path(), "a.jsonl", &(line("a", 1, 1) + &line("b", 1, 2)));
    assert!(aggrelog(&["ingest", "--db", db, &file]).status.success());
    let before = text(&aggrelog(&["replay", "--db", db]).stderr);
    assert!(
        before.starts_with("replayed 2 deltas") && !before.contains("folded"),
        "{before}"
    );
    assert!(aggrelog(&["compact", "--db", db]).status.success());
    let after = aggrelog(&["replay", "--db", db]);
    assert_eq!(text(&after.stdout), "");
    let err = text(&after.stderr);
    assert!(
        err.starts_with("replayed 0 deltas")
            && err.contains("; 2 aggregates are folded into state records"),
        "{err}"
    );
}

#[test]
fn ingest_in_parts_keeps_positions_and_streams_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    let (whole, parts) = (whole.to_str().unwrap(), parts.to_str().unwrap());
    // Ten deltas of two aggregates at one seq: their order in the file decides.
    let lines: String = (0..10)
        .map(|n| line(["a", "b"][n % 2], 5, n as u64))
        .collect();
    let file = write_file(tmp.path(), "f.jsonl", &lines);
    assert!(aggrelog(&["ingest", "--db", whole, &file]).status.success());
    let out = aggrelog(&["ingest", "--db", parts, "--batch-lines", "4", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{{\"batch\":\"{file}:1-4\",\"deltas\":4}}\n{{\"batch\":\"{file}:5-8\",\"deltas\":4}}\n{{\"batch\":\"{file}:9-10\",\"deltas\":2}}\n"
        )
    );
    let scan = |db: &str| text(&aggrelog(&["scan", "--db", db]).stdout);
    assert_eq!(scan(whole), scan(parts));
    assert!(scan(whole).contains("{\"v\":9}"));
    // Again, split differently: duplicates, never conflicts.
    assert!(
        aggrelog(&["ingest", "--db", whole, "--batch-lines", "3", &file])
            .status
            .success()
    );
    let stats: Value = serde_json::from_slice(&aggrelog(&["stats", "--db", whole]).stdout).unwrap();
    assert_eq!(
        (stats["duplicates"].as_u64(), stats["conflicts"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(scan(whole), scan(parts));

    // A producer writing to stdin as it goes: a part is committed after 100 ms.
    let db = tmp.path().join("stream");
    let db = db.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
        .args([
            "ingest",
            "--db",
            db,
            "--batch-lines",
            "1000",
            "--batch-ms",
            "100",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(line("s", 1, 1).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "{\"batch\":\"-:1-1\",\"deltas\":1}\n");
    // Committed while the producer is still connected: readers see it.
    let get = aggrelog(&["get", "--db", db, "s"]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    stdin
        .write_all((line("s", 2, 2) + "{broken\n").as_bytes())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).starts_with("-:3: bad JSON"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn export_and_import_keep_compacted_state_for_late_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, copy) = (tmp.path().join("db"), tmp.path().join("copy"));
    let (db, copy) = (db.to_str().unwrap(), copy.to_str().unwrap());
    let early = write_file(tmp.path(), "e.jsonl", &(line("a", 5, 1) + &line("b", 5, 2)));
    assert!(aggrelog(&["ingest", "--db", db, &early]).status.success());
    assert!(aggrelog(&["compact", "--db", db]).status.success());
    let dump = tmp.path().join("dump.jsonl");
    let dump = dump.to_str().unwrap();
    let out = aggrelog(&["export", "--db", db, dump]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr)
            .starts_with("exported {\"batches\":0,\"deltas\":0,\"seals\":0,\"states\":2}"),
        "{}",
        text(&out.stderr)
    );
    assert!(fs::read_to_string(dump)
        .unwrap()
        .contains("\"state\":{\"aggregate\":\"a\""));
    let out = aggrelog(&["import", "--db", copy, dump]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scan = |db: &str| text(&aggrelog(&["scan", "--db", db]).stdout);
    assert_eq!(scan(db), scan(copy));
    // A late delta (seq 3 < 5) meets the folded state the same way in both.
    let late = write_file(tmp.path(), "l.jsonl", &line("a", 3, 9));
    for target in [db, copy] {
        assert!(aggrelog(&["ingest", "--db", target, &late])
            .status
            .success());
    }
    assert_eq!(scan(db), scan(copy));
    assert!(scan(copy).contains("{\"aggregate\":\"a\",\"seq\":5,\"state\":{\"v\":1}}"));
    // Importing into a database that holds data is refused.
    let again = aggrelog(&["import", "--db", copy, dump]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already holds data"));
}

#[test]
fn an_error_on_a_file_inside_the_database_names_the_database() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let db_arg = db.to_str().unwrap();
    let file = write_file(tmp.path(), "a.jsonl", &line("a", 1, 1));
    assert!(aggrelog(&["ingest", "--db", db_arg, &file])
        .status
        .success());
    // The writer's lock file cannot be opened (a directory stands in its place).
    fs::remove_file(db.join("LOCK")).unwrap();
    fs::create_dir(db.join("LOCK")).unwrap();
    let out = aggrelog(&["ingest", "--db", db_arg, &file]);
    assert_eq!(out.status.code(), Some(2));
    let message = text(&out.stderr);
    assert!(
        message.starts_with(&format!("{db_arg}: ")) && message.contains("(in LOCK)"),
        "{message}"
    );
    assert!(!message.contains(&format!("{db_arg}/LOCK")), "{message}");
}
