//! An embedder's own model plugs in through the `Model` trait and raw delta bytes.

use std::sync::Arc;

use aggrelog::model::{DeltaKind, DeltaView, Model, ModelError, Stamp};
use aggrelog::storage::FsStorage;
use aggrelog::{Batch, Db, Options};

/// Last writer wins over opaque bytes, by stamp: a join (max), so order-independent.
struct LastWriterWins;

impl Model for LastWriterWins {
    type State = Option<(Stamp, Option<Vec<u8>>)>;
    type Output = Vec<u8>;

    fn fold(&self, state: &mut Self::State, delta: DeltaView<'_>) -> Result<(), ModelError> {
        if delta.body.len() > 64 {
            return Err(ModelError::new(64, "value longer than 64 bytes"));
        }
        let value = match delta.kind {
            DeltaKind::Patch => Some(delta.body.to_vec()),
            DeltaKind::Delete => None,
        };
        let candidate = (delta.stamp, value);
        if state.as_ref().is_none_or(|current| candidate > *current) {
            *state = Some(candidate);
        }
        Ok(())
    }

    fn output(&self, state: &Self::State) -> Option<Vec<u8>> {
        state.as_ref().and_then(|(_, value)| value.clone())
    }

    fn encode_state(&self, state: &Self::State, out: &mut Vec<u8>) {
        if let Some((stamp, value)) = state {
            out.extend_from_slice(&stamp.seq.to_le_bytes());
            out.extend_from_slice(&stamp.position.to_le_bytes());
            out.extend_from_slice(&stamp.checksum.to_le_bytes());
            if let Some(value) = value {
                out.extend_from_slice(value);
            }
        }
    }

    fn join_encoded_state(
        &self,
        state: &mut Self::State,
        encoded: &[u8],
    ) -> Result<(), ModelError> {
        if encoded.is_empty() {
            return Ok(());
        }
        if encoded.len() < 16 {
            return Err(ModelError::new(0, "short state"));
        }
        let word = |at: usize| u32::from_le_bytes(encoded[at..at + 4].try_into().unwrap());
        let seq = u64::from_le_bytes(encoded[..8].try_into().unwrap());
        let stamp = Stamp::new(seq, word(8), word(12));
        let value = (encoded.len() > 16).then(|| encoded[16..].to_vec());
        let candidate = (stamp, value);
        if state.as_ref().is_none_or(|current| candidate > *current) {
            *state = Some(candidate);
        }
        Ok(())
    }

    fn forget_below(&self, _state: &mut Self::State, _seal: u64) {}

    fn is_empty(&self, state: &Self::State) -> bool {
        state.is_none()
    }
}

#[test]
fn a_custom_model_folds_raw_bytes_in_any_order() {
    let writes: [(u64, DeltaKind, &[u8]); 3] = [
        (3, DeltaKind::Patch, b"third"),
        (1, DeltaKind::Patch, b"first"),
        (2, DeltaKind::Delete, b""),
    ];
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Db::open_with(
            dir.path(),
            Options::default(),
            LastWriterWins,
            Arc::new(FsStorage),
        )
        .unwrap()
    };
    let db = open();
    for (seq, kind, body) in writes {
        let mut batch = Batch::new();
        batch.push_raw("k", seq, kind, body).unwrap();
        db.write(&batch).unwrap();
    }
    let state = db.get("k").unwrap().unwrap();
    assert_eq!((state.seq, state.state), (3, b"third".to_vec()));
    assert!(db.get_as_of("k", 2).unwrap().is_none(), "deleted at seq 2");
    assert_eq!(
        db.get_as_of("k", 1).unwrap().unwrap().state,
        b"first".to_vec()
    );
    db.compact().unwrap();
    assert_eq!(db.get("k").unwrap().unwrap().state, b"third".to_vec());
    db.close().unwrap();
    assert_eq!(open().get("k").unwrap().unwrap().state, b"third".to_vec());
}

#[test]
fn a_model_error_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(
        dir.path(),
        Options::default(),
        LastWriterWins,
        Arc::new(FsStorage),
    )
    .unwrap();
    let mut batch = Batch::new();
    batch
        .push_raw("k", 1, DeltaKind::Patch, &[7u8; 100])
        .unwrap();
    db.write(&batch).unwrap();
    let err = db.get("k").unwrap_err().to_string();
    assert!(
        // The batch's frame follows the 32-byte segment header and its write's 20-byte commit
        // record.
        err.contains("00000000000000000001.seg") && err.contains("offset 52"),
        "{err}"
    );
    assert!(err.contains("longer than 64 bytes"), "{err}");
}
