//! `aggrelog history`: the deltas that built an aggregate's state within history, in fold
//! order, one JSON line each: `{"seq":S,"pos":P,"batch":NAME,"patch":{...}}` or with
//! `"delete":true` (`batch` null for a delta written without a name), and `"retracted":true`
//! for a delta of a retracted batch (`aggrelog retract`), which the state leaves out.

use aggrelog::model::binary;
use aggrelog::{DeltaHistory, DeltaKind, HistoryEntry};
use serde_json::{json, Value};

use crate::open::DbArgs;
use crate::output::{cut, try_emit_lines, Failure, EXIT_ABSENT};
use crate::read::databases;

/// `history`: prints the lines; exit 1 when the database holds no delta of the aggregate. When
/// compaction folded earlier deltas, a note on stderr says up to which seq.
pub fn history(args: &DbArgs, id: &str) -> Result<(), Failure> {
    let mut found = DeltaHistory::default();
    for db in databases(args)? {
        let history = db.history(id)?;
        if !history.deltas.is_empty() || history.folded_through_seq.is_some() {
            found = history;
            break;
        }
    }
    if let Some(seq) = found.folded_through_seq {
        eprintln!("deltas up to seq {seq} are folded into a state record and not listed");
    }
    try_emit_lines(found.deltas.iter().map(|delta| history_line(id, delta)))?;
    if found.deltas.is_empty() && found.folded_through_seq.is_none() {
        return Err(Failure {
            message: format!("aggregate {} has no delta", cut(&format!("{id:?}"))),
            status: EXIT_ABSENT,
        });
    }
    Ok(())
}

/// The line of one delta.
fn history_line(id: &str, delta: &HistoryEntry) -> Result<Value, Failure> {
    let mut line = json!({"seq": delta.seq, "pos": delta.position, "batch": delta.batch});
    match delta.kind {
        DeltaKind::Patch => {
            line["patch"] = binary::decode_value(&delta.body).map_err(|e| {
                let at = format!("seq {} pos {}", delta.seq, delta.position);
                Failure::new(format!("the patch of {id:?} at {at} does not decode: {e}"))
            })?;
        }
        DeltaKind::Delete => line["delete"] = Value::Bool(true),
    }
    if delta.retracted {
        line["retracted"] = Value::Bool(true);
    }
    Ok(line)
}
