//! [`DeltaHistory`]: the deltas that built an aggregate's state, in fold order, with the names
//! of the batches they came in (`Db::history`, `aggrelog history`).

use crate::engine::Engine;
use crate::error::Result;
use crate::model::{DeltaKind, Model};
use crate::wal::reader::DeltaReader;

/// One delta of an aggregate's history.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Upstream sequence number.
    pub seq: u64,
    /// Stamp position.
    pub position: u32,
    /// The batch it came in (`Batch::name`), `None` for an unnamed one.
    pub batch: Option<String>,
    /// Patch or delete.
    pub kind: DeltaKind,
    /// The body in the model's binary form (empty for a delete).
    pub body: Vec<u8>,
    /// Whether its batch is retracted (`Db::retract`): it is not folded.
    pub retracted: bool,
}

/// The deltas that built an aggregate's state within history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeltaHistory {
    /// When compaction folded earlier deltas into a state record: the highest seq folded into
    /// it. Those deltas are no longer in the log one by one and are not listed.
    pub folded_through_seq: Option<u64>,
    /// The unfolded deltas in fold order (by stamp `(seq, position, checksum)`), a redelivered
    /// delta once per arrival, those of retracted batches marked.
    pub deltas: Vec<HistoryEntry>,
}

/// The history of `aggregate` (empty when the database holds nothing of it).
pub(crate) fn history<M: Model>(engine: &Engine<M>, aggregate: &str) -> Result<DeltaHistory> {
    let _reading = engine.reading();
    let Some(chain) = engine.chain_with_retracted(aggregate) else {
        return Ok(DeltaHistory::default());
    };
    let mut reader = DeltaReader::new(engine.log());
    let mut deltas = Vec::with_capacity(chain.deltas.len());
    let retracted: Vec<bool> = {
        let retractions = engine.retractions();
        chain
            .deltas
            .iter()
            .map(|d| retractions.leaves_out(d))
            .collect()
    };
    for (delta_ref, retracted) in chain.deltas.iter().zip(retracted) {
        let batch = reader.batch_name(delta_ref)?;
        let record = reader.read(aggregate, delta_ref)?;
        deltas.push(HistoryEntry {
            seq: record.seq,
            position: record.position,
            batch,
            kind: record.kind,
            body: record.body.to_vec(),
            retracted,
        });
    }
    debug_assert!(
        deltas
            .windows(2)
            .all(|w| (w[0].seq, w[0].position) <= (w[1].seq, w[1].position)),
        "a chain is sorted by stamp"
    );
    Ok(DeltaHistory {
        folded_through_seq: chain.base.map(|base| base.max_seq),
        deltas,
    })
}
