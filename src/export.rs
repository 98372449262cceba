//! Export and import that keep the semantics (DESIGN.md, section 5b3): the log written out as
//! JSON Lines, one line per record in log order (batches with their first stamp position,
//! compaction state records with their horizon and encoded state, seals), and read back into a
//! new database in the same order. The new database's index is then the one recovery would
//! build from the source's log: the same states, the same history, the same future folds.
//!
//! ```text
//! {"batch":[{"aggregate":A,"seq":S,"patch":{...}} | {"aggregate":A,"seq":S,"delete":true}, ...],
//!  "first_position":N,                  first_position only when it is not 0
//!  "sources":[{"topic":T,"partition":P,"first_offset":F,"next_offset":N,"dead_letters":D}],
//!                                       sources only when the batch has source ranges
//!  "names":[{"name":N,"first_delta":F,"count":C}]}
//!                                       names only when its deltas are named
//! {"state":{"aggregate":A,"horizon":H,"max_seq":S,"folded":F,"encoded":"BASE64"}}
//!                                       horizon null: every seq (History::None)
//! {"seal":S}
//! {"source_positions":[{"topic":T,"partition":P,"next_offset":N,"dead_letters":D,
//!  "reapplied":R}]}                     a sources record
//! {"retraction":NAME,"version":V,"retracted":B,"frozen":F}
//! {"references":[POINTER,...]}
//! ```
//! A batch whose positions do not follow one another (a positions table) gives each delta its
//! `"pos"` instead of `"first_position"`.
//! A spanning batch is written at its batch commit's place as one batch line per fragment.

use std::io::{BufRead, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::batch::Batch;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::index_builder::state_ref;
use crate::jsonl::parse_line;
use crate::model::{binary, DeltaKind, Model};
use crate::sources::{decode_sources_record, validate_topic, SourcePosition, SourceRange};
use crate::wal::admin_records::{
    decode_references_record, decode_retraction_record, validate_pointer, Register,
    RetractionRecord, MAX_POINTERS_PER_RECORD,
};
use crate::wal::batch::DeltaRecord;
use crate::wal::batch_record::{batch_payload, decode_batch};
use crate::wal::format::{RecordLocation, RecordType, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES};
use crate::wal::fragments::FragmentError;
use crate::wal::frame::{FrameScanner, ScanEvent};
use crate::wal::log::NewRecord;
use crate::wal::records::{
    decode_batch_commit_body, decode_seal_body, decode_state_body, encode_state_body,
    BatchCommitBody, StateBody,
};
use crate::wal::trailer::{validate_batch_name, NameSpan};

/// What an export or an import carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TransferReport {
    /// Batch records.
    pub batches: u64,
    /// Deltas in them.
    pub deltas: u64,
    /// Compaction state records.
    pub states: u64,
    /// Seal records.
    pub seals: u64,
}

/// Writes every record of `engine`'s log, in log order, as one JSON line each.
pub(crate) fn export<M: Model>(engine: &Engine<M>, out: &mut dyn Write) -> Result<TransferReport> {
    // No segment is deleted while it is read.
    let _reading = engine.reading();
    let mut report = TransferReport::default();
    for (id, path, len) in engine.log().segments() {
        let view = engine.log().view_for_pass(id, len)?;
        let bytes = &view[..len as usize];
        for event in FrameScanner::new(bytes, id, SEGMENT_HEADER_BYTES) {
            let frame = match event {
                ScanEvent::Frame(frame) => frame,
                ScanEvent::Damage(d) => return Err(Error::corruption(&path, d.offset, d.reason)),
            };
            let bad = |reason: String| Error::corruption(&path, frame.offset, reason);
            let line = match frame.header.record_type {
                RecordType::Batch => {
                    let payload = batch_payload(&frame).map_err(|e| bad(e.reason))?;
                    let batch =
                        decode_batch(&payload, frame.header.flags).map_err(|e| bad(e.reason))?;
                    report.batches += 1;
                    report.deltas += batch.deltas.len() as u64;
                    batch_line(&batch.deltas, &batch.sources, &batch.names).map_err(bad)?
                }
                RecordType::BatchCommit => {
                    let at = RecordLocation {
                        segment: id,
                        offset: frame.offset,
                    };
                    let commit =
                        decode_batch_commit_body(frame.body, at).map_err(|e| bad(e.reason))?;
                    let deltas = export_spanning(engine, &commit, out).map_err(|e| match e {
                        Exported::Failed(e) => e,
                        Exported::Damage(reason) => bad(reason),
                    })?;
                    report.batches += 1;
                    report.deltas += deltas;
                    continue;
                }
                RecordType::State => {
                    let body = decode_state_body(frame.body).map_err(|e| bad(e.reason))?;
                    report.states += 1;
                    let horizon = (body.horizon != u64::MAX).then_some(body.horizon);
                    json!({"state": {
                        "aggregate": body.aggregate,
                        "horizon": horizon,
                        "max_seq": body.max_seq,
                        "folded": body.folded,
                        "encoded": STANDARD.encode(body.state),
                    }})
                }
                RecordType::Seal => {
                    report.seals += 1;
                    json!({ "seal": decode_seal_body(frame.body).map_err(|e| bad(e.reason))? })
                }
                RecordType::Sources => {
                    let positions = decode_sources_record(frame.body).map_err(|e| bad(e.reason))?;
                    source_positions_line(&positions)
                }
                RecordType::Retraction => {
                    let r = decode_retraction_record(frame.body).map_err(|e| bad(e.reason))?;
                    let register = r.register;
                    json!({"retraction": r.name, "version": register.version,
                        "retracted": register.retracted, "frozen": register.frozen})
                }
                RecordType::References => {
                    let pointers =
                        decode_references_record(frame.body).map_err(|e| bad(e.reason))?;
                    json!({ "references": pointers })
                }
                RecordType::End | RecordType::Commit | RecordType::Fragment => continue,
            };
            writeln!(out, "{line}").map_err(|e| Error::io("export output", e))?;
        }
    }
    out.flush().map_err(|e| Error::io("export output", e))?;
    Ok(report)
}

/// Why a spanning batch could not be exported.
enum Exported {
    /// Writing the output or reading a segment failed.
    Failed(Error),
    /// The batch is damaged (the reason).
    Damage(String),
}

/// Writes the fragments of a spanning batch, verified whole first, as one batch line each, at
/// the place of its batch commit (DESIGN.md, section 3.6).
fn export_spanning<M: Model>(
    engine: &Engine<M>,
    commit: &BatchCommitBody,
    out: &mut dyn Write,
) -> std::result::Result<u64, Exported> {
    let mut reader = engine.log().fragments();
    let damage = |e: FragmentError| match e {
        FragmentError::Damaged(e) => Exported::Damage(e.reason),
        FragmentError::Io(e) => Exported::Failed(e),
    };
    let verified = reader.verify(commit, &|_| None).map_err(damage)?;
    let mut failed = None;
    reader
        .apply(commit, &mut |batch| {
            if failed.is_some() {
                return;
            }
            let line =
                batch_line(batch.deltas, batch.sources, batch.names).map_err(Exported::Damage);
            let written = line.and_then(|line| {
                writeln!(out, "{line}").map_err(|e| Exported::Failed(Error::io("export output", e)))
            });
            failed = written.err();
        })
        .map_err(damage)?;
    failed.map_or(Ok(verified.deltas), Err)
}

/// The export line of a batch's deltas and source ranges.
fn batch_line(
    deltas: &[DeltaRecord<'_>],
    sources: &[SourceRange],
    names: &[NameSpan],
) -> std::result::Result<Value, String> {
    let first = deltas.first().map_or(0, |d| d.position);
    let consecutive =
        (deltas.iter().zip(0u32..)).all(|(d, i)| first.checked_add(i) == Some(d.position));
    let mut items = Vec::with_capacity(deltas.len());
    for d in deltas {
        let mut item = Map::new();
        item.insert("aggregate".into(), d.aggregate.into());
        item.insert("seq".into(), d.seq.into());
        if !consecutive {
            item.insert("pos".into(), d.position.into());
        }
        match d.kind {
            DeltaKind::Patch => {
                let patch =
                    binary::decode_value(d.body).map_err(|e| format!("undecodable patch: {e}"))?;
                item.insert("patch".into(), patch);
            }
            DeltaKind::Delete => drop(item.insert("delete".into(), true.into())),
        }
        items.push(Value::Object(item));
    }
    let mut line = Map::new();
    line.insert("batch".into(), items.into());
    if consecutive && first > 0 {
        line.insert("first_position".into(), first.into());
    }
    if !sources.is_empty() {
        let ranges = sources.iter().map(|r| {
            json!({"topic": r.topic, "partition": r.partition, "first_offset": r.first_offset,
                   "next_offset": r.next_offset, "dead_letters": r.dead_letters})
        });
        line.insert("sources".into(), ranges.collect());
    }
    if !names.is_empty() {
        let spans = names
            .iter()
            .map(|n| json!({"name": n.name, "first_delta": n.first_delta, "count": n.count}));
        line.insert("names".into(), spans.collect());
    }
    Ok(Value::Object(line))
}

/// The export line of a sources record.
fn source_positions_line(positions: &[SourcePosition]) -> Value {
    let positions = positions.iter().map(|p| {
        json!({"topic": p.topic, "partition": p.partition, "next_offset": p.next_offset,
               "dead_letters": p.dead_letters, "reapplied": p.reapplied})
    });
    json!({ "source_positions": positions.collect::<Vec<_>>() })
}

/// Reads an export into `engine`, which must hold nothing yet, record by record in order.
pub(crate) fn import<M: Model>(
    engine: &Engine<M>,
    write: &dyn Fn(&Batch) -> Result<()>,
    seal: &dyn Fn(u64) -> Result<()>,
    input: &mut dyn BufRead,
) -> Result<TransferReport> {
    if engine.batches() > 0 || engine.index_read().aggregates() > 0 {
        return Err(Error::InvalidInput(
            "import builds a new database: this one already holds data".into(),
        ));
    }
    let mut report = TransferReport::default();
    let imported = import_lines(engine, write, seal, input, &mut report);
    // State records are appended unsynced: what was imported is made durable, also before a
    // bad line is reported.
    let synced = engine.log().sync();
    // A retraction line may name batches imported before it (DESIGN.md, section 5f); they are
    // placed also when a later line is bad, since the lines before it stay imported.
    let placed = engine.place_unplaced();
    imported.and(synced).and(placed)?;
    Ok(report)
}

fn import_lines<M: Model>(
    engine: &Engine<M>,
    write: &dyn Fn(&Batch) -> Result<()>,
    seal: &dyn Fn(u64) -> Result<()>,
    input: &mut dyn BufRead,
    report: &mut TransferReport,
) -> Result<()> {
    let mut line = String::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let read = input
            .read_line(&mut line)
            .map_err(|e| Error::io("import input", e))?;
        if read == 0 {
            return Ok(());
        }
        line_no += 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| Error::InvalidInput(format!("line {line_no}: {reason}"));
        let value: Value =
            serde_json::from_str(&line).map_err(|e| bad(format!("bad JSON: {e}")))?;
        if let Some(items) = value.get("batch") {
            let first = value.get("first_position").map_or(Some(0), Value::as_u64);
            let first = first
                .and_then(|f| u32::try_from(f).ok())
                .ok_or_else(|| bad("\"first_position\" must be a 32-bit integer".into()))?;
            let names = value
                .get("names")
                .map(parse_names)
                .transpose()
                .map_err(bad)?;
            let mut batch = import_batch(items, first, &names.unwrap_or_default()).map_err(bad)?;
            for range in value
                .get("sources")
                .map(parse_ranges)
                .transpose()
                .map_err(bad)?
                .into_iter()
                .flatten()
            {
                batch.set_source(range).map_err(|e| bad(e.to_string()))?;
            }
            report.batches += 1;
            report.deltas += batch.len() as u64;
            write(&batch)?;
        } else if let Some(state) = value.get("state") {
            import_state(engine, state).map_err(|e| match e {
                Error::InvalidInput(reason) => bad(reason),
                other => other,
            })?;
            report.states += 1;
        } else if let Some(positions) = value.get("source_positions") {
            let positions = parse_positions(positions).map_err(bad)?;
            import_source_positions(engine, &positions)?;
        } else if let Some(name) = value.get("retraction") {
            let record = parse_retraction(name, &value).map_err(bad)?;
            import_admin_record(engine, NewRecord::retraction(&record), |r| {
                r.retractions_mut().apply(&record);
            })?;
        } else if let Some(pointers) = value.get("references") {
            let pointers = parse_pointers(pointers).map_err(bad)?;
            import_admin_record(engine, NewRecord::references(&pointers), |r| {
                r.declare_references(&pointers);
            })?;
        } else if let Some(s) = value.get("seal").and_then(Value::as_u64) {
            seal(s)?;
            report.seals += 1;
        } else {
            return Err(bad(
                "expected a \"batch\", \"state\", \"seal\", \"source_positions\", \"retraction\" or \"references\" line".into()
            ));
        }
    }
}

fn import_batch(
    items: &Value,
    first_position: u32,
    names: &[NameSpanLine],
) -> std::result::Result<Batch, String> {
    let items = items.as_array().ok_or("\"batch\" must be an array")?;
    check_spans(names, items.len())?;
    let mut batch = Batch::starting_at(first_position);
    let mut names = names.iter().peekable();
    for (index, item) in items.iter().enumerate() {
        if let Some(span) = names.next_if(|span| span.first == index) {
            batch.name(&span.name).map_err(|e| e.to_string())?;
        }
        let delta = parse_line(&item.to_string())?;
        let position = delta.pos.or(batch.next_position());
        let position = position.ok_or("positions overflow 32 bits")?;
        match &delta.patch {
            Some(patch) => batch.patch_at(&delta.aggregate, delta.seq, position, patch),
            None => batch.delete_at(&delta.aggregate, delta.seq, position),
        }
        .map_err(|e| e.to_string())?;
    }
    Ok(batch)
}

/// One entry of a batch line's `"names"`.
struct NameSpanLine {
    name: String,
    first: usize,
    count: usize,
}

/// The `"names"` of a batch line.
fn parse_names(spans: &Value) -> std::result::Result<Vec<NameSpanLine>, String> {
    let spans = spans.as_array().ok_or("\"names\" must be an array")?;
    let index = |span: &Value, field: &str| {
        usize::try_from(u64_field(span, field)?).map_err(|_| format!("\"{field}\" is too large"))
    };
    (spans.iter())
        .map(|span| {
            let name =
                (span.get("name").and_then(Value::as_str)).ok_or("\"name\" must be a string")?;
            Ok(NameSpanLine {
                name: name.to_owned(),
                first: index(span, "first_delta")?,
                count: index(span, "count")?,
            })
        })
        .collect()
}

/// Checks that `spans` are what `Batch::name` gives over `len` deltas: each name covers the
/// deltas from its first up to the next name's first, and the last one up to the end. Names
/// decide what a retraction takes back, so a span that says otherwise is refused, not mended.
fn check_spans(spans: &[NameSpanLine], len: usize) -> std::result::Result<(), String> {
    let ends = spans.iter().skip(1).map(|span| span.first).chain([len]);
    for (span, end) in spans.iter().zip(ends) {
        if span.count == 0 || span.first.checked_add(span.count) != Some(end) {
            return Err(format!(
                "name {:?} covers deltas {}+{}, not up to {end} where the next name or the batch ends",
                span.name, span.first, span.count
            ));
        }
    }
    Ok(())
}

/// The `"sources"` of a batch line.
fn parse_ranges(ranges: &Value) -> std::result::Result<Vec<SourceRange>, String> {
    let ranges = ranges.as_array().ok_or("\"sources\" must be an array")?;
    (ranges.iter())
        .map(|r| {
            let (topic, partition) = topic_and_partition(r)?;
            Ok(SourceRange {
                topic,
                partition,
                first_offset: u64_field(r, "first_offset")?,
                next_offset: u64_field(r, "next_offset")?,
                dead_letters: u64_field(r, "dead_letters")?,
            })
        })
        .collect()
}

/// The `"source_positions"` of a sources record line.
fn parse_positions(positions: &Value) -> std::result::Result<Vec<SourcePosition>, String> {
    let positions = (positions.as_array()).ok_or("\"source_positions\" must be an array")?;
    (positions.iter())
        .map(|p| {
            let (topic, partition) = topic_and_partition(p)?;
            validate_topic(&topic)?;
            Ok(SourcePosition {
                topic,
                partition,
                next_offset: u64_field(p, "next_offset")?,
                dead_letters: u64_field(p, "dead_letters")?,
                reapplied: u64_field(p, "reapplied")?,
            })
        })
        .collect()
}

fn topic_and_partition(entry: &Value) -> std::result::Result<(String, u32), String> {
    let topic = (entry.get("topic").and_then(Value::as_str)).ok_or("\"topic\" must be a string")?;
    let partition = u64_field(entry, "partition")?;
    let partition = u32::try_from(partition).map_err(|_| "\"partition\" must fit 32 bits")?;
    Ok((topic.to_owned(), partition))
}

fn u64_field(entry: &Value, name: &str) -> std::result::Result<u64, String> {
    (entry.get(name).and_then(Value::as_u64))
        .ok_or_else(|| format!("\"{name}\" must be an unsigned integer"))
}

/// The retraction record of a `"retraction"` line.
fn parse_retraction(name: &Value, line: &Value) -> std::result::Result<RetractionRecord, String> {
    let name = name.as_str().ok_or("\"retraction\" must be a batch name")?;
    validate_batch_name(name)?;
    let version = u64_field(line, "version")?;
    let retracted = (line.get("retracted").and_then(Value::as_bool))
        .ok_or("\"retracted\" must be true or false")?;
    let frozen = line.get("frozen").and_then(Value::as_bool).unwrap_or(false);
    let register = Register {
        version,
        retracted,
        frozen,
    };
    Ok(RetractionRecord {
        name: name.to_owned(),
        register,
    })
}

/// The pointers of a `"references"` line.
fn parse_pointers(pointers: &Value) -> std::result::Result<Vec<String>, String> {
    let pointers = pointers
        .as_array()
        .ok_or("\"references\" must be an array")?;
    if !(1..=MAX_POINTERS_PER_RECORD).contains(&pointers.len()) {
        return Err(format!(
            "\"references\" holds 1 to {MAX_POINTERS_PER_RECORD} pointers"
        ));
    }
    let parse = |p: &Value| {
        let p = p.as_str().ok_or("a reference pointer must be a string")?;
        validate_pointer(p).map(|()| p.to_owned())
    };
    pointers.iter().map(parse).collect()
}

/// Appends a retraction or references record as the export gives it and applies it, as
/// recovery would.
fn import_admin_record<M: Model>(
    engine: &Engine<M>,
    record: NewRecord,
    apply: impl FnOnce(&Engine<M>),
) -> Result<()> {
    let _gate = engine.gate_exclusive();
    // Synced with the rest of the import, as state records are.
    engine.log().append_records(vec![record], false)?;
    apply(engine);
    Ok(())
}

/// Appends a sources record as the export gives it and applies it, as recovery would.
fn import_source_positions<M: Model>(
    engine: &Engine<M>,
    positions: &[SourcePosition],
) -> Result<()> {
    let _gate = engine.gate_exclusive();
    // Synced with the rest of the import, as state records are.
    engine
        .log()
        .append_records(vec![NewRecord::sources(positions)], false)?;
    engine.apply_source_positions(positions);
    Ok(())
}

/// Appends a state record as the export gives it and installs it, as compaction would.
fn import_state<M: Model>(engine: &Engine<M>, state: &Value) -> Result<()> {
    let field = |name: &str| state.get(name).and_then(Value::as_u64);
    let invalid = |what: &str| Error::InvalidInput(format!("state: {what}"));
    let aggregate = state
        .get("aggregate")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("\"aggregate\" must be a string"))?;
    crate::wal::batch::validate_aggregate_id(aggregate).map_err(|e| invalid(&e))?;
    let horizon = match state.get("horizon") {
        Some(Value::Null) => u64::MAX,
        _ => field("horizon").ok_or_else(|| invalid("\"horizon\" must be an integer or null"))?,
    };
    let max_seq = field("max_seq").ok_or_else(|| invalid("\"max_seq\" must be an integer"))?;
    let folded = field("folded").ok_or_else(|| invalid("\"folded\" must be an integer"))?;
    let encoded = state
        .get("encoded")
        .and_then(Value::as_str)
        .and_then(|text| STANDARD.decode(text).ok())
        .ok_or_else(|| invalid("\"encoded\" must be base64"))?;
    // Untrusted bytes: the model must accept them before they enter the log.
    let mut scratch = M::State::default();
    (engine.model().join_encoded_state(&mut scratch, &encoded))
        .map_err(|e| invalid(&format!("the model rejects the encoded state: {e}")))?;
    let body = StateBody {
        aggregate,
        horizon,
        max_seq,
        folded,
        state: &encoded,
    };
    let mut bytes = Vec::new();
    encode_state_body(&body, &mut bytes);
    let frame_bytes = (FRAME_HEADER_BYTES + bytes.len()) as u64;
    let record = NewRecord {
        record_type: RecordType::State,
        flags: 0,
        body: bytes,
    };
    let _gate = engine.gate_exclusive();
    // Not synced one by one: the import syncs once at its end, or before it reports a bad
    // line.
    let location = engine.log().append_records(vec![record], false)?;
    let location = location
        .first()
        .copied()
        .ok_or_else(|| Error::Internal("an append returned no location".into()))?;
    let state = state_ref(location, frame_bytes, &body);
    engine.index_write().install_state(aggregate, state);
    engine.note_records(0, max_seq, 0);
    Ok(())
}
