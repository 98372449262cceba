//! Deterministic crash simulation over [`SimStorage`]: a scenario of writes (duplicated and out
//! of order, some larger than a segment and written as spanning batches), reads, checkpoints,
//! compactions, seals, injected faults and crashes, checked after every recovery:
//! (a) every acknowledged batch is wholly present;
//! (b) no batch is partly present (each carries marker deltas at its first and last position);
//! (c) every state equals the oracle over the present batches (for [`MergePatch`], json-patch
//! `merge` in seq order);
//! (d) the stored source position is that of the present batches: batch `n`, when written as
//! one batch record, carries the source range `n..n + 1` of a queue partition, so the position
//! must be one past the highest such batch present (through compactions that delete the
//! segments holding them, and checkpoints);
//! (e) batch `n` is named `b<n>` and may be retracted and unretracted (pending when it was never
//! written): an acknowledged retraction status holds after every recovery, a retracted batch is
//! never visible, and (c) is over the batches present and not retracted;
//! and: a write after a failed write or sync is refused until reopen; after a mere crash, a
//! strict open never reports corruption.
//!
//! [`run`] runs a scenario against [`MergePatch`]; [`run_model`] against any model that says how
//! a scenario's JSON patch becomes one of its delta bodies and what its state must be
//! ([`Simulated`]): an embedder checks their own model with the same scenarios and crashes.
//!
//! Used by `tests/simulation.rs` (seeded random scenarios; a failing seed is printed and rerun
//! with `SIM_SEED=N cargo test --release --test simulation`) and the `ops_with_crash` fuzz target
//! (scenarios decoded from bytes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::sim_storage::{FaultConfig, SimStorage};
use crate::batch::Batch;
use crate::db::Db;
use crate::error::Error;
use crate::model::{merge_patch, DeltaKind, MergePatch, Model};
use crate::options::{Compression, History, Options, SyncMode};
use crate::rng::Rng;

/// Where the simulated database lives on the simulated disk.
const DB_PATH: &str = "/sim/db";
/// Attempts to reopen after transient injected faults before giving up.
const REOPEN_ATTEMPTS: usize = 50;

/// One delta of a scenario batch: `patch: None` is a delete.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDelta {
    /// Aggregate id.
    pub aggregate: String,
    /// Upstream seq.
    pub seq: u64,
    /// The patch, or `None` for a delete.
    pub patch: Option<Value>,
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Write batch `n` (modulo the number of batches); writing one twice is a duplicate.
    Write(usize),
    /// Read one aggregate (compared with the oracle when the outcome is certain).
    Get(u8),
    /// Write a checkpoint.
    Checkpoint,
    /// Full compaction.
    Compact,
    /// One pass of the background policy.
    CompactByPolicy,
    /// Seal at this seq.
    Seal(u64),
    /// Inject these faults from now on (until the next crash).
    Faults(FaultConfig),
    /// Retract batch `n` (modulo the number of batches), pending if it was never written.
    Retract(usize),
    /// Unretract batch `n` (modulo the number of batches).
    Unretract(usize),
    /// Power loss, then reopen and check.
    Crash,
    /// Close cleanly, reopen and check.
    Reopen,
}

/// A model under simulation: how a scenario's patch becomes one of its delta bodies, and the
/// oracle that says what an aggregate's output must be.
pub trait Simulated: Model + Clone
where
    Self::Output: PartialEq + fmt::Debug,
{
    /// The body of a patch delta carrying `patch` (a JSON object).
    fn encode_patch(&self, patch: &Value) -> Vec<u8>;

    /// The output an aggregate must have after exactly `deltas`, given in stamp order
    /// `(seq, position)` (`None`: a delete), computed independently of the engine. A patch as
    /// the last delta must leave the aggregate present: each batch's marker aggregates tell
    /// which batches survived a crash.
    fn expected(&self, deltas: &[Option<&Value>]) -> Option<Self::Output>;
}

impl Simulated for MergePatch {
    fn encode_patch(&self, patch: &Value) -> Vec<u8> {
        let mut body = Vec::new();
        // Scenario patches are objects of bounded depth: they always encode.
        let encoded = merge_patch::encode_patch(patch, &mut body);
        debug_assert!(encoded.is_ok(), "{encoded:?}");
        body
    }

    /// json-patch's RFC 7396 `merge` in stamp order; a delete resets to absent.
    fn expected(&self, deltas: &[Option<&Value>]) -> Option<Value> {
        let mut state: Option<Value> = None;
        for delta in deltas {
            match delta {
                Some(patch) => json_patch::merge(state.get_or_insert_with(|| json!({})), patch),
                None => state = None,
            }
        }
        state
    }
}

/// A scenario: the batches that can be written and the steps to run.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Seed of the simulated storage's crash and fault choices.
    pub seed: u64,
    /// Segment size (small, so that rotation and reclamation happen).
    pub segment_size_bytes: u64,
    /// Whether batches are zstd-compressed.
    pub compress: bool,
    /// Automatic checkpoint interval in bytes (0 = off).
    pub checkpoint_every_bytes: u64,
    /// What compaction keeps unfolded (retraction needs `All` or a window).
    pub history: History,
    /// The batches; batch `i` carries markers `m<i>-first` and `m<i>-last`.
    pub batches: Vec<Vec<SimDelta>>,
    /// The steps.
    pub ops: Vec<Op>,
}

/// What a scenario run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Crashes simulated.
    pub crashes: u64,
    /// Recoveries checked.
    pub recoveries: u64,
    /// Acknowledged writes.
    pub acknowledged: u64,
    /// Writes that failed (their batch may or may not be present).
    pub failed_writes: u64,
    /// Faults the storage injected.
    pub faults: u64,
    /// Acknowledged writes of batches larger than a fragment (fragments and a batch commit).
    pub spanning_writes: u64,
    /// Retractions and unretractions that wrote a retraction record.
    pub retractions: u64,
}

/// Salt of the scenario generator (independent of the storage's stream for the same seed).
const SCENARIO_SALT: u64 = 0xD1B5_4A32_D192_ED03;

fn scenario_rng(seed: u64) -> Rng {
    Rng::salted(seed, SCENARIO_SALT)
}

/// Marker aggregate ids of batch `i`.
fn markers(i: usize) -> (String, String) {
    (format!("m{i}-first"), format!("m{i}-last"))
}

fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 1 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(1000)),
        2 => json!(format!("v{}", rng.below(50))),
        3 => json!(rng.below(2) == 0),
        4 => json!([rng.below(9), Value::Null]),
        _ => random_object(rng, depth + 1),
    }
}

fn random_object(rng: &mut Rng, depth: u32) -> Value {
    let mut map = Map::new();
    for _ in 0..rng.below(4) {
        let key = ["a", "b", "c", "d"][rng.below(4) as usize];
        map.insert(key.to_owned(), random_value(rng, depth));
    }
    Value::Object(map)
}

fn random_batch(rng: &mut Rng, i: usize, seq: u64) -> Vec<SimDelta> {
    let (first, last) = markers(i);
    let marker = |aggregate: String| SimDelta {
        aggregate,
        seq,
        patch: Some(json!({"batch": i})),
    };
    let mut batch = vec![marker(first)];
    for _ in 0..rng.below(6) {
        let aggregate = ["x", "y", "z"][rng.below(3) as usize].to_owned();
        let patch = (rng.below(8) != 0).then(|| random_object(rng, 0));
        batch.push(SimDelta {
            aggregate,
            seq,
            patch,
        });
    }
    if rng.below(4) == 0 {
        // A batch larger than a small segment: written as a spanning batch.
        for k in 0..LARGE_BATCH_MIN_DELTAS + rng.below(360) as usize {
            let patch = json!({"k": k, "pad": "p".repeat(40)});
            batch.push(SimDelta {
                aggregate: format!("f{}", rng.below(10)),
                seq,
                patch: Some(patch),
            });
        }
    }
    batch.push(marker(last));
    batch
}

/// Batches with at least this many deltas are written through [`Db::large_batch`].
const LARGE_BATCH_MIN_DELTAS: usize = 40;

fn random_faults(rng: &mut Rng) -> FaultConfig {
    let p = |rng: &mut Rng| [0.0, 0.0, 0.01, 0.05, 0.2][rng.below(5) as usize];
    FaultConfig {
        short_write: p(rng),
        fail_sync: p(rng),
        read_error: p(rng) / 4.0,
        capacity_bytes: (rng.below(6) == 0).then(|| 20_000 + rng.below(60_000)),
    }
}

fn random_op(rng: &mut Rng, batches: usize) -> Op {
    match rng.below(44) {
        0..=19 => Op::Write(rng.below(batches as u64) as usize),
        20..=23 => Op::Get(rng.below(4) as u8),
        24..=25 => Op::Checkpoint,
        26..=28 => Op::Compact,
        29..=30 => Op::CompactByPolicy,
        31 => Op::Seal(rng.below(batches as u64 + 2)),
        32..=33 => Op::Faults(random_faults(rng)),
        34..=37 => Op::Crash,
        38..=39 => Op::Reopen,
        40..=41 => Op::Retract(rng.below(batches as u64) as usize),
        _ => Op::Unretract(rng.below(batches as u64) as usize),
    }
}

/// A random scenario for `seed` with about `steps` steps.
pub fn random_scenario(seed: u64, steps: usize) -> Scenario {
    let mut rng = scenario_rng(seed);
    let count = 2 + rng.below(12) as usize;
    let mut seqs: Vec<u64> = (1..=count as u64).collect();
    for i in (1..seqs.len()).rev() {
        seqs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let batches = seqs
        .iter()
        .enumerate()
        .map(|(i, &seq)| random_batch(&mut rng, i, seq))
        .collect();
    let ops = (0..steps).map(|_| random_op(&mut rng, count)).collect();
    Scenario {
        seed,
        segment_size_bytes: [4096, 8192, 65536][rng.below(3) as usize],
        compress: rng.below(3) == 0,
        checkpoint_every_bytes: [0, 2048, 16384][rng.below(3) as usize],
        history: [History::None, History::All, History::Window(3)][rng.below(3) as usize],
        batches,
        ops,
    }
}

/// A scenario decoded from arbitrary bytes (the fuzz target's input): the first 8 bytes seed
/// the batches and the storage; each further byte picks one step.
pub fn scenario_from_bytes(data: &[u8]) -> Scenario {
    let mut seed_bytes = [0u8; 8];
    let head = data.len().min(8);
    seed_bytes[..head].copy_from_slice(&data[..head]);
    let seed = u64::from_le_bytes(seed_bytes);
    let mut scenario = random_scenario(seed, 0);
    let mut rng = scenario_rng(seed ^ 0x5eed);
    let count = scenario.batches.len();
    scenario.ops = data[head..]
        .iter()
        .take(256)
        .map(|&b| {
            let mut op_rng = scenario_rng(u64::from(b) ^ rng.next_u64());
            random_op(&mut op_rng, count)
        })
        .collect();
    scenario
}

/// What the checker knows about the batches.
#[derive(Default)]
struct Knowledge {
    /// Acknowledged: must be present after every recovery.
    acknowledged: BTreeSet<usize>,
    /// Written but not acknowledged, or present without acknowledgement: may be present.
    uncertain: BTreeSet<usize>,
    /// Highest seal acknowledged.
    seal: u64,
    /// A write or sync failed: further writes must be refused until reopen.
    poisoned: bool,
    /// Retraction status acknowledged (or read after a recovery), by batch.
    retracted: BTreeMap<usize, bool>,
    /// Batches whose retraction or unretraction failed: either status may hold.
    retraction_uncertain: BTreeSet<usize>,
}

impl Knowledge {
    /// Whether batch `n` may be in the log already.
    fn written(&self, n: usize) -> bool {
        self.acknowledged.contains(&n) || self.uncertain.contains(&n)
    }

    /// Whether batch `n` is retracted for certain.
    fn retracted(&self, n: usize) -> bool {
        self.retracted.get(&n).copied().unwrap_or(false)
    }
}

struct Run<'s, M: Simulated>
where
    M::Output: PartialEq + fmt::Debug,
{
    scenario: &'s Scenario,
    model: M,
    storage: SimStorage,
    options: Options,
    db: Option<Db<M>>,
    known: Knowledge,
    faults: FaultConfig,
    outcome: Outcome,
}

/// Runs a scenario against [`MergePatch`]; `Err` describes a violated invariant (a bug), with
/// the seed.
pub fn run(scenario: &Scenario) -> Result<Outcome, String> {
    run_model(scenario, MergePatch)
}

/// Runs a scenario against `model`; `Err` describes a violated invariant, with the seed.
pub fn run_model<M: Simulated>(scenario: &Scenario, model: M) -> Result<Outcome, String>
where
    M::Output: PartialEq + fmt::Debug,
{
    let mut options = Options::default()
        .sync(SyncMode::Always)
        .segment_size_bytes(scenario.segment_size_bytes.max(4096))
        .background_compaction(false)
        .checkpoint_every_bytes(scenario.checkpoint_every_bytes)
        .history(scenario.history)
        .compression(scenario.compress.then_some(Compression {
            level: 1,
            min_batch_bytes: 256,
        }));
    options.compaction.max_unfolded_deltas = 3;
    let mut run = Run {
        scenario,
        model,
        storage: SimStorage::new(scenario.seed),
        options,
        db: None,
        known: Knowledge::default(),
        faults: FaultConfig::default(),
        outcome: Outcome::default(),
    };
    let result = run.all();
    result
        .map(|()| {
            run.outcome.faults = run.storage.stats().faults;
            run.outcome.clone()
        })
        .map_err(|e| format!("seed {}: {e}", scenario.seed))
}

impl<M: Simulated> Run<'_, M>
where
    M::Output: PartialEq + fmt::Debug,
{
    fn all(&mut self) -> Result<(), String> {
        self.reopen(false)?;
        let trace = std::env::var_os("SIM_TRACE").is_some();
        for (n, op) in self.scenario.ops.iter().enumerate() {
            if trace {
                eprintln!(
                    "step {n}: {op:?} (segments {:?})",
                    self.db().map(|db| db.stats().segments)
                );
            }
            self.step(op)
                .map_err(|e| format!("step {n} ({op:?}): {e}"))?;
        }
        self.step(&Op::Crash)
            .map_err(|e| format!("final crash: {e}"))
    }

    fn db(&self) -> Result<&Db<M>, String> {
        self.db
            .as_ref()
            .ok_or_else(|| "no open database".to_string())
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Write(n) => self.write(*n % self.scenario.batches.len().max(1)),
            Op::Get(a) => self.get(*a),
            Op::Checkpoint => self.maintenance(|db| {
                let result = db.checkpoint();
                if std::env::var_os("SIM_TRACE").is_some() {
                    eprintln!("  checkpoint: {result:?}");
                }
                result.map(drop)
            }),
            Op::Compact => self.maintenance(|db| db.compact().map(drop)),
            Op::CompactByPolicy => self.maintenance(|db| {
                let result = db.compact_by_policy();
                if std::env::var_os("SIM_TRACE").is_some() {
                    eprintln!("  policy compaction: {result:?}");
                }
                result.map(drop)
            }),
            Op::Seal(seq) => self.seal(*seq),
            Op::Retract(n) => self.set_retracted(*n % self.scenario.batches.len().max(1), true),
            Op::Unretract(n) => self.set_retracted(*n % self.scenario.batches.len().max(1), false),
            Op::Faults(faults) => {
                self.faults = *faults;
                self.storage.set_faults(*faults);
                Ok(())
            }
            Op::Crash => {
                self.storage.crash();
                self.outcome.crashes += 1;
                self.db = None;
                self.reopen(true)
            }
            Op::Reopen => {
                if let Some(db) = self.db.take() {
                    let _ = db.close();
                }
                self.reopen(true)
            }
        }
    }

    fn batch(&self, n: usize) -> Result<Batch, String> {
        let mut batch = Batch::new();
        batch
            .set_source(source_range(n))
            .and_then(|b| b.name(&batch_name(n)))
            .map_err(|e| format!("building batch {n}: {e}"))?;
        for d in &self.scenario.batches[n] {
            let pushed = match &d.patch {
                Some(patch) => {
                    let body = self.model.encode_patch(patch);
                    batch.push_raw(&d.aggregate, d.seq, DeltaKind::Patch, &body)
                }
                None => batch.delete(&d.aggregate, d.seq),
            };
            pushed.map_err(|e| format!("building batch {n}: {e}"))?;
        }
        Ok(batch)
    }

    /// Writes batch `n` through [`Db::large_batch`] (fragments and a batch commit when it
    /// exceeds a fragment).
    /// Returns whether it was written as fragments.
    fn write_large(&self, n: usize) -> crate::Result<bool> {
        let db = self.db().map_err(crate::Error::Internal)?;
        let mut batch = db.large_batch()?;
        batch.name(&batch_name(n))?;
        for d in &self.scenario.batches[n] {
            match &d.patch {
                Some(patch) => {
                    let body = self.model.encode_patch(patch);
                    batch.push_raw(&d.aggregate, d.seq, DeltaKind::Patch, &body)?
                }
                None => batch.delete(&d.aggregate, d.seq)?,
            };
        }
        let spanning = batch.fragments_written() > 0;
        batch.commit().map(|_| spanning)
    }

    fn write(&mut self, n: usize) -> Result<(), String> {
        let low_seq = self.scenario.batches[n]
            .iter()
            .map(|d| d.seq)
            .min()
            .unwrap_or(0);
        let written = if self.scenario.batches[n].len() >= LARGE_BATCH_MIN_DELTAS {
            self.write_large(n)
        } else {
            let batch = self.batch(n)?;
            self.db()?.write(&batch).map(|_| false)
        };
        match written {
            Ok(_) if self.known.poisoned => Err("a write succeeded after a failed one".into()),
            // Below the seal only a redelivery of a batch already written is accepted.
            Ok(_) if low_seq < self.known.seal && !self.known.written(n) => Err(format!(
                "batch {n} with seq {low_seq} accepted below the seal {}",
                self.known.seal
            )),
            Ok(spanning) => {
                self.known.acknowledged.insert(n);
                self.outcome.acknowledged += 1;
                self.outcome.spanning_writes += u64::from(spanning);
                Ok(())
            }
            Err(Error::Sealed { .. }) => Ok(()),
            Err(e @ Error::Corruption { .. }) => Err(format!("write reported corruption: {e}")),
            Err(e) => {
                if std::env::var_os("SIM_TRACE").is_some() {
                    eprintln!("  write {n} failed: {e}");
                }
                self.known.uncertain.insert(n);
                self.known.poisoned = true;
                self.outcome.failed_writes += 1;
                Ok(())
            }
        }
    }

    /// Retracts or unretracts batch `n` (pending when it was never written). A refusal (out
    /// of reach, no delta) changes nothing; a failure leaves the status uncertain.
    fn set_retracted(&mut self, n: usize, retract: bool) -> Result<(), String> {
        let db = self.db()?;
        let name = batch_name(n);
        let result = match (retract, self.known.written(n)) {
            (true, true) => db.retract(&name),
            (true, false) => db.retract_pending(&name),
            (false, true) => db.unretract(&name),
            (false, false) => db.unretract_pending(&name),
        };
        match result {
            Ok(_) if self.known.poisoned => {
                Err("a retraction succeeded after a failed write".into())
            }
            Ok(retraction) => {
                debug_assert_eq!(retraction.retracted, retract);
                self.outcome.retractions += u64::from(retraction.recorded);
                self.known.retracted.insert(n, retract);
                self.known.retraction_uncertain.remove(&n);
                Ok(())
            }
            Err(Error::InvalidInput(_)) => Ok(()),
            Err(e @ Error::Corruption { .. }) => Err(format!("retract reported corruption: {e}")),
            // A failed read of the log (finding the name's deltas) does not poison it, a failed
            // append does: which one failed is not known, so later writes are not judged.
            Err(_) => {
                self.known.retraction_uncertain.insert(n);
                Ok(())
            }
        }
    }

    fn get(&mut self, a: u8) -> Result<(), String> {
        let id = ["x", "y", "z", "m0-first"][usize::from(a % 4)];
        let got = match self.db()?.get(id) {
            Ok(got) => got.map(|s| (s.seq, s.state)),
            Err(Error::Io { .. }) => return Ok(()),
            Err(e) => return Err(format!("get({id}) failed: {e}")),
        };
        if self.known.uncertain.is_empty() && self.known.retraction_uncertain.is_empty() {
            let visible = (self.known.acknowledged.iter())
                .filter(|n| !self.known.retracted(**n))
                .copied()
                .collect();
            let expected = oracle(&self.model, &self.scenario.batches, &visible);
            if got.as_ref() != expected.get(id) {
                return Err(format!(
                    "get({id}) = {got:?}, oracle {:?}",
                    expected.get(id)
                ));
            }
        }
        Ok(())
    }

    /// Maintenance may fail under injected faults. A failed append or log sync poisons the log
    /// (later writes fail, which `write` then learns); a failed checkpoint file write does not.
    fn maintenance(&mut self, f: impl FnOnce(&Db<M>) -> crate::Result<()>) -> Result<(), String> {
        match f(self.db()?) {
            Err(e @ Error::Corruption { .. }) => {
                Err(format!("maintenance reported corruption: {e}"))
            }
            Ok(()) | Err(_) => Ok(()),
        }
    }

    fn seal(&mut self, seq: u64) -> Result<(), String> {
        match self.db()?.seal(seq) {
            Ok(()) => {
                self.known.seal = self.known.seal.max(seq);
                Ok(())
            }
            Err(e @ Error::Corruption { .. }) => Err(format!("seal reported corruption: {e}")),
            Err(_) => {
                self.known.poisoned = true;
                Ok(())
            }
        }
    }

    /// Reopens (retrying transient faults with faults lifted), then checks the invariants.
    fn reopen(&mut self, check: bool) -> Result<(), String> {
        self.storage.set_faults(FaultConfig::default());
        let path = Path::new(DB_PATH);
        let mut last = String::new();
        for _ in 0..REOPEN_ATTEMPTS {
            let storage = Arc::new(self.storage.clone());
            match Db::open_with(path, self.options.clone(), self.model.clone(), storage) {
                Ok(db) => {
                    self.db = Some(db);
                    self.known.poisoned = false;
                    self.outcome.recoveries += 1;
                    if check {
                        self.verify()?;
                    }
                    self.storage.set_faults(self.faults);
                    return Ok(());
                }
                Err(e @ Error::Corruption { .. }) => {
                    return Err(format!(
                        "strict open after a crash reported corruption: {e}"
                    ))
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("could not reopen: {last}"))
    }

    /// Checks (a), (b) and (c) of the module docs, then learns what is now present.
    fn verify(&mut self) -> Result<(), String> {
        let db = self.db()?;
        let mut states = BTreeMap::new();
        for item in db.scan() {
            let (id, state) = item.map_err(|e| format!("scan after recovery: {e}"))?;
            states.insert(id, (state.seq, state.state));
        }
        let mut present = BTreeSet::new();
        for n in 0..self.scenario.batches.len() {
            let (first, last) = markers(n);
            if states.contains_key(&first) && states.contains_key(&last) {
                present.insert(n);
            }
        }
        if std::env::var_os("SIM_TRACE").is_some() {
            let stats = db.stats();
            eprintln!(
                "  recovered: checkpoint {:?}, rejected {:?}, seal {}, torn {}, segments {}, present {present:?}",
                stats.checkpoint.map(|c| (c.number, c.position)),
                stats.checkpoints_rejected,
                stats.seal,
                stats.torn_bytes_dropped,
                stats.segments
            );
        }
        let mut present = BTreeSet::new();
        for n in 0..self.scenario.batches.len() {
            let (first, last) = markers(n);
            match (states.contains_key(&first), states.contains_key(&last)) {
                (true, true) => drop(present.insert(n)),
                (false, false) => {}
                _ => return Err(format!("batch {n} is partly present")),
            }
        }
        let names = db.retracted_batches();
        let retracted = self.check_retractions(&names, &present)?;
        let db = self.db()?;
        let shown = self.known.acknowledged.difference(&retracted);
        if let Some(lost) = shown.clone().find(|n| !present.contains(n)) {
            return Err(format!(
                "acknowledged batch {lost} is missing after recovery"
            ));
        }
        let possible: BTreeSet<usize> = self
            .known
            .acknowledged
            .union(&self.known.uncertain)
            .copied()
            .collect();
        if let Some(extra) = present.difference(&possible).next() {
            return Err(format!("batch {extra} is present but was never written"));
        }
        let expected = oracle(&self.model, &self.scenario.batches, &present);
        if states != expected {
            return Err(format!("state differs from the oracle over batches {present:?}:\n got {states:?}\nwant {expected:?}"));
        }
        // Retraction takes deltas back, not the source range: a retracted batch may or may
        // not be durable, so its range bounds the position from above only.
        let positions = db.source_positions();
        let stored = positions.iter().map(|p| p.next_offset).max();
        let written_whole = |n: &&usize| self.scenario.batches[**n].len() < LARGE_BATCH_MIN_DELTAS;
        let next_offset = |batches: &BTreeSet<usize>| {
            (batches.iter().filter(written_whole))
                .map(|n| *n as u64 + 1)
                .max()
        };
        let lowest = next_offset(&present);
        let hidden = possible.intersection(&retracted).copied();
        let highest = next_offset(&present.iter().copied().chain(hidden).collect());
        if !(lowest <= stored && stored <= highest) || positions.len() > 1 {
            return Err(format!(
                "source positions {positions:?} after recovery, expected next offset in \
                 {lowest:?}..={highest:?}"
            ));
        }
        let seal = db.stats().seal;
        if seal < self.known.seal {
            return Err(format!(
                "seal {seal} after recovery, {} was acknowledged",
                self.known.seal
            ));
        }
        self.known.seal = seal;
        // A retracted batch's durability stays as unknown as it was.
        let still_unknown = self.known.uncertain.intersection(&retracted).copied();
        self.known.uncertain = (present.difference(&self.known.acknowledged).copied())
            .chain(still_unknown)
            .collect();
        Ok(())
    }

    /// Checks (e) against the database's retracted `names`, then learns them: every status is
    /// certain after a recovery. Returns the retracted batches.
    fn check_retractions(
        &mut self,
        names: &[String],
        present: &BTreeSet<usize>,
    ) -> Result<BTreeSet<usize>, String> {
        let retracted: BTreeSet<usize> = (0..self.scenario.batches.len())
            .filter(|n| names.contains(&batch_name(*n)))
            .collect();
        for (&n, &status) in &self.known.retracted {
            let certain = !self.known.retraction_uncertain.contains(&n);
            if certain && retracted.contains(&n) != status {
                return Err(format!(
                    "batch {n}: acknowledged retracted = {status}, after recovery {}",
                    !status
                ));
            }
        }
        if let Some(shown) = present.intersection(&retracted).next() {
            return Err(format!("batch {shown} is retracted but visible"));
        }
        self.known.retracted = (0..self.scenario.batches.len())
            .map(|n| (n, retracted.contains(&n)))
            .collect();
        self.known.retraction_uncertain.clear();
        Ok(retracted)
    }
}

/// The name of batch `n`.
fn batch_name(n: usize) -> String {
    format!("b{n}")
}

/// The source range batch `n` carries when written as one batch record: offset `n` of a
/// queue partition.
fn source_range(n: usize) -> crate::SourceRange {
    crate::SourceRange {
        topic: "sim".into(),
        partition: 0,
        first_offset: n as u64,
        next_offset: n as u64 + 1,
        dead_letters: 0,
    }
}

/// The model's definition, computed independently: the deltas of the given batches per
/// aggregate, ordered by (seq, position), handed to the model's oracle.
fn oracle<M: Simulated>(
    model: &M,
    batches: &[Vec<SimDelta>],
    present: &BTreeSet<usize>,
) -> BTreeMap<String, (u64, M::Output)>
where
    M::Output: PartialEq + fmt::Debug,
{
    let mut stamped: BTreeMap<&str, BTreeMap<(u64, usize), Option<&Value>>> = BTreeMap::new();
    for &n in present {
        for (position, d) in batches[n].iter().enumerate() {
            let chain = stamped.entry(&d.aggregate).or_default();
            chain.insert((d.seq, position), d.patch.as_ref());
        }
    }
    let mut states = BTreeMap::new();
    for (id, chain) in stamped {
        let max_seq = chain.keys().map(|(seq, _)| *seq).max().unwrap_or(0);
        let deltas: Vec<Option<&Value>> = chain.into_values().collect();
        if let Some(output) = model.expected(&deltas) {
            states.insert(id.to_owned(), (max_seq, output));
        }
    }
    states
}
