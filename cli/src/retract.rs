//! `aggrelog retract` and `aggrelog unretract`: take a named batch back, or a retraction back,
//! and print `{"batch":NAME,"retracted":B,"recorded":B,"deltas":N,"changed":[ID,...]}`:
//! whether a retraction record was written (not when the batch already had that status), the
//! batch's deltas in the log, and the aggregates whose state changed.

use aggrelog::Retraction;
use clap::Args;
use serde_json::json;

use crate::open::{open_existing, DbArgs};
use crate::output::{emit, Failure};

/// The arguments of `retract` and `unretract`.
#[derive(Args, Debug)]
pub struct RetractArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// The batch name (`aggrelog batches` lists them).
    pub name: String,
    /// Record it even when no delta of the batch is in the log: for a batch yet to arrive. (A
    /// batch whose deltas compaction folded away leaves none either: it cannot be retracted.)
    #[arg(long)]
    pub pending: bool,
}

/// `retract` (`retract = true`) or `unretract`.
pub fn run(args: &RetractArgs, retract: bool) -> Result<(), Failure> {
    let db = open_existing(&args.db)?;
    let done = match (retract, args.pending) {
        (true, false) => db.retract(&args.name),
        (true, true) => db.retract_pending(&args.name),
        (false, false) => db.unretract(&args.name),
        (false, true) => db.unretract_pending(&args.name),
    }?;
    db.close()?;
    print_outcome(&done)
}

fn print_outcome(done: &Retraction) -> Result<(), Failure> {
    let line = json!({
        "batch": done.name,
        "retracted": done.retracted,
        "recorded": done.recorded,
        "deltas": done.deltas,
        "changed": done.changed,
    });
    emit(line)
}
