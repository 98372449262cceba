//! The harness of the `follow` tests: a real `tansu` broker on a free 127.0.0.1 port with its
//! SQLite storage in a temporary directory (stopped, restarted on the same port and storage,
//! killed on drop), a producer, real `aggrelog follow` processes, the read commands, and the
//! oracle (RFC 7396 over each aggregate's deltas in stamp order).

#![allow(dead_code)] // each test binary uses part of the harness

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use aggrelog::testing::Rng;
use aggrelog_kafka::rdkafka::config::ClientConfig;
use aggrelog_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use aggrelog_kafka::rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use aggrelog_kafka::rdkafka::ClientContext;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The `aggrelog` binary under test.
pub const AGGRELOG: &str = env!("CARGO_BIN_EXE_aggrelog");

/// The crate's seeded generator, seeded from `AGGRELOG_KAFKA_SEED` when set, else from the
/// clock; prints the seed so a failure can be replayed.
pub fn seeded_rng(test: &str) -> Rng {
    let seed = std::env::var("AGGRELOG_KAFKA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{test}: AGGRELOG_KAFKA_SEED={seed}");
    Rng::new(seed)
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A running `tansu` broker with SQLite storage in its own temporary directory.
pub struct Broker {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    pub fn start() -> Broker {
        let mut broker = Broker {
            dir: kept_when_asked(tempfile::tempdir().expect("broker dir"), "broker"),
            port: free_port(),
            child: None,
        };
        broker.spawn();
        broker
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.address());
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("broker log");
        let child = Command::new("tansu")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .env_remove("STORAGE_ENGINE")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tansu (cargo install tansu@0.6.0 --locked --no-default-features --features libsql)");
        self.child = Some(child);
        wait_for(Duration::from_secs(30), "the broker to listen", || {
            TcpStream::connect(self.address()).is_ok()
        });
    }

    /// Kills the broker (its storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        aggrelog_kafka::create_topic(&self.address(), topic, partitions, Duration::from_secs(30))
            .expect("create the topic");
    }

    /// The end offset (high watermark) of each partition of `topic`.
    pub fn end_offsets(&self, topic: &str, partitions: u32) -> Vec<u64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .create()
            .expect("consumer");
        (0..partitions)
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p as i32, Duration::from_secs(10))
                    .expect("watermarks");
                high as u64
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts the deliveries that failed.
#[derive(Default)]
pub struct Deliveries {
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            eprintln!("delivery failed: {e}");
            self.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A producer to the broker; each message keyed by its aggregate id (the default partitioner
/// sends one key to one partition).
pub struct Producer {
    producer: ThreadedProducer<Deliveries>,
}

impl Producer {
    pub fn new(brokers: &str) -> Producer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            .create_with_context(Deliveries::default())
            .expect("producer");
        Producer { producer }
    }

    /// Sends `(key, value)` messages to `topic` (each to `partition` when given).
    pub fn send(&self, topic: &str, messages: &[Message]) {
        for m in messages {
            let mut record = BaseRecord::to(topic).key(&m.key).payload(&m.value);
            if let Some(partition) = m.partition {
                record = record.partition(partition as i32);
            }
            let mut record = record;
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((_, returned)) => {
                        record = returned; // queue full: let it drain
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }

    /// Waits until every message sent is acknowledged; panics when one failed.
    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(120))
            .expect("flush the producer");
        let failed = self.producer.context().failed.load(Ordering::SeqCst);
        assert_eq!(failed, 0, "{failed} messages were not delivered");
    }
}

/// A message to produce.
#[derive(Clone, Debug)]
pub struct Message {
    pub key: String,
    pub value: String,
    pub partition: Option<u32>,
}

/// A running `aggrelog follow` process; its last `--json-status` line is kept.
pub struct FollowerProcess {
    child: Child,
    pub status: Arc<Mutex<Option<Value>>>,
}

impl FollowerProcess {
    /// Starts `aggrelog follow` with `--json-status --interval-ms 200` and `extra` arguments;
    /// its stderr goes to `DB.stderr.log` beside the directory.
    pub fn start(brokers: &str, topic: &str, group: &str, db: &Path, extra: &[&str]) -> Self {
        let log_path = db.with_extension("stderr.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("follower log");
        let mut child = Command::new(AGGRELOG)
            .args([
                "follow",
                "--brokers",
                brokers,
                "--topic",
                topic,
                "--group",
                group,
            ])
            .arg("--db")
            .arg(db)
            .args(["--json-status", "--interval-ms", "200"])
            .args(extra)
            .env("AGGRELOG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start aggrelog follow");
        let status = Arc::new(Mutex::new(None));
        let stdout = child.stdout.take().expect("stdout");
        let last = Arc::clone(&status);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value = serde_json::from_str(&line).expect("a JSON status line");
                *last.lock().unwrap() = Some(value);
            }
        });
        FollowerProcess { child, status }
    }

    /// SIGKILL.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (status 0).
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                assert!(exit.success(), "follow exited with {exit} after SIGTERM");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "follow did not stop after SIGTERM"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for FollowerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `aggrelog ARGS`; returns (status code, stdout).
pub fn aggrelog(args: &[&str]) -> (i32, String) {
    let out = Command::new(AGGRELOG)
        .args(args)
        .output()
        .expect("run aggrelog");
    if !out.status.success() {
        eprintln!(
            "aggrelog {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 output"),
    )
}

/// `aggrelog stats --db DIR` of a follower directory.
pub fn stats(db: &Path) -> Value {
    let (code, out) = aggrelog(&["stats", "--db", &db.display().to_string()]);
    assert_eq!(code, 0, "stats failed: {out}");
    serde_json::from_str(&out).expect("stats JSON")
}

/// The stored source positions of a follower directory, by partition:
/// (next_offset, dead_letters, reapplied).
pub fn positions(db: &Path) -> BTreeMap<u32, (u64, u64, u64)> {
    let stats = stats(db);
    let mut found = BTreeMap::new();
    for s in stats["sources"].as_array().expect("sources") {
        let field = |name: &str| s[name].as_u64().expect("a counter");
        found.insert(
            field("partition") as u32,
            (
                field("next_offset"),
                field("dead_letters"),
                field("reapplied"),
            ),
        );
    }
    found
}

/// `aggrelog scan --db DIR`: aggregate id -> state.
pub fn scan(db: &Path) -> BTreeMap<String, Value> {
    let (code, out) = aggrelog(&["scan", "--db", &db.display().to_string()]);
    assert_eq!(code, 0, "scan failed");
    let mut states = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in out.lines() {
        let value: Value = serde_json::from_str(line).expect("a scan line");
        let id = value["aggregate"].as_str().expect("id").to_owned();
        assert!(
            last.as_ref().is_none_or(|l| *l < id),
            "scan is not sorted by id at {id}"
        );
        last = Some(id.clone());
        states.insert(id, value["state"].clone());
    }
    states
}

/// Waits until every partition's stored position in `db` is its end offset.
pub fn wait_caught_up(db: &Path, ends: &[u64], timeout: Duration) {
    wait_for(timeout, "the follower to catch up", || {
        // The follower writes its directory's marker when it starts.
        if !db.join(aggrelog_kafka::layout::MARKER_FILE).exists() {
            return false;
        }
        let positions = positions(db);
        (ends.iter().enumerate())
            .all(|(p, end)| *end == 0 || positions.get(&(p as u32)).is_some_and(|s| s.0 == *end))
    });
}

/// Polls `done` every 100 ms until it holds; panics after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// One delta of the workload: (aggregate, seq, pos, patch or None for a delete).
#[derive(Clone, Debug)]
pub struct Delta {
    pub aggregate: String,
    pub seq: u64,
    pub pos: u32,
    pub patch: Option<Value>,
}

/// The oracle: each aggregate's deltas (duplicates once) folded in (seq, pos) order by RFC
/// 7396, a delete resetting the state to absent; live aggregates only.
pub fn oracle(deltas: &[Delta]) -> BTreeMap<String, Value> {
    let mut by_aggregate: HashMap<&str, BTreeMap<(u64, u32), &Option<Value>>> = HashMap::new();
    for d in deltas {
        let stamps = by_aggregate.entry(&d.aggregate).or_default();
        if let Some(previous) = stamps.insert((d.seq, d.pos), &d.patch) {
            assert_eq!(previous, &d.patch, "the workload reuses the stamp of {d:?}");
        }
    }
    let mut states = BTreeMap::new();
    for (id, stamps) in by_aggregate {
        let mut state: Option<Value> = None;
        for patch in stamps.values() {
            state = patch.as_ref().map(|patch| {
                let mut doc = state.take().unwrap_or_else(|| json!({}));
                json_patch::merge(&mut doc, patch);
                doc
            });
        }
        if let Some(state) = state {
            states.insert(id.to_owned(), state);
        }
    }
    states
}

/// Compares two state maps and names the first difference.
pub fn assert_states_equal(actual: &BTreeMap<String, Value>, expected: &BTreeMap<String, Value>) {
    for (id, want) in expected {
        match actual.get(id) {
            Some(got) => assert_eq!(got, want, "state of {id}"),
            None => panic!("aggregate {id} is missing; expected {want}"),
        }
    }
    if let Some(extra) = actual.keys().find(|id| !expected.contains_key(*id)) {
        panic!("aggregate {extra} should be absent, has {}", actual[extra]);
    }
}

/// An mfg-style workload: `messages` messages of 1 to 5 lines over `aggregates` aircraft, each
/// message one upstream batch of one aggregate (a seq of its own), with nested patches,
/// deletes, and explicit `pos` on some. Returns the messages (in seq order) and their deltas.
pub fn workload(
    rng: &mut Rng,
    aggregates: u64,
    target_deltas: usize,
) -> (Vec<Message>, Vec<Delta>) {
    let mut seqs = vec![0u64; aggregates as usize];
    let mut messages = Vec::new();
    let mut deltas = Vec::new();
    while deltas.len() < target_deltas {
        let a = rng.below(aggregates) as usize;
        seqs[a] += 1 + rng.below(3);
        let id = format!("aircraft-{a:05}");
        let lines = 1 + rng.below(5) as u32;
        let explicit = rng.chance(0.30);
        let mut text = Vec::new();
        for i in 0..lines {
            let pos = if explicit { 10 + 3 * i } else { i };
            let patch = if rng.chance(0.04) {
                None
            } else {
                Some(mfg_patch(rng))
            };
            let mut line = json!({"aggregate": id, "seq": seqs[a]});
            match &patch {
                Some(p) => line["patch"] = p.clone(),
                None => line["delete"] = json!(true),
            }
            if explicit {
                line["pos"] = json!(pos);
            }
            text.push(line.to_string());
            deltas.push(Delta {
                aggregate: id.clone(),
                seq: seqs[a],
                pos,
                patch,
            });
        }
        messages.push(Message {
            key: id,
            value: text.join("\n"),
            partition: None,
        });
    }
    (messages, deltas)
}

fn mfg_patch(rng: &mut Rng) -> Value {
    let mut patch = json!({});
    if rng.chance(0.50) {
        patch["engine"] =
            json!({"serial": format!("ESN-{}", rng.below(1000)), "cycles": rng.below(50_000)});
    }
    if rng.chance(0.40) {
        let letter = ["A", "B", "C", "D"][rng.below(4) as usize];
        let seat = format!("seat_{}{letter}", 1 + rng.below(40));
        let class = ["economy", "business"][rng.below(2) as usize];
        patch["cabin"] = if rng.chance(0.25) {
            json!({ seat: null })
        } else {
            json!({ seat: {"class": class, "ife": rng.chance(0.50)} })
        };
    }
    if rng.chance(0.30) {
        let version = format!("{}.{}", rng.below(9), rng.below(20));
        let tcas = if rng.chance(0.20) {
            Value::Null
        } else {
            json!(rng.below(3))
        };
        patch["avionics"] = json!({"fms": {"version": version}, "tcas": tcas});
    }
    if rng.chance(0.10) {
        let status = ["active", "maintenance", "stored"][rng.below(3) as usize];
        patch["status"] = json!(status);
    }
    if patch.as_object().is_some_and(|o| o.is_empty()) {
        patch["touched"] = json!(rng.below(1_000_000));
    }
    patch
}

/// Duplicates some messages and moves some later ones before earlier ones: what an
/// at-least-once upstream delivers.
pub fn disorder(rng: &mut Rng, messages: &[Message], duplicate_percent: u64) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() * 11 / 10);
    for m in messages {
        out.push(m.clone());
        if rng.chance(duplicate_percent as f64 / 100.0) {
            out.push(m.clone());
        }
    }
    // Swap within windows of up to 50 messages: later seqs arrive before earlier ones.
    for i in 0..out.len() {
        let j = i + rng.below(50) as usize;
        if j < out.len() {
            out.swap(i, j);
        }
    }
    out
}

/// A temporary directory for follower directories (kept, and its path printed, with
/// `AGGRELOG_KAFKA_KEEP=1`, to read the followers' logs after a failure).
pub fn scratch() -> (TempDir, PathBuf) {
    let dir = kept_when_asked(
        tempfile::tempdir().expect("scratch dir"),
        "follower directories",
    );
    let path = dir.path().to_path_buf();
    (dir, path)
}

/// `dir`, kept after the test (its path printed) when `AGGRELOG_KAFKA_KEEP` is set.
fn kept_when_asked(mut dir: TempDir, what: &str) -> TempDir {
    if std::env::var_os("AGGRELOG_KAFKA_KEEP").is_some() {
        dir.disable_cleanup(true);
        eprintln!("{what} in {}", dir.path().display());
    }
    dir
}
