//! A real `aggrelog ingest` of one file far larger than a fragment (a batch spanning many
//! fragments, and segments when it is larger than one) killed with SIGKILL at a random moment,
//! round after round on one database: the file's batch is wholly absent or wholly present after
//! every kill, present whenever the process reported it, and the state is exactly the model over
//! the batches present.
//!
//! `AGGRELOG_SPANNING_KILL_MIB` sets the file size (default 48 MiB: twelve fragments, inside one
//! 64 MiB segment), `AGGRELOG_SPANNING_KILL_ROUNDS` the rounds (default 8),
//! `AGGRELOG_KILL_SEED` the seed of the kill times.
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggrelog::testing::Rng;
use aggrelog::{Db, Options};
use common::{oracle, patch, scan_all, TestDelta};
use serde_json::json;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

const AGGREGATES: u64 = 5_000;

/// Round `r`'s upstream batch: a marker first, then whole-state patches of every aggregate
/// (about 1 KiB each) at seq `r` until the file holds `bytes`, then a marker last. Only the
/// deltas are returned when `keep` (the oracle needs them); the file is always written.
fn write_round_file(path: &Path, r: u64, bytes: u64, keep: bool) -> Vec<TestDelta> {
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    let mut kept = Vec::new();
    let mut written = 0u64;
    let mut i = 0u64;
    loop {
        let d = if i == 0 {
            patch(&format!("big-{r}-first"), r, json!({"round": r}))
        } else if written >= bytes {
            patch(&format!("big-{r}-last"), r, json!({"round": r}))
        } else {
            let id = format!("aircraft-{:05}", i % AGGREGATES);
            let retired = if i.is_multiple_of(7) {
                json!(null)
            } else {
                json!(false)
            };
            let state = json!({"engine": {"serial": format!("ESN-{r}-{i}"), "round": r},
                "cabin": {"layout": "x".repeat(900), "i": i}, "retired": retired});
            patch(&id, r, state)
        };
        let line = json!({"aggregate": d.aggregate, "seq": d.seq, "patch": d.patch}).to_string();
        written += line.len() as u64 + 1;
        writeln!(out, "{line}").unwrap();
        let last = d.aggregate.ends_with("-last");
        if keep {
            kept.push(d);
        }
        if last {
            break;
        }
        i += 1;
    }
    out.flush().unwrap();
    kept
}

#[test]
fn sigkill_during_a_spanning_batch_leaves_it_absent_or_whole() {
    let mib = env_u64("AGGRELOG_SPANNING_KILL_MIB").unwrap_or(48);
    let rounds = env_u64("AGGRELOG_SPANNING_KILL_ROUNDS").unwrap_or(8);
    let seed = env_u64("AGGRELOG_KILL_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    println!("spanning_kill seed: {seed}, {mib} MiB, {rounds} rounds");
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let db_dir = tmp.path().join("db");
    let db = db_dir.to_str().unwrap().to_owned();
    // A full oracle needs every round's deltas in memory: only for small files.
    let keep = mib <= 64;
    let mut batches: Vec<(u64, Vec<TestDelta>)> = Vec::new();
    let mut present = BTreeSet::new();
    let mut full_run = None::<Duration>;
    let (mut killed_absent, mut killed_present) = (0, 0);
    for r in 1..=rounds {
        let file = tmp.path().join(format!("round-{r}.jsonl"));
        let deltas = write_round_file(&file, r, mib << 20, keep);
        batches.push((r, deltas));
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
            .args(["ingest", "--db", &db, file.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The first round runs to the end and times a whole ingest; later ones are killed at a
        // random moment within 1.2 times that.
        let reported = match full_run {
            None => {
                let status = child.wait().unwrap();
                assert!(status.success(), "round {r}: ingest failed");
                full_run = Some(started.elapsed());
                true
            }
            Some(full) => {
                let at = full.mul_f64(rng.below(1200) as f64 / 1000.0);
                thread::sleep(at.saturating_sub(started.elapsed()));
                let _ = child.kill();
                child.wait().unwrap();
                let mut line = String::new();
                let mut out = BufReader::new(child.stdout.take().unwrap());
                out.read_line(&mut line).unwrap();
                line.contains("\"batch\"")
            }
        };
        drop(child);
        fs::remove_file(&file).unwrap();

        let options = Options::default()
            .background_compaction(false)
            .checkpoint_every_bytes(0);
        let opened = Db::open(&db_dir, options).unwrap();
        let states = scan_all(&opened);
        let first = states.contains_key(&format!("big-{r}-first"));
        let last = states.contains_key(&format!("big-{r}-last"));
        assert_eq!(
            first, last,
            "round {r} (seed {seed}): the batch is partly present"
        );
        assert!(
            !reported || first,
            "round {r} (seed {seed}): reported, then lost"
        );
        if first {
            present.insert(r);
            killed_present += usize::from(r > 1);
        } else {
            killed_absent += 1;
        }
        if keep {
            let kept: Vec<Vec<TestDelta>> = (batches.iter())
                .filter(|(round, _)| present.contains(round))
                .map(|(_, d)| d.clone())
                .collect();
            assert_eq!(states, oracle(&kept), "round {r} (seed {seed}): state");
        }
        drop(opened);
        assert!(
            aggrelog::check(&db_dir).unwrap().is_clean(),
            "round {r}: check"
        );
    }
    println!(
        "spanning_kill: a whole {mib} MiB ingest took {:?}; killed rounds: {killed_absent} absent, {killed_present} present",
        full_run.unwrap_or_default()
    );
}
