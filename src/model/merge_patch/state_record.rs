//! State records: the binary form of a [`PatchState`] that compaction writes to the log.
//!
//! A state record keeps *everything* the canonical state holds — every event with its full
//! [`Stamp`], tombstones included — so that joining it with deltas that arrive later (late ones,
//! with lower stamps, included) gives exactly the state of folding every delta. Joining a record
//! is [`PatchState::join`] with the decoded state: commutative, associative, idempotent.
//!
//! # Format
//!
//! Varints are unsigned LEB128 as in [`binary`] (at most 10 bytes,
//! canonical: no trailing `0x00` group, 10th byte `0x00` or `0x01`).
//!
//! ```text
//! record  := 0x01                      format version
//!            varint n                  number of distinct stamps in the state (0: empty state)
//!            stamp × n                 strictly ascending
//!            node                      the root, only when n > 0; its context is stamp n-1
//! stamp   := varint dseq               seq - previous stamp's seq (the first: seq - 0)
//!            varint position           (a u32)
//!            checksum                  4 bytes, u32 little-endian
//! ```
//!
//! Nodes refer to stamps by index `i` into the table, or by `b = n-1-i`, the distance back from
//! the newest stamp. Each node has a *context* stamp `ctx`: the root's is the newest stamp
//! (`n-1`), a child's is its parent's `asserted` stamp (a node with children always has one).
//! A node is one kind byte `K`, then:
//!
//! | `K`           | node                                                  | then           |
//! |---------------|-------------------------------------------------------|----------------|
//! | `00`          | replaced = (`ctx`, removed)                           | nothing        |
//! | `01`..=`07`   | replaced = (`ctx`, value)                             | the rest of the value: `K` is its tag |
//! | `08`          | asserted = `ctx`                                      | children       |
//! | `09`          | general                                               | see below      |
//! | `0a`..=`0f`   | reserved: error                                       |                |
//! | `10`..=`cf`   | replaced = (`b = (K-0x10) / 6`, scalar with tag `t = (K-0x10) % 6 + 1`) | the scalar's payload (its binary form without the tag byte) |
//! | `d0`..=`df`   | asserted = `b = K-0xd0`                               | children       |
//! | `e0`..=`ef`   | replaced = (`b = K-0xe0`, removed)                    | nothing        |
//! | `f0`..=`ff`   | reserved: error                                       |                |
//!
//! Scalars are the binary values with tags `01`..=`06` (false, true, integers, float, string);
//! arrays (`07`) at a stamp other than `ctx` take the general form.
//!
//! The general form `09` is a flags byte (`0x01`: a replace by a value, `0x02`: a replace by a
//! removal, at most one of the two; `0x04`: an assert; nothing else set, not zero), then the
//! replace's stamp index `i` (varint) if any, the assert's stamp index `i` (varint) if any, the
//! value (binary form, tag included) for a value replace, and children if there is an assert.
//!
//! `children` is a varint count (possibly 0) and then, per child, in strictly ascending byte
//! order of keys: varint key byte length, the key's UTF-8, the child node (whose context is this
//! node's assert stamp). A value is a non-null non-object binary value (tag `01`..=`07`).
//!
//! Each node must use the first form that can hold it, in this order: `00`, `01`..`07`, `08`
//! (its only event is at `ctx`); `e0`.., `10`.., `d0`.. (its only event is a removal, a scalar
//! or an assert at most 15, 31 or 15 stamps back); else `09` (which every node with both a
//! replace and an assert uses). So a state whose events all share one stamp (for instance after
//! [`forget_below`](crate::model::Model::forget_below) above its newest delta) is the version
//! byte, the one-stamp table and then exactly the [`binary`] encoding of
//! its output.
//!
//! Example: `{"a": 1}` at stamp `(5, 2, 0xdeadbeef)`, with a tombstone for `b` at
//! `(3, 0, 0x01020304)`, encodes as
//!
//! ```text
//! 01 02  03 00 04 03 02 01  02 02 ef be ad de  08 02  01 61 03 01  01 62 e1
//! ```
//!
//! # Untrusted input
//!
//! Joining a record first walks all of it without touching the state and checks everything:
//! the version, every varint, length and count against the bytes that remain (so no allocation
//! exceeds the input's size), every stamp index against the table, nesting against
//! [`MAX_DEPTH`], UTF-8 and ascending order of keys, every value (with [`binary::value_span`],
//! scalars by the same rules), that each node uses its canonical form, that every table stamp
//! is used, that the record ends with the root, and the canonical form of the tree itself (the
//! rules of [`PatchState::check_invariants`]: no event at or below its `kill`, every assert at
//! least as new as everything below it, no value at the root). Only a valid record is then
//! joined, in a second walk; an invalid one is a [`ModelError`] at its byte offset and leaves
//! the state unchanged. The accepted records are exactly the encodings of canonical states, so
//! `encode(decode(bytes)) == bytes`.

use serde_json::{Map, Value};

use super::{Leaf, LeafRef, Node, PatchState};
// The binary value tags; here `TAG_NULL` stands for a removal.
use crate::model::binary::{self, MAX_DEPTH};
use crate::model::binary::{
    TAG_ARRAY, TAG_F64, TAG_FALSE, TAG_NEG_INT, TAG_NULL, TAG_STRING, TAG_TRUE, TAG_UINT,
};
use crate::model::{ModelError, Stamp};
use crate::varint::VarintError;

const VERSION: u8 = 0x01;

const TOMBSTONE_AT_CTX: u8 = 0x00;
const OBJECT_AT_CTX: u8 = 0x08;
const GENERAL: u8 = 0x09;
const SCALAR_BACK: u8 = 0x10;
const OBJECT_BACK: u8 = 0xd0;
const TOMBSTONE_BACK: u8 = 0xe0;
const RESERVED: u8 = 0xf0;

/// Scalar tags `01..=06`: six per stamp in the `10` range.
const SCALAR_TAGS: u8 = TAG_STRING;

/// How many stamps back the `10`, `d0` and `e0` ranges reach.
const SCALAR_BACK_SLOTS: usize = ((OBJECT_BACK - SCALAR_BACK) / SCALAR_TAGS) as usize;
const OBJECT_BACK_SLOTS: usize = (TOMBSTONE_BACK - OBJECT_BACK) as usize;
const TOMBSTONE_BACK_SLOTS: usize = (RESERVED - TOMBSTONE_BACK) as usize;

const FLAG_VALUE: u8 = 0x01;
const FLAG_REMOVED: u8 = 0x02;
const FLAG_ASSERT: u8 = 0x04;

/// The smallest encoded stamp: one-byte seq delta and position, four checksum bytes.
const MIN_STAMP_BYTES: usize = 6;

/// The smallest child entry: a one-byte key length and a one-byte node.
const MIN_ENTRY_BYTES: usize = 2;

/// The form a node is written in (see the module docs): `back` counts stamps back from the
/// newest, `tag` is a scalar's value tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    TombstoneAtCtx,
    ValueAtCtx,
    ObjectAtCtx,
    TombstoneBack { back: usize },
    ScalarBack { back: usize, tag: u8 },
    ObjectBack { back: usize },
    General,
}

/// A node's events: the replace as (stamp index, value tag, [`TAG_NULL`] for a removal) and
/// the assert's stamp index.
type Events = (Option<(usize, u8)>, Option<usize>);

/// The canonical form of a node with `events`, context index `ctx`, in a table of `n > index`
/// stamps.
fn canonical_form((replaced, asserted): Events, ctx: usize, n: usize) -> Form {
    let back = |index: usize| n - 1 - index;
    match (replaced, asserted) {
        (Some((index, TAG_NULL)), None) if index == ctx => Form::TombstoneAtCtx,
        (Some((index, _)), None) if index == ctx => Form::ValueAtCtx,
        (Some((index, TAG_NULL)), None) if back(index) < TOMBSTONE_BACK_SLOTS => {
            Form::TombstoneBack { back: back(index) }
        }
        (Some((index, tag @ TAG_FALSE..=TAG_STRING)), None) if back(index) < SCALAR_BACK_SLOTS => {
            Form::ScalarBack {
                back: back(index),
                tag,
            }
        }
        (None, Some(index)) if index == ctx => Form::ObjectAtCtx,
        (None, Some(index)) if back(index) < OBJECT_BACK_SLOTS => {
            Form::ObjectBack { back: back(index) }
        }
        _ => Form::General,
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends the state record of `state` to `out`.
pub(super) fn encode(state: &PatchState, out: &mut Vec<u8>) {
    out.push(VERSION);
    let mut table = Vec::new();
    collect_stamps(&state.root, &mut table);
    table.sort_unstable();
    table.dedup();
    write_varint(table.len() as u64, out);
    let mut previous_seq = 0;
    for stamp in &table {
        write_varint(stamp.seq - previous_seq, out);
        write_varint(u64::from(stamp.position), out);
        out.extend_from_slice(&stamp.checksum.to_le_bytes());
        previous_seq = stamp.seq;
    }
    if !table.is_empty() {
        encode_node(&state.root, table.len() - 1, &table, out);
    }
}

fn collect_stamps(node: &Node, table: &mut Vec<Stamp>) {
    table.extend(node.replace_stamp());
    table.extend(node.asserted);
    node.children
        .values()
        .for_each(|child| collect_stamps(child, table));
}

/// The index of `stamp`, which `table` holds (it was collected from the same state).
fn index_of(table: &[Stamp], stamp: Stamp) -> usize {
    let found = table.binary_search(&stamp);
    debug_assert!(found.is_ok(), "every stamp of the state is in the table");
    found.unwrap_or_else(|index| index)
}

fn encode_node(node: &Node, ctx: usize, table: &[Stamp], out: &mut Vec<u8>) {
    let (value, tag) = match &node.replaced {
        Some((_, Leaf::Value(bytes))) => (bytes.as_slice(), bytes.first().copied()),
        Some((_, Leaf::Removed)) => (&[][..], Some(TAG_NULL)),
        None => (&[][..], None),
    };
    let replaced = node
        .replace_stamp()
        .map(|stamp| (index_of(table, stamp), tag.unwrap_or(TAG_NULL)));
    let asserted = node.asserted.map(|stamp| index_of(table, stamp));
    match canonical_form((replaced, asserted), ctx, table.len()) {
        Form::TombstoneAtCtx => out.push(TOMBSTONE_AT_CTX),
        Form::ValueAtCtx => out.extend_from_slice(value),
        Form::ObjectAtCtx => out.push(OBJECT_AT_CTX),
        Form::TombstoneBack { back } => out.push(TOMBSTONE_BACK + back as u8),
        Form::ScalarBack { back, tag } => {
            out.push(SCALAR_BACK + back as u8 * SCALAR_TAGS + (tag - TAG_FALSE));
            out.extend_from_slice(value.get(1..).unwrap_or_default());
        }
        Form::ObjectBack { back } => out.push(OBJECT_BACK + back as u8),
        Form::General => {
            out.push(GENERAL);
            let flags = match replaced {
                Some((_, TAG_NULL)) => FLAG_REMOVED,
                Some(_) => FLAG_VALUE,
                None => 0,
            } | if asserted.is_some() { FLAG_ASSERT } else { 0 };
            out.push(flags);
            for index in replaced.map(|(index, _)| index).into_iter().chain(asserted) {
                write_varint(index as u64, out);
            }
            out.extend_from_slice(value);
        }
    }
    if let Some(asserted) = asserted {
        write_varint(node.children.len() as u64, out);
        for (key, child) in node.children.iter() {
            write_varint(key.len() as u64, out);
            out.extend_from_slice(key.as_bytes());
            encode_node(child, asserted, table, out);
        }
    } else {
        debug_assert!(node.children.is_empty(), "children imply an assert");
    }
}

fn write_varint(n: u64, out: &mut Vec<u8>) {
    crate::varint::write(n, out);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Joins the state record `bytes` into `state`: validates all of it first, so that a bad
/// record is an error and changes nothing.
pub(super) fn join(state: &mut PatchState, bytes: &[u8]) -> Result<(), ModelError> {
    let Some((mut reader, root)) = Reader::validated(bytes)? else {
        return Ok(());
    };
    reader.join_subtree(&mut state.root, &root, None)?;
    debug_assert_eq!(reader.pos, bytes.len());
    Ok(())
}

/// The output of the state record `bytes` alone, read straight from it: what joining it into
/// an empty state and rendering gives (validates all of it first).
pub(super) fn render(bytes: &[u8]) -> Result<Option<Value>, ModelError> {
    let mut reader = Reader::open(bytes)?;
    let Some(ctx) = reader.table.len().checked_sub(1) else {
        reader.finish()?;
        return Ok(None);
    };
    let root = reader.read_root(ctx)?;
    let (output, _) = reader.render_subtree(&root, None, 0)?;
    reader.finish()?;
    Ok(output)
}

/// The checks on `node` before its children (`kill`: the newest replace of its strict
/// ancestors); returns the kill for its children.
fn enter_node(
    node: &Header<'_>,
    kill: Option<Stamp>,
    depth: usize,
) -> Result<Option<Stamp>, ModelError> {
    if node
        .replace_stamp()
        .is_some_and(|stamp| Some(stamp) <= kill)
    {
        return Err(ModelError::new(node.at, "dead replace kept"));
    }
    if node.assert_stamp().is_some_and(|stamp| Some(stamp) <= kill) {
        return Err(ModelError::new(node.at, "dead assert kept"));
    }
    if node.children > 0 && depth >= MAX_DEPTH {
        return Err(ModelError::new(node.at, "nesting deeper than MAX_DEPTH"));
    }
    Ok(kill.max(node.replace_stamp()))
}

/// The check on `node` after its children (the newest stamp below it); returns the newest
/// stamp of its subtree.
fn leave_node(node: &Header<'_>, newest_below: Option<Stamp>) -> Result<Option<Stamp>, ModelError> {
    if newest_below > node.assert_stamp() {
        return Err(ModelError::new(
            node.at,
            "a child is newer than its parent's assert",
        ));
    }
    Ok(node
        .assert_stamp()
        .max(node.replace_stamp())
        .max(newest_below))
}

/// A replace's leaf as it sits in the record.
#[derive(Clone, Copy, Debug)]
enum LeafBytes<'a> {
    Removed,
    /// A whole binary value, tag included.
    Value(&'a [u8]),
    /// A scalar's tag and payload (the `10` range, whose kind byte carries the tag).
    Scalar(u8, &'a [u8]),
}

impl LeafBytes<'_> {
    /// The value tag, [`TAG_NULL`] for a removal.
    fn tag(&self) -> u8 {
        match self {
            LeafBytes::Removed => TAG_NULL,
            LeafBytes::Value(bytes) => bytes.first().copied().unwrap_or(TAG_NULL),
            LeafBytes::Scalar(tag, _) => *tag,
        }
    }
}

/// One decoded node header; its children (if any) follow at the reader's position.
struct Header<'a> {
    /// Offset of the node's kind byte.
    at: usize,
    replaced: Option<(Stamp, LeafBytes<'a>)>,
    /// The assert's stamp index and stamp.
    asserted: Option<(usize, Stamp)>,
    children: usize,
}

impl Header<'_> {
    fn replace_stamp(&self) -> Option<Stamp> {
        self.replaced.map(|(stamp, _)| stamp)
    }

    fn assert_stamp(&self) -> Option<Stamp> {
        self.asserted.map(|(_, stamp)| stamp)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    table: Vec<Stamp>,
    /// Which table stamps some node uses (every one must be).
    used: Vec<bool>,
    /// Where a scalar's tag and payload are put back together for the join.
    scratch: Vec<u8>,
}

impl<'a> Reader<'a> {
    /// Reads the version and the stamp table.
    fn open(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let mut reader = Reader {
            bytes,
            pos: 0,
            table: Vec::new(),
            used: Vec::new(),
            scratch: Vec::new(),
        };
        if reader.byte()? != VERSION {
            return Err(ModelError::new(0, "unknown state record version"));
        }
        let count = reader.count(MIN_STAMP_BYTES)?;
        reader.table.reserve_exact(count);
        let mut seq = 0u64;
        for _ in 0..count {
            let at = reader.pos;
            seq = seq
                .checked_add(reader.varint()?)
                .ok_or_else(|| ModelError::new(at, "stamp seq overflows u64"))?;
            let position_at = reader.pos;
            let position = u32::try_from(reader.varint()?)
                .map_err(|_| ModelError::new(position_at, "stamp position overflows u32"))?;
            let checksum = u32::from_le_bytes(reader.array()?);
            let stamp = Stamp::new(seq, position, checksum);
            if reader.table.last().is_some_and(|last| *last >= stamp) {
                return Err(ModelError::new(at, "stamps not strictly ascending"));
            }
            reader.table.push(stamp);
        }
        reader.used = vec![false; count];
        Ok(reader)
    }

    /// Checks that every stamp was used and nothing follows the root.
    fn finish(&self) -> Result<(), ModelError> {
        if let Some(unused) = self.used.iter().position(|used| !used) {
            return Err(ModelError::new(0, format!("stamp {unused} is never used")));
        }
        if self.pos != self.bytes.len() {
            return Err(ModelError::new(self.pos, "trailing bytes after the root"));
        }
        Ok(())
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn end_error(&self) -> ModelError {
        ModelError::new(self.pos, "unexpected end of state record")
    }

    fn byte(&mut self) -> Result<u8, ModelError> {
        let byte = *self.bytes.get(self.pos).ok_or_else(|| self.end_error())?;
        self.pos += 1;
        Ok(byte)
    }

    /// The next `len` bytes.
    fn take(&mut self, len: usize) -> Result<&'a [u8], ModelError> {
        let bytes = self.bytes;
        let taken = bytes
            .get(self.pos..)
            .and_then(|rest| rest.get(..len))
            .ok_or_else(|| self.end_error())?;
        self.pos += len;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ModelError> {
        let at = self.pos;
        let taken = self.take(N)?;
        <[u8; N]>::try_from(taken).map_err(|_| ModelError::new(at, "unexpected end"))
    }

    fn varint(&mut self) -> Result<u64, ModelError> {
        crate::varint::read(self.bytes, &mut self.pos).map_err(|e| match e {
            VarintError::Truncated { at } => ModelError::new(at, "unexpected end of state record"),
            VarintError::Invalid { start, reason } => ModelError::new(start, reason),
        })
    }

    /// A count or length of items of at least `min_bytes` each, bounded by what remains.
    fn count(&mut self, min_bytes: usize) -> Result<usize, ModelError> {
        let start = self.pos;
        let count = self.varint()?;
        let fits = self.remaining() / min_bytes;
        match usize::try_from(count) {
            Ok(count) if count <= fits => Ok(count),
            _ => Err(ModelError::new(start, "count exceeds remaining bytes")),
        }
    }

    /// A stamp index (varint), checked against the table later.
    fn index(&mut self) -> Result<usize, ModelError> {
        let start = self.pos;
        usize::try_from(self.varint()?)
            .map_err(|_| ModelError::new(start, "stamp index out of range"))
    }

    /// A varint byte length and that many bytes of UTF-8.
    fn text(&mut self) -> Result<&'a str, ModelError> {
        let len = self.count(1)?;
        let start = self.pos;
        let raw = self.take(len)?;
        crate::text::from_utf8(raw).ok_or_else(|| ModelError::new(start, "invalid UTF-8"))
    }

    /// A complete non-null, non-object binary value starting at the current position.
    fn value(&mut self) -> Result<&'a [u8], ModelError> {
        let start = self.pos;
        match self.bytes.get(start) {
            Some(TAG_FALSE..=TAG_ARRAY) => {}
            Some(_) => return Err(ModelError::new(start, "leaf is not a non-null non-object")),
            None => return Err(self.end_error()),
        }
        let span = binary::value_span(self.bytes, start)?;
        self.take(span.len())
    }

    /// The payload of a scalar with `tag` (`01..=06`), by the rules of [`binary`].
    fn scalar_payload(&mut self, tag: u8) -> Result<&'a [u8], ModelError> {
        let start = self.pos;
        match tag {
            TAG_FALSE | TAG_TRUE => {}
            TAG_UINT => drop(self.varint()?),
            TAG_NEG_INT => {
                if i64::try_from(self.varint()?).is_err() {
                    return Err(ModelError::new(start, "negative int out of range"));
                }
            }
            TAG_F64 => {
                if !f64::from_le_bytes(self.array()?).is_finite() {
                    return Err(ModelError::new(start, "non-finite float"));
                }
            }
            TAG_STRING => drop(self.text()?),
            _ => return Err(ModelError::new(start, "not a scalar tag")),
        }
        self.bytes
            .get(start..self.pos)
            .ok_or_else(|| ModelError::new(start, "unexpected end of state record"))
    }

    /// Marks the stamp at `index` (< table size) used and returns it.
    fn stamp(&mut self, index: usize) -> Stamp {
        if let Some(used) = self.used.get_mut(index) {
            *used = true;
        }
        self.table.get(index).copied().unwrap_or_default()
    }

    /// Reads one node header whose context stamp has index `ctx` (< table size).
    fn read_node(&mut self, ctx: usize) -> Result<Header<'a>, ModelError> {
        let at = self.pos;
        let n = self.table.len();
        // `back` counts from the newest stamp; too far back gives the out-of-range index `n`.
        let from_back = |back: usize| n.checked_sub(back + 1).unwrap_or(n);
        let kind = self.byte()?;
        let (form, replaced, asserted) = match kind {
            TOMBSTONE_AT_CTX => (Form::TombstoneAtCtx, Some((ctx, LeafBytes::Removed)), None),
            TAG_FALSE..=TAG_ARRAY => {
                self.pos = at;
                let value = LeafBytes::Value(self.value()?);
                (Form::ValueAtCtx, Some((ctx, value)), None)
            }
            OBJECT_AT_CTX => (Form::ObjectAtCtx, None, Some(ctx)),
            GENERAL => self.general()?,
            SCALAR_BACK..OBJECT_BACK => {
                let back = usize::from((kind - SCALAR_BACK) / SCALAR_TAGS);
                let tag = (kind - SCALAR_BACK) % SCALAR_TAGS + TAG_FALSE;
                let leaf = LeafBytes::Scalar(tag, self.scalar_payload(tag)?);
                let form = Form::ScalarBack { back, tag };
                (form, Some((from_back(back), leaf)), None)
            }
            OBJECT_BACK..TOMBSTONE_BACK => {
                let back = usize::from(kind - OBJECT_BACK);
                (Form::ObjectBack { back }, None, Some(from_back(back)))
            }
            TOMBSTONE_BACK..RESERVED => {
                let back = usize::from(kind - TOMBSTONE_BACK);
                let form = Form::TombstoneBack { back };
                (form, Some((from_back(back), LeafBytes::Removed)), None)
            }
            _ => {
                return Err(ModelError::new(
                    at,
                    format!("reserved node kind {kind:#04x}"),
                ))
            }
        };
        let replace_index = replaced.map(|(index, _)| index);
        if replace_index
            .into_iter()
            .chain(asserted)
            .any(|index| index >= n)
        {
            return Err(ModelError::new(at, "stamp index out of range"));
        }
        let events = (replaced.map(|(index, leaf)| (index, leaf.tag())), asserted);
        if canonical_form(events, ctx, n) != form {
            return Err(ModelError::new(at, "node not in its canonical form"));
        }
        let replaced = replaced.map(|(index, leaf)| (self.stamp(index), leaf));
        let asserted = asserted.map(|index| (index, self.stamp(index)));
        let children = match asserted {
            Some(_) => self.count(MIN_ENTRY_BYTES)?,
            None => 0,
        };
        Ok(Header {
            at,
            replaced,
            asserted,
            children,
        })
    }

    /// The rest of a general node (after `09`): its form, replace and assert.
    #[allow(clippy::type_complexity)]
    fn general(
        &mut self,
    ) -> Result<(Form, Option<(usize, LeafBytes<'a>)>, Option<usize>), ModelError> {
        let flags_at = self.pos;
        let flags = self.byte()?;
        let replace_flags = flags & (FLAG_VALUE | FLAG_REMOVED);
        let valid = flags != 0
            && flags & !(FLAG_VALUE | FLAG_REMOVED | FLAG_ASSERT) == 0
            && replace_flags != FLAG_VALUE | FLAG_REMOVED;
        if !valid {
            return Err(ModelError::new(flags_at, "invalid general node flags"));
        }
        let replace_index = if replace_flags != 0 {
            Some(self.index()?)
        } else {
            None
        };
        let asserted = if flags & FLAG_ASSERT != 0 {
            Some(self.index()?)
        } else {
            None
        };
        let replaced = match replace_index {
            Some(index) if replace_flags == FLAG_VALUE => {
                Some((index, LeafBytes::Value(self.value()?)))
            }
            Some(index) => Some((index, LeafBytes::Removed)),
            None => None,
        };
        Ok((Form::General, replaced, asserted))
    }

    /// Reads the key and node header of the next child of `parent`, checking key order.
    fn child(
        &mut self,
        parent: &Header<'a>,
        previous: &mut Option<&'a str>,
    ) -> Result<(&'a str, Header<'a>), ModelError> {
        let key_at = self.pos;
        let key = self.text()?;
        if previous.is_some_and(|previous| previous >= key) {
            return Err(ModelError::new(key_at, "child keys not strictly ascending"));
        }
        *previous = Some(key);
        // Only a node with an assert has children.
        let ctx = parent.asserted.map_or(0, |(index, _)| index);
        Ok((key, self.read_node(ctx)?))
    }

    /// Validates the children of `node` (read at `depth`, the root being 0) and the canonical
    /// form of its subtree; returns the newest stamp in the subtree. `kill` is the newest
    /// replace of the strict ancestors.
    fn check_subtree(
        &mut self,
        node: &Header<'a>,
        kill: Option<Stamp>,
        depth: usize,
    ) -> Result<Option<Stamp>, ModelError> {
        let kill = enter_node(node, kill, depth)?;
        let mut newest_below = None;
        let mut previous = None;
        for _ in 0..node.children {
            let (_, child) = self.child(node, &mut previous)?;
            let newest = self.check_subtree(&child, kill, depth + 1)?;
            newest_below = newest_below.max(newest);
        }
        leave_node(node, newest_below)
    }

    /// [`Reader::check_subtree`] that also renders the subtree as [`Node::render`] does, in the
    /// same pass (a render has no effect to undo if a later check fails). The record being in
    /// canonical form, no event in it is dead: a replace at least as new as the assert gives its
    /// value (and then the node has no children: they would be older than the replace),
    /// otherwise an assert gives the object of the rendered children.
    fn render_subtree(
        &mut self,
        node: &Header<'a>,
        kill: Option<Stamp>,
        depth: usize,
    ) -> Result<(Option<Value>, Option<Stamp>), ModelError> {
        let kill = enter_node(node, kill, depth)?;
        let mut newest_below = None;
        let mut previous = None;
        let mut entries = Vec::with_capacity(node.children);
        for _ in 0..node.children {
            let (key, child) = self.child(node, &mut previous)?;
            let (value, newest) = self.render_subtree(&child, kill, depth + 1)?;
            newest_below = newest_below.max(newest);
            entries.extend(value.map(|value| (key.to_owned(), value)));
        }
        let newest = leave_node(node, newest_below)?;
        let replace_wins = node
            .replace_stamp()
            .is_some_and(|stamp| Some(stamp) >= node.assert_stamp());
        let value = match node.replaced {
            _ if !replace_wins => node
                .asserted
                .map(|_| Value::Object(Map::from_iter(entries))),
            Some((_, LeafBytes::Value(bytes))) => Some(binary::decode_value(bytes)?),
            Some((_, LeafBytes::Scalar(tag, payload))) => {
                self.scratch.clear();
                self.scratch.push(tag);
                self.scratch.extend_from_slice(payload);
                Some(binary::decode_value(&self.scratch)?)
            }
            Some((_, LeafBytes::Removed)) | None => None,
        };
        Ok((value, newest))
    }

    /// Reads the root's header, which must not hold a value.
    fn read_root(&mut self, ctx: usize) -> Result<Header<'a>, ModelError> {
        let root = self.read_node(ctx)?;
        if matches!(
            root.replaced,
            Some((_, LeafBytes::Value(_) | LeafBytes::Scalar(..)))
        ) {
            return Err(ModelError::new(root.at, "the root holds a value"));
        }
        Ok(root)
    }

    /// Validates the whole record; returns a reader positioned after the root's header, and
    /// the header, or `None` for the empty state.
    fn validated(bytes: &'a [u8]) -> Result<Option<(Reader<'a>, Header<'a>)>, ModelError> {
        let mut reader = Reader::open(bytes)?;
        let root_at = reader.pos;
        let Some(ctx) = reader.table.len().checked_sub(1) else {
            reader.finish()?;
            return Ok(None);
        };
        let root = reader.read_root(ctx)?;
        reader.check_subtree(&root, None, 0)?;
        reader.finish()?;
        // Valid: rewind for the caller's walk.
        reader.pos = root_at;
        let root = reader.read_node(ctx)?;
        Ok(Some((reader, root)))
    }

    /// Joins the (validated) subtree of `theirs` into `mine`, as [`Node::join`] does.
    fn join_subtree(
        &mut self,
        mine: &mut Node,
        theirs: &Header<'a>,
        kill: Option<Stamp>,
    ) -> Result<(), ModelError> {
        if let Some((stamp, leaf)) = theirs.replaced.filter(|(stamp, _)| Some(*stamp) > kill) {
            match leaf {
                LeafBytes::Removed => mine.offer_replace(stamp, LeafRef::Removed),
                LeafBytes::Value(bytes) => mine.offer_replace(stamp, LeafRef::Value(bytes)),
                LeafBytes::Scalar(tag, payload) => {
                    self.scratch.clear();
                    self.scratch.push(tag);
                    self.scratch.extend_from_slice(payload);
                    mine.offer_replace(stamp, LeafRef::Value(&self.scratch));
                }
            }
        }
        if let Some(stamp) = theirs.assert_stamp().filter(|stamp| Some(*stamp) > kill) {
            mine.assert_at(stamp);
        }
        let kill = kill.max(mine.replace_stamp());
        let mut previous = None;
        for _ in 0..theirs.children {
            let (key, child) = self.child(theirs, &mut previous)?;
            if let Some(existing) = mine.children.get_mut(key) {
                self.join_subtree(existing, &child, kill)?;
                continue;
            }
            let mut fresh = Node::default();
            self.join_subtree(&mut fresh, &child, kill)?;
            if !fresh.is_empty() {
                mine.children.insert(key, fresh);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeltaKind, DeltaView, MergePatch, Model};
    use serde_json::{json, Value};

    fn fold(state: &mut PatchState, stamp: Stamp, patch: Option<Value>) {
        let mut body = Vec::new();
        let kind = match patch {
            Some(patch) => {
                super::super::encode_patch(&patch, &mut body).unwrap();
                DeltaKind::Patch
            }
            None => DeltaKind::Delete,
        };
        let delta = DeltaView {
            stamp,
            kind,
            body: &body,
        };
        MergePatch.fold(state, delta).unwrap();
    }

    fn encoded(state: &PatchState) -> Vec<u8> {
        let mut out = Vec::new();
        encode(state, &mut out);
        out
    }

    fn decoded(bytes: &[u8]) -> Result<PatchState, ModelError> {
        let mut state = PatchState::default();
        join(&mut state, bytes)?;
        Ok(state)
    }

    #[test]
    fn value_tags_are_the_binary_ones() {
        for (value, tag) in [
            (json!(null), TAG_NULL),
            (json!(false), TAG_FALSE),
            (json!(true), TAG_TRUE),
            (json!(1), TAG_UINT),
            (json!(-1), TAG_NEG_INT),
            (json!(0.5), TAG_F64),
            (json!("s"), TAG_STRING),
            (json!([]), TAG_ARRAY),
            (json!({}), OBJECT_AT_CTX),
        ] {
            let mut out = Vec::new();
            binary::encode_value(&value, &mut out);
            assert_eq!(out[0], tag, "{value}");
        }
        assert_eq!(TAG_NULL, TOMBSTONE_AT_CTX);
    }

    /// The scalar payload reader agrees with `binary` on random payloads of every scalar tag.
    #[test]
    fn scalar_payloads_follow_binary() {
        let mut rng = crate::rng::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        let interesting = [
            0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xc3, 0xa9, 0xf0, 0x7f, 0x61,
        ];
        let mut accepted = 0;
        for _ in 0..100_000 {
            let tag = TAG_FALSE + (next() % u64::from(SCALAR_TAGS)) as u8;
            let len = (next() % 12) as usize;
            let payload: Vec<u8> = (0..len)
                .map(|_| interesting[(next() % interesting.len() as u64) as usize])
                .collect();
            let mut reader = Reader {
                bytes: &payload,
                pos: 0,
                table: Vec::new(),
                used: Vec::new(),
                scratch: Vec::new(),
            };
            let mine = reader.scalar_payload(tag).map(|taken| taken.len());
            let whole = [&[tag][..], &payload].concat();
            let theirs = binary::value_span(&whole, 0).map(|span| span.end - 1);
            assert_eq!(mine.is_ok(), theirs.is_ok(), "{tag} {payload:02x?}");
            if let (Ok(mine), Ok(theirs)) = (mine, theirs) {
                assert_eq!(mine, theirs, "{tag} {payload:02x?}");
                accepted += 1;
            }
        }
        assert!(accepted > 10_000, "{accepted}");
    }

    #[test]
    fn documented_example_bytes() {
        let mut state = PatchState::default();
        fold(
            &mut state,
            Stamp::new(3, 0, 0x0102_0304),
            Some(json!({"b": null})),
        );
        fold(
            &mut state,
            Stamp::new(5, 2, 0xdead_beef),
            Some(json!({"a": 1})),
        );
        let expected = [
            0x01, 0x02, 0x03, 0x00, 0x04, 0x03, 0x02, 0x01, 0x02, 0x02, 0xef, 0xbe, 0xad, 0xde,
            0x08, 0x02, 0x01, 0x61, 0x03, 0x01, 0x01, 0x62, 0xe1,
        ];
        assert_eq!(encoded(&state), expected);
        assert_eq!(decoded(&expected), Ok(state));
    }

    #[test]
    fn empty_and_forgotten_states() {
        assert_eq!(encoded(&PatchState::default()), [VERSION, 0]);
        assert_eq!(decoded(&[VERSION, 0]), Ok(PatchState::default()));
        let mut state = PatchState::default();
        fold(
            &mut state,
            Stamp::new(1, 7, 9),
            Some(json!({"x": {"y": "z"}})),
        );
        fold(
            &mut state,
            Stamp::new(2, 3, 4),
            Some(json!({"x": {"w": [1]}})),
        );
        fold(&mut state, Stamp::new(3, 1, 1), Some(json!({"v": null})));
        state.forget_below(10);
        let output = MergePatch.output(&state).unwrap();
        let mut plain = Vec::new();
        binary::encode_value(&output, &mut plain);
        let record = encoded(&state);
        // version, one stamp (9, u32::MAX, u32::MAX): 1 + 1 + (1 + 5 + 4), then the value.
        assert_eq!(record[12..], plain[..]);
        assert_eq!(decoded(&record), Ok(state));
    }

    #[test]
    fn general_and_far_forms_round_trip() {
        let mut state = PatchState::default();
        for seq in 0..300u64 {
            let key = format!("k{seq}");
            fold(&mut state, Stamp::new(seq, 0, 0), Some(json!({ key: seq })));
        }
        fold(&mut state, Stamp::new(400, 0, 0), Some(json!({"k0": null})));
        fold(
            &mut state,
            Stamp::new(401, 0, 0),
            Some(json!({"o": {"p": 1}})),
        );
        fold(
            &mut state,
            Stamp::new(402, 0, 0),
            Some(json!({"k1": {"q": true}})),
        );
        fold(&mut state, Stamp::new(399, 0, 0), Some(json!({"k2": null})));
        for seq in 403..450u64 {
            fold(&mut state, Stamp::new(seq, 0, 0), Some(json!({"z": seq})));
        }
        fold(&mut state, Stamp::new(0, 1, 0), None);
        state.check_invariants().unwrap();
        let record = encoded(&state);
        assert!(record.contains(&GENERAL));
        assert_eq!(decoded(&record), Ok(state));
    }

    #[test]
    fn bad_records_are_errors() {
        let mut state = PatchState::default();
        fold(
            &mut state,
            Stamp::new(3, 0, 1),
            Some(json!({"a": {"b": 1}})),
        );
        let good = encoded(&state);
        assert!(decoded(&good).is_ok());
        let cases: &[(&[u8], &str)] = &[
            (&[], "unexpected end"),
            (&[2, 0], "version"),
            (&[1, 0, 0], "trailing"),
            (&[1, 9, 0, 0, 0, 0, 0, 0], "count exceeds"),
            (
                &[1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0],
                "ascending",
            ),
            (
                &[1, 2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 8, 0],
                "never used",
            ),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 3, 1], "root holds a value"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 0x0a], "reserved"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 9, 4, 0, 0], "canonical"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 9, 3, 0], "flags"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 0xe1], "out of range"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 0xf0], "reserved"),
            (
                &[1, 1, 1, 0, 0, 0, 0, 0, 8, 1, 1, b'a', 9, 1, 0, 0],
                "not a non-null",
            ),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 8, 1, 1, b'a', 0x10], "canonical"),
            (
                &[1, 1, 1, 0, 0, 0, 0, 0, 8, 1, 1, b'a', 9, 1, 0, 2],
                "canonical",
            ),
            (
                &[1, 1, 1, 0, 0, 0, 0, 0, 8, 1, 1, b'a', 9, 1, 1, 2],
                "out of range",
            ),
            (
                &[1, 1, 1, 0, 0, 0, 0, 0, 8, 2, 1, b'b', 0, 1, b'a', 0],
                "ascending",
            ),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 0, 0], "trailing"),
            (&[1, 1, 1, 0, 0, 0, 0, 0, 0xe0], "canonical"),
        ];
        for (bytes, reason) in cases {
            let error = decoded(bytes).unwrap_err();
            assert!(error.reason.contains(reason), "{bytes:02x?}: {error}");
        }
        // A child newer than its parent's assert; an event under a newer removal.
        let two = [1, 2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        let newer_child = [&two[..], &[0xd1, 1, 1, b'a', 0x11]].concat();
        let error = decoded(&newer_child).unwrap_err();
        assert!(error.reason.contains("newer than its parent"), "{error}");
        let dead = [&two[..], &[9, 6, 1, 0, 1, 1, b'a', 8, 0]].concat();
        let error = decoded(&dead).unwrap_err();
        assert!(error.reason.contains("dead assert"), "{error}");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "k": deep });
        }
        let mut state = PatchState::default();
        fold(&mut state, Stamp::new(1, 0, 0), Some(deep));
        assert_eq!(decoded(&encoded(&state)), Ok(state));
        let chain = |levels: usize| {
            let mut bytes = vec![VERSION, 1, 1, 0, 0, 0, 0, 0];
            for _ in 0..levels {
                bytes.extend_from_slice(&[OBJECT_AT_CTX, 1, 1, b'k']);
            }
            bytes.extend_from_slice(&[OBJECT_AT_CTX, 0]);
            bytes
        };
        assert!(decoded(&chain(MAX_DEPTH)).is_ok());
        let error = decoded(&chain(MAX_DEPTH + 1)).unwrap_err();
        assert!(error.reason.contains("MAX_DEPTH"), "{error}");
    }

    /// Random raw trees, canonical or not: a record decodes exactly when its tree is canonical,
    /// and then decodes to that tree.
    #[test]
    fn records_decode_iff_the_tree_is_canonical() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let leaves: Vec<Vec<u8>> = [
            json!(1),
            json!(false),
            json!("é"),
            json!([null]),
            json!(-2.5),
        ]
        .iter()
        .map(|value| {
            let mut out = Vec::new();
            binary::encode_value(value, &mut out);
            out
        })
        .collect();
        fn tree(next: &mut impl FnMut(u64) -> u64, leaves: &[Vec<u8>], depth: usize) -> Node {
            let stamp = |next: &mut dyn FnMut(u64) -> u64| {
                Stamp::new(next(4), next(2) as u32, next(2) as u32)
            };
            let mut node = Node::default();
            match next(4) {
                0 => {}
                1 => node.replaced = Some((stamp(next), Leaf::Removed)),
                _ => {
                    let leaf = leaves[next(leaves.len() as u64) as usize].clone();
                    node.replaced = Some((stamp(next), Leaf::Value(leaf)));
                }
            }
            if next(3) > 0 {
                node.asserted = Some(stamp(next));
                for key in ["a", "b", "c"] {
                    if depth < 3 && next(3) == 0 {
                        node.children.insert(key, tree(next, leaves, depth + 1));
                    }
                }
            }
            node
        }
        let (mut canonical, mut rejected) = (0, 0);
        for _ in 0..50_000 {
            let mut root = tree(&mut next, &leaves, 0);
            if next(2) == 0 && matches!(root.replaced, Some((_, Leaf::Value(_)))) {
                root.replaced = None;
            }
            let state = PatchState { root };
            let bytes = encoded(&state);
            let valid = state.check_invariants().is_ok();
            match decoded(&bytes) {
                Ok(back) => {
                    assert!(valid, "accepted a non-canonical tree: {state:?}");
                    assert_eq!(back, state);
                    let rendered = render(&bytes).unwrap();
                    assert_eq!(rendered, state.root.render(None), "{state:?}");
                    canonical += 1;
                }
                Err(error) => {
                    assert!(!valid, "rejected a canonical tree ({error}): {state:?}");
                    assert!(render(&bytes).is_err(), "rendered a non-canonical record");
                    rejected += 1;
                }
            }
        }
        assert!(
            canonical > 5_000 && rejected > 5_000,
            "{canonical} {rejected}"
        );
    }

    #[test]
    fn bad_record_leaves_the_state_unchanged() {
        let mut state = PatchState::default();
        fold(&mut state, Stamp::new(1, 0, 0), Some(json!({"a": 1})));
        let before = state.clone();
        let mut other = PatchState::default();
        fold(
            &mut other,
            Stamp::new(2, 0, 0),
            Some(json!({"b": 2, "c": 3})),
        );
        let mut bad = encoded(&other);
        bad.push(0);
        assert!(join(&mut state, &bad).is_err());
        assert_eq!(state, before);
    }
}
