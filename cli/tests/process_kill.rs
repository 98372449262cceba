//! Real `aggrelog` processes killed with SIGKILL at random moments, over and over, on one
//! database: every batch the process reported as committed survives, no batch is ever partly
//! present, and the state is exactly the model applied to the batches that are present.
//!
//! Each batch file carries two marker aggregates, `m-<batch>-first` and `m-<batch>-last`, at its
//! first and last positions, plus overwrites, nulls and deletes of shared aggregates. A batch is
//! *present* when its first marker is. The RNG seed is printed (set `AGGRELOG_KILL_SEED` to
//! replay a run's choices; kill timing itself stays nondeterministic).
//!
//! A killed process's `write`s stay in the page cache, so SIGKILL cannot tear an append the way
//! a power cut can (`tests/recovery.rs` and `tests/damage_matrix.rs` cover torn bytes); what it
//! exercises is the commit protocol: acknowledgement after durability, batch atomicity,
//! checkpoint and compaction steps interrupted anywhere, recovery of the leftovers, redelivery.
#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aggrelog::testing::Rng;
use aggrelog::{Db, Options};
use common::{delete, oracle, patch, scan_all, TestDelta};
use serde_json::{json, Value};

/// Kills that must land on a running process.
const TARGET_KILLS: usize = 64;
/// Safety net on the number of rounds.
const MAX_ROUNDS: usize = 400;
const SHARED: usize = 8;
/// SIGKILL's number on Linux and the BSDs.
const SIGKILL: i32 = 9;

fn seed() -> u64 {
    std::env::var("AGGRELOG_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn first_marker(b: usize) -> String {
    format!("m-{b}-first")
}

fn last_marker(b: usize) -> String {
    format!("m-{b}-last")
}

/// A patch of a shared aggregate: overwrites, nested objects, and nulls that remove fields.
fn shared_patch(rng: &mut Rng, b: usize, i: usize) -> Value {
    let mut fields = serde_json::Map::new();
    for _ in 0..1 + rng.below(3) {
        let key = format!("f{}", rng.below(6));
        let value = match rng.below(6) {
            0 => Value::Null,
            1 => json!({"batch": b, "pos": i, "inner": {"k": rng.below(100)}}),
            2 => json!({"inner": null}),
            3 => json!([b, i, "x"]),
            4 => json!(format!("v-{b}-{i}")),
            _ => json!(rng.below(1000)),
        };
        fields.insert(key, value);
    }
    Value::Object(fields)
}

/// Batch `b` with upstream seq `seq`: markers first and last, 20 to 50 deltas in between.
fn make_batch(rng: &mut Rng, b: usize, seq: u64) -> Vec<TestDelta> {
    let mut deltas = vec![patch(&first_marker(b), seq, json!({"present": true}))];
    for i in 0..20 + rng.below(31) as usize {
        let shared = format!("shared-{}", rng.below(SHARED as u64));
        deltas.push(match rng.below(10) {
            0 => delete(&shared, seq),
            1..=5 => patch(&shared, seq, shared_patch(rng, b, i)),
            6 | 7 => patch("hot", seq, json!({"last": b, format!("k{}", i % 4): i})),
            _ => patch(&format!("item-{}", rng.below(40)), seq, json!({"b": b})),
        });
    }
    deltas.push(patch(&last_marker(b), seq, json!({"present": true})));
    deltas
}

fn jsonl(deltas: &[TestDelta]) -> String {
    let mut out = String::new();
    for d in deltas {
        let line = match &d.patch {
            Some(p) => json!({"aggregate": d.aggregate, "seq": d.seq, "patch": p}),
            None => json!({"aggregate": d.aggregate, "seq": d.seq, "delete": true}),
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    rng: Rng,
    seed: u64,
    /// Every batch ever generated, by index.
    batches: Vec<Vec<TestDelta>>,
    files: Vec<String>,
    by_file: BTreeMap<String, usize>,
    seqs: BTreeSet<u64>,
    /// Batches some process reported as committed.
    committed: BTreeSet<usize>,
    /// Batches found present by the last verification.
    present: BTreeSet<usize>,
    /// Batches handed to some ingest.
    attempted: BTreeSet<usize>,
    kills: usize,
    /// Opens after a kill that truncated a torn tail.
    torn_tails: usize,
    /// Batches found present although no line reported them (killed between durability and
    /// the report).
    present_unreported: usize,
    /// Opens after a long round that found folded deltas (background compaction ran).
    folded_seen: usize,
    kills_by_command: BTreeMap<&'static str, usize>,
    rounds: usize,
}

impl World {
    fn new() -> World {
        let seed = seed();
        println!("process_kill seed: {seed} (AGGRELOG_KILL_SEED={seed} replays the choices)");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        World {
            db: dir.join("db"),
            dir,
            _tmp: tmp,
            rng: Rng::new(seed),
            seed,
            batches: Vec::new(),
            files: Vec::new(),
            by_file: BTreeMap::new(),
            seqs: BTreeSet::new(),
            committed: BTreeSet::new(),
            present: BTreeSet::new(),
            attempted: BTreeSet::new(),
            kills: 0,
            torn_tails: 0,
            present_unreported: 0,
            folded_seen: 0,
            kills_by_command: BTreeMap::new(),
            rounds: 0,
        }
    }

    /// Generates the next batch and its file; seqs are distinct but not in ingest order.
    fn new_batch(&mut self) -> usize {
        let b = self.batches.len();
        let seq = loop {
            let s = 1 + self.rng.below(1_000_000);
            if self.seqs.insert(s) {
                break s;
            }
        };
        let deltas = make_batch(&mut self.rng, b, seq);
        let path = self.dir.join(format!("batch-{b:05}.jsonl"));
        fs::write(&path, jsonl(&deltas)).unwrap();
        let name = path.to_str().unwrap().to_owned();
        self.by_file.insert(name.clone(), b);
        self.files.push(name);
        self.batches.push(deltas);
        b
    }

    fn spawn(&self, args: &[&str]) -> (Child, PathBuf) {
        let stderr_path = self.dir.join(format!("stderr-{}.txt", self.rounds));
        let child = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        (child, stderr_path)
    }

    fn context(&self) -> String {
        format!(
            "seed {} round {} kills {}",
            self.seed, self.rounds, self.kills
        )
    }

    /// Kills `child` (SIGKILL, if it is still running) and reaps it; counts the kills that
    /// landed. A child that finished first must have succeeded.
    fn kill(&mut self, child: &mut Child, command: &'static str, stderr: &Path) {
        let _ = child.kill();
        let status = child.wait().unwrap();
        if status.signal() == Some(SIGKILL) {
            self.kills += 1;
            *self.kills_by_command.entry(command).or_default() += 1;
        } else {
            assert!(
                status.success(),
                "{command} failed on its own ({status}): {} [{}]",
                fs::read_to_string(stderr).unwrap_or_default(),
                self.context()
            );
        }
    }

    /// One `aggrelog ingest` of the batches left unreported by the last round plus new ones,
    /// killed after a random number of reported lines and/or a random short sleep.
    ///
    /// A long round ingests hundreds of files and is killed after more than a second, so that
    /// the background compaction thread (1 s interval) is folding when the kill lands.
    fn ingest_round(&mut self, pending: &[usize], kill: bool, long: bool) -> Vec<usize> {
        let mut list: Vec<usize> = pending.to_vec();
        let new = if long {
            550 + self.rng.below(100)
        } else {
            3 + self.rng.below(10)
        };
        for _ in 0..new {
            list.push(self.new_batch());
        }
        self.attempted.extend(list.iter().copied());
        let mut args: Vec<&str> = vec!["ingest", "--db", self.db.to_str().unwrap()];
        if self.rng.chance(0.2) {
            args.push("--compress");
        }
        let names: Vec<String> = list.iter().map(|&b| self.files[b].clone()).collect();
        args.extend(names.iter().map(String::as_str));
        let (mut child, stderr) = self.spawn(&args);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut reported = BTreeSet::new();
        let spawned = Instant::now();
        if kill && long {
            let deadline = Duration::from_millis(1_050 + self.rng.below(500));
            while spawned.elapsed() < deadline
                && read_report(&mut stdout, &self.by_file, &self.batches, &mut reported)
            {
            }
            self.kill(&mut child, "ingest (long)", &stderr);
        } else if kill {
            let after = self.rng.below(list.len() as u64 + 1) as usize;
            for _ in 0..after {
                if !read_report(&mut stdout, &self.by_file, &self.batches, &mut reported) {
                    break;
                }
            }
            match self.rng.below(3) {
                0 => {}
                1 => thread::sleep(Duration::from_micros(self.rng.below(2_000))),
                _ => thread::sleep(Duration::from_micros(self.rng.below(20_000))),
            }
            self.kill(&mut child, "ingest", &stderr);
        } else {
            // Read the whole output first: the child blocks if the pipe fills.
            while read_report(&mut stdout, &self.by_file, &self.batches, &mut reported) {}
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "ingest failed: {}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        // Lines already in the pipe were printed after their batch was durable: committed too.
        while read_report(&mut stdout, &self.by_file, &self.batches, &mut reported) {}
        self.committed.extend(reported.iter().copied());
        list.into_iter().filter(|b| !reported.contains(b)).collect()
    }

    /// `aggrelog compact` or `aggrelog checkpoint`, killed at a random moment (or not).
    fn maintenance_round(&mut self) {
        let command = if self.rng.chance(0.5) {
            "compact"
        } else {
            "checkpoint"
        };
        let db = self.db.to_str().unwrap().to_owned();
        let (mut child, stderr) = self.spawn(&[command, "--db", &db]);
        if self.rng.chance(0.85) {
            // A compaction of this small log takes a few milliseconds after a 1-2 ms start-up.
            thread::sleep(Duration::from_micros(self.rng.below(6_000)));
            self.kill(&mut child, command, &stderr);
        } else {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{command} failed: {}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
    }

    /// Opens the database and checks the three properties, then `aggrelog check`.
    fn verify(&mut self) {
        let ctx = self.context();
        let options = Options::default()
            .background_compaction(false)
            .checkpoint_every_bytes(0);
        let db = Db::open(&self.db, options).unwrap_or_else(|e| panic!("open: {e} [{ctx}]"));
        let stats = db.stats();
        if stats.torn_bytes_dropped > 0 {
            self.torn_tails += 1;
        }
        if stats.unfolded_deltas < stats.deltas {
            self.folded_seen += 1;
        }
        let state = scan_all(&db);
        let mut present = BTreeSet::new();
        for &b in &self.attempted {
            let first = state.contains_key(&first_marker(b));
            let last = state.contains_key(&last_marker(b));
            assert_eq!(
                first, last,
                "batch {b} ({}) is partly present: first marker {first}, last marker {last} [{ctx}]",
                self.files[b]
            );
            if first {
                present.insert(b);
            }
        }
        let lost: Vec<_> = self.committed.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "committed batches missing: {lost:?} [{ctx}]"
        );
        let vanished: Vec<_> = self.present.difference(&present).collect();
        assert!(
            vanished.is_empty(),
            "batches present at the last check are gone: {vanished:?} [{ctx}]"
        );
        let expected = oracle(
            &present
                .iter()
                .map(|&b| self.batches[b].clone())
                .collect::<Vec<_>>(),
        );
        if state != expected {
            let diff: Vec<_> = expected
                .keys()
                .chain(state.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| expected.get(*k) != state.get(*k))
                .take(5)
                .map(|k| {
                    format!(
                        "{k}: expected {:?}, found {:?}",
                        expected.get(k),
                        state.get(k)
                    )
                })
                .collect();
            panic!("state differs from the oracle over the present batches: {diff:#?} [{ctx}]");
        }
        db.close().unwrap();
        self.present_unreported += present
            .difference(&self.present)
            .filter(|b| !self.committed.contains(b))
            .count();
        self.present = present;

        let out = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
            .args(["check", "--db", self.db.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "aggrelog check: {}{} [{ctx}]",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Reads one `{"batch":FILE,"deltas":N}` line; false at the end of the output (a line cut by
/// the kill is ignored).
fn read_report(
    stdout: &mut impl BufRead,
    by_file: &BTreeMap<String, usize>,
    batches: &[Vec<TestDelta>],
    reported: &mut BTreeSet<usize>,
) -> bool {
    let mut line = String::new();
    if stdout.read_line(&mut line).unwrap() == 0 || !line.ends_with('\n') {
        return false;
    }
    let value: Value = serde_json::from_str(&line).unwrap();
    let b = by_file[value["batch"].as_str().unwrap()];
    assert_eq!(
        value["deltas"].as_u64(),
        Some(batches[b].len() as u64),
        "{line}"
    );
    reported.insert(b);
    true
}

#[test]
fn sigkill_at_random_moments_never_loses_or_splits_a_committed_batch() {
    let started = Instant::now();
    let mut world = World::new();
    let mut pending: Vec<usize> = Vec::new();
    while world.kills < TARGET_KILLS && world.rounds < MAX_ROUNDS {
        world.rounds += 1;
        if world.rounds == 20 || world.rounds == 40 {
            pending = world.ingest_round(&pending, true, true);
        } else if world.rounds > 1 && world.rng.chance(0.3) {
            world.maintenance_round();
        } else {
            pending = world.ingest_round(&pending, true, false);
        }
        world.verify();
    }
    // A last, uninterrupted round delivers what was never reported: then every batch is there.
    world.rounds += 1;
    let left = world.ingest_round(&pending, false, false);
    assert!(left.is_empty(), "{left:?}");
    world.verify();
    assert_eq!(world.present, world.attempted);
    println!(
        "{} rounds, {} kills landed ({:?}), {} batches, {} opens truncated a torn tail, \
         {} batches present without a report, {} opens saw folded deltas, {:.1} s",
        world.rounds,
        world.kills,
        world.kills_by_command,
        world.batches.len(),
        world.torn_tails,
        world.present_unreported,
        world.folded_seen,
        started.elapsed().as_secs_f64()
    );
    assert!(
        world.kills >= 50,
        "only {} kills landed in {} rounds",
        world.kills,
        world.rounds
    );
    let _ = std::io::stdout().flush();
}
