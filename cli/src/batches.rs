//! `aggrelog batches`: the named batches whose deltas are in the log, one JSON line each,
//! `{"name":N,"min_seq":S,"max_seq":S,"deltas":D,"aggregates":A,"retracted":B}`, sorted by
//! name (`retracted`: the batch is taken back, `aggrelog retract`). It reads the log in one
//! pass (beside a writer), so a batch whose deltas compaction
//! folded into state records is no longer listed; deltas written without a name are not
//! counted.

use std::collections::{BTreeMap, HashSet};

use aggrelog::{LogReader, RecordLocation};
use serde_json::json;

use crate::follower_dir;
use crate::open::{in_database, reader_options, DbArgs};
use crate::output::{emit_lines, Failure};

/// What the log holds of one named batch.
#[derive(Default)]
struct Seen {
    min_seq: u64,
    max_seq: u64,
    deltas: u64,
    aggregates: HashSet<String>,
}

/// `batches`: lists the named batches of the database (or of every partition database of a
/// follower directory).
pub fn batches(args: &DbArgs) -> Result<(), Failure> {
    let paths = match follower_dir::detect(&args.db)? {
        Some(dir) => dir.partitions.into_iter().map(|(_, path)| path).collect(),
        None => vec![args.db.clone()],
    };
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut retracted = HashSet::new();
    for path in paths {
        let log =
            LogReader::open(&path, reader_options(args)).map_err(|e| in_database(&path, e))?;
        gather(&log, &mut seen)?;
        retracted.extend(log.retracted_batches().iter().cloned());
    }
    emit_lines(seen.into_iter().map(|(name, s)| {
        json!({
            "name": name,
            "min_seq": s.min_seq,
            "max_seq": s.max_seq,
            "deltas": s.deltas,
            "aggregates": s.aggregates.len(),
            "retracted": retracted.contains(&name),
        })
    }))
}

/// Adds every named delta of `log` to `seen`.
fn gather(log: &LogReader, seen: &mut BTreeMap<String, Seen>) -> Result<(), Failure> {
    let mut replay = log.replay(RecordLocation::START);
    while let Some(batch) = replay.next_batch() {
        let batch = batch?;
        let spans = batch.names()?;
        if spans.is_empty() {
            continue;
        }
        let deltas: Vec<_> = batch.deltas().collect::<Result<_, _>>()?;
        for span in &spans {
            // The trailer decoder bounds every span by the frame's deltas.
            let (first, count) = (span.first_delta as usize, span.count as usize);
            let Some(named) = deltas.get(first..).and_then(|d| d.get(..count)) else {
                continue;
            };
            if !seen.contains_key(span.name) {
                let first_seen = Seen {
                    min_seq: u64::MAX,
                    ..Seen::default()
                };
                seen.insert(span.name.to_owned(), first_seen);
            }
            let Some(entry) = seen.get_mut(span.name) else {
                continue;
            };
            for delta in named {
                entry.min_seq = entry.min_seq.min(delta.seq);
                entry.max_seq = entry.max_seq.max(delta.seq);
                entry.deltas += 1;
                if !entry.aggregates.contains(delta.aggregate) {
                    entry.aggregates.insert(delta.aggregate.to_owned());
                }
            }
        }
    }
    Ok(())
}
