//! The maintenance commands of the CLI (`checkpoint`, `compact`, `seal`, `stats`) on a
//! database written by the library.

mod common;

use std::process::Command;

use aggrelog::{Db, Options, SyncMode};
use common::{batch_of, small_workload};

fn options() -> Options {
    Options::default()
        .sync(SyncMode::Never)
        .segment_size_bytes(8192)
        .background_compaction(false)
        .checkpoint_every_bytes(0)
}

#[test]
fn cli_checkpoint_compact_seal_and_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let db_dir = tmp.path().join("db");
    let db = Db::open(&db_dir, options()).unwrap();
    for b in &small_workload(30) {
        db.write(&batch_of(b)).unwrap();
    }
    db.close().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_aggrelog"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let db = db_dir.to_str().unwrap();
    let checkpoint = run(&["checkpoint", "--db", db]);
    assert_eq!(checkpoint["checkpoint"], 1);
    let compact = run(&["compact", "--db", db]);
    assert!(compact["log_bytes_after"].as_u64() < compact["log_bytes_before"].as_u64());
    assert_eq!(run(&["seal", "--db", db, "12"])["seal"], 12);
    let stats = run(&["stats", "--db", db]);
    assert_eq!(stats["seal"], 12);
    assert_eq!(stats["unfolded_deltas"], 0);
    assert!(stats["checkpoint"]["number"].as_u64() >= Some(2));
    assert!(stats["space_amplification"].as_f64() < Some(1.5));
    assert_eq!(stats["chain_histogram"][0]["max_deltas"], 0);
    assert_eq!(
        stats["chain_histogram"][0]["aggregates"],
        stats["aggregates"]
    );
    assert_eq!(
        stats["chain_histogram"][7]["max_deltas"],
        serde_json::Value::Null
    );
}
