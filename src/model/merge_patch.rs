//! RFC 7396 merge patches as an order-independent lattice: the stamped tree.
//!
//! The normative meaning of an aggregate's deltas: sort them by [`Stamp`], start from "absent",
//! and apply them one by one — a patch turns "absent" into `{}` and then merges into it with
//! RFC 7396, a delete makes the aggregate absent again.
//!
//! [`MergePatch::fold`](Model::fold) reaches the same result for deltas that arrive in any
//! order, any number of times. It keeps, per JSON path, the newest event of each kind:
//!
//! - `replaced`: the newest patch that put a non-object at the path (a scalar or array, kept as
//!   its encoded bytes) or removed it (a `null`; at the root, a delete);
//! - `asserted`: the newest patch that had an object at the path (at the root: every patch);
//!   writing anything below a path asserts the path at the same stamp.
//!
//! Rendering walks the tree with `kill`, the newest replace of any strict ancestor: events at or
//! before `kill` are dead (an ancestor was overwritten after them). Of the live events, the newer
//! one decides (a replace wins a tie with an assert): a replace gives its value (a removal gives
//! absent), an assert gives an object of the rendered children. Nothing live gives absent.
//!
//! Dead events never come back (`kill` only grows), so the state drops them as soon as they die:
//! the state stays small, and two states holding the same deltas are equal (`==`). See
//! DESIGN.md, "Merge semantics", for the proof that this equals the sequential definition.
//!
//! Compaction writes a state as a *state record* (`state_record.rs` has the format; DESIGN.md, section 7), which keeps
//! every event and stamp, so that joining it with later deltas (late ones included) is exact.
//! Once no delta with `seq < seal` can arrive any more,
//! [`forget_below`](Model::forget_below) drops the tombstones and stale events older than the
//! seal and collapses the remaining old stamps to one *floor* stamp `(seal - 1, u32::MAX,
//! u32::MAX)`: the output, and the output after any further deltas with `seq >= seal`, stay the
//! same, and the record of a state whose events are all older than the seal is the plain
//! binary encoding of its output plus 13 or so bytes.

use serde_json::{Map, Value};

use super::binary::{self, ObjectReader, ValueRef, MAX_DEPTH};
use super::{DeltaKind, DeltaView, Model, ModelError, Stamp};

mod children;
pub(crate) mod state_record;

use children::Children;

/// The RFC 7396 merge-patch model: patch bodies are encoded JSON objects (see [`binary`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct MergePatch;

/// The folded state of one aggregate: a tree of stamped events, one node per JSON path.
///
/// Equal sets of folded deltas give equal states, whatever the order and repetition of folding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatchState {
    root: Node,
}

/// The newest events at one JSON path and the nodes of its child keys.
///
/// Canonical form (kept by every operation): every stamp is newer than the node's `kill` (the
/// newest `replaced` stamp of its strict ancestors), no node but the root is empty, and
/// `asserted` is at least every stamp in the strict descendants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Node {
    replaced: Option<(Stamp, Leaf)>,
    asserted: Option<Stamp>,
    children: Children,
}

/// What a replace put at its path. The derived order (`Removed` first, then by encoded bytes)
/// breaks ties between replaces with equal stamps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Leaf {
    /// The path was removed (`null` in a patch; a delete at the root).
    Removed,
    /// A non-null, non-object value, as validated encoded bytes (a `Vec` so that a newer
    /// replace can reuse the allocation).
    Value(Vec<u8>),
}

/// A borrowed [`Leaf`], ordered the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum LeafRef<'a> {
    Removed,
    Value(&'a [u8]),
}

impl Leaf {
    fn as_ref(&self) -> LeafRef<'_> {
        match self {
            Leaf::Removed => LeafRef::Removed,
            Leaf::Value(bytes) => LeafRef::Value(bytes),
        }
    }

    fn render(&self) -> Option<Value> {
        match self {
            Leaf::Removed => None,
            Leaf::Value(bytes) => {
                let decoded = binary::decode_value(bytes);
                debug_assert!(decoded.is_ok(), "leaves are validated when folded");
                decoded.ok()
            }
        }
    }
}

impl LeafRef<'_> {
    fn to_leaf(self) -> Leaf {
        match self {
            LeafRef::Removed => Leaf::Removed,
            LeafRef::Value(bytes) => Leaf::Value(bytes.to_vec()),
        }
    }
}

impl Node {
    fn replace_stamp(&self) -> Option<Stamp> {
        self.replaced.as_ref().map(|(stamp, _)| *stamp)
    }

    fn is_empty(&self) -> bool {
        self.replaced.is_none() && self.asserted.is_none() && self.children.is_empty()
    }

    fn assert_at(&mut self, stamp: Stamp) {
        self.asserted = self.asserted.max(Some(stamp));
    }

    /// Keeps the larger of the current replace and `(stamp, leaf)`; a new winner kills every
    /// event at or before `stamp` below this node.
    fn offer_replace(&mut self, stamp: Stamp, leaf: LeafRef<'_>) {
        let wins = match &self.replaced {
            None => true,
            Some((current, held)) => (stamp, leaf) > (*current, held.as_ref()),
        };
        if !wins {
            return;
        }
        match (&mut self.replaced, leaf) {
            (Some((held_stamp, Leaf::Value(held))), LeafRef::Value(bytes)) => {
                *held_stamp = stamp;
                held.clear();
                held.extend_from_slice(bytes);
            }
            (slot, leaf) => *slot = Some((stamp, leaf.to_leaf())),
        }
        self.prune_children(stamp);
    }

    fn prune_children(&mut self, kill: Stamp) {
        self.children.retain(|child| child.prune(kill));
    }

    /// Drops every event at or before `kill` in this subtree; returns whether anything is left.
    fn prune(&mut self, kill: Stamp) -> bool {
        if self.replace_stamp() <= Some(kill) {
            self.replaced = None;
        }
        if self.asserted <= Some(kill) {
            self.asserted = None;
        }
        self.prune_children(kill);
        !self.is_empty()
    }

    /// Runs `f` on the child at `key`, creating it (empty) if needed.
    fn with_child<R>(&mut self, key: &str, f: impl FnOnce(&mut Node) -> R) -> R {
        f(self.children.get_or_default(key))
    }

    /// Folds the entries of an object that a patch at `stamp` holds at this node's path. The
    /// caller has asserted this node at `stamp`; `kill` is the newest replace of its ancestors.
    fn fold_entries(
        &mut self,
        entries: &mut ObjectReader<'_>,
        stamp: Stamp,
        kill: Option<Stamp>,
    ) -> Result<(), ModelError> {
        debug_assert!(self.asserted >= Some(stamp) && Some(stamp) > kill);
        let kill = kill.max(self.replace_stamp());
        if Some(stamp) <= kill {
            return Ok(()); // Everything below is dead already.
        }
        while let Some((key, value)) = entries.next_entry()? {
            match value {
                ValueRef::Object(mut nested) => {
                    self.with_child(key, |child| {
                        child.assert_at(stamp);
                        child.fold_entries(&mut nested, stamp, kill)
                    })?;
                    entries.resume_after(&nested);
                }
                ValueRef::Null => {
                    self.with_child(key, |child| child.offer_replace(stamp, LeafRef::Removed))
                }
                ValueRef::Leaf(bytes) => self.with_child(key, |child| {
                    child.offer_replace(stamp, LeafRef::Value(bytes))
                }),
            }
        }
        Ok(())
    }

    /// Joins `other` (the node at the same path in another state) into this node. `kill` is
    /// the newest replace of the strict ancestors in the joined state.
    fn join(&mut self, other: &Node, kill: Option<Stamp>) {
        if let Some((stamp, leaf)) = &other.replaced {
            if Some(*stamp) > kill {
                self.offer_replace(*stamp, leaf.as_ref());
            }
        }
        if let Some(stamp) = other.asserted.filter(|stamp| Some(*stamp) > kill) {
            self.assert_at(stamp);
        }
        let kill = kill.max(self.replace_stamp());
        for (key, theirs) in other.children.iter() {
            self.join_child(key, theirs, kill);
        }
    }

    fn join_child(&mut self, key: &str, theirs: &Node, kill: Option<Stamp>) {
        if let Some(mine) = self.children.get_mut(key) {
            mine.join(theirs, kill);
            debug_assert!(!mine.is_empty());
            return;
        }
        let mut fresh = Node::default();
        fresh.join(theirs, kill);
        if !fresh.is_empty() {
            self.children.insert(key, fresh);
        }
    }

    /// The value at this node's path, or `None` when absent. `kill` is the newest replace of
    /// the strict ancestors.
    fn render(&self, kill: Option<Stamp>) -> Option<Value> {
        let replaced = self
            .replaced
            .as_ref()
            .filter(|(stamp, _)| Some(*stamp) > kill);
        let asserted = self.asserted.filter(|stamp| Some(*stamp) > kill);
        if let Some((stamp, leaf)) = replaced {
            if Some(*stamp) >= asserted {
                return leaf.render();
            }
        }
        asserted?;
        let kill = kill.max(self.replace_stamp());
        Some(Value::Object(self.render_children(kill)))
    }

    fn render_children(&self, kill: Option<Stamp>) -> Map<String, Value> {
        let rendered = self.children.iter();
        rendered
            .filter_map(|(key, child)| Some((key.to_string(), child.render(kill)?)))
            .collect()
    }

    /// Drops what only ordered this subtree's events against deltas with `seq < seal` (the
    /// caller guarantees no more will come) and collapses the stamps of the remaining events
    /// older than the seal to `floor`. See DESIGN.md, "State records", for why the output and
    /// the output after further deltas with `seq >= seal` do not change.
    fn forget_below(&mut self, seal: u64, floor: Stamp) {
        let old = |stamp: Stamp| stamp.seq < seal;
        match self.replace_stamp() {
            // An old replace beaten by the assert: the node is an object for good.
            Some(replaced) if old(replaced) && self.asserted > Some(replaced) => {
                self.replaced = None;
            }
            // An old replace that wins: the assert is stale; a removal leaves nothing.
            Some(replaced) if old(replaced) => {
                self.asserted = None;
                if matches!(self.replaced, Some((_, Leaf::Removed))) {
                    self.replaced = None;
                }
            }
            // A new replace: an old assert is older, hence stale.
            Some(_) if self.asserted.is_some_and(old) => self.asserted = None,
            _ => {}
        }
        if let Some((stamp, _)) = &mut self.replaced {
            if old(*stamp) {
                *stamp = floor;
            }
        }
        if let Some(stamp) = &mut self.asserted {
            if old(*stamp) {
                *stamp = floor;
            }
        }
        self.children.retain(|child| {
            child.forget_below(seal, floor);
            !child.is_empty()
        });
    }

    /// Checks the canonical form below this node; returns the newest stamp in the subtree.
    fn check(&self, kill: Option<Stamp>) -> Result<Option<Stamp>, String> {
        if self
            .replace_stamp()
            .is_some_and(|stamp| Some(stamp) <= kill)
        {
            return Err("dead replace kept".into());
        }
        if self.asserted.is_some_and(|stamp| Some(stamp) <= kill) {
            return Err("dead assert kept".into());
        }
        if let Some((_, Leaf::Value(bytes))) = &self.replaced {
            match binary::decode_value(bytes) {
                Ok(Value::Null | Value::Object(_)) => return Err("leaf is null or object".into()),
                Ok(_) => {}
                Err(error) => return Err(format!("leaf does not decode: {error}")),
            }
        }
        let newest_below = self.check_children(kill.max(self.replace_stamp()))?;
        if newest_below > self.asserted {
            return Err("a child is newer than its parent's assert".into());
        }
        Ok(self.asserted.max(self.replace_stamp()).max(newest_below))
    }

    fn check_children(&self, kill: Option<Stamp>) -> Result<Option<Stamp>, String> {
        let mut newest = None;
        for (key, child) in self.children.iter() {
            if child.is_empty() {
                return Err(format!("{key}: empty node"));
            }
            let stamp = child
                .check(kill)
                .map_err(|error| format!("{key}/{error}"))?;
            newest = newest.max(stamp);
        }
        Ok(newest)
    }
}

impl PatchState {
    /// Merges `other` into this state: afterwards this state holds the deltas of both.
    ///
    /// Commutative, associative and idempotent: joining states of any split of a set of deltas,
    /// in any grouping, gives the state of the whole set.
    pub fn join(&mut self, other: &PatchState) {
        let before = self.max_stamp();
        self.root.join(&other.root, None);
        debug_assert!(self.max_stamp() >= before, "stamps only grow in a state");
    }

    /// The newest stamp among the deltas folded into this state, `None` if there were none.
    pub fn max_stamp(&self) -> Option<Stamp> {
        self.root.asserted.max(self.root.replace_stamp())
    }

    /// Checks the state's canonical form (for tests and debugging): no dead events kept, no
    /// empty nodes, every assert at least as new as everything below it, every leaf decodable.
    pub fn check_invariants(&self) -> Result<(), String> {
        if let Some((_, Leaf::Value(_))) = &self.root.replaced {
            return Err("the root holds a non-object value".into());
        }
        self.root.check(None).map(drop)
    }

    /// See [`Model::forget_below`]; `seal == 0` forgets nothing.
    fn forget_below(&mut self, seal: u64) {
        if let Some(floor_seq) = seal.checked_sub(1) {
            let floor = Stamp::new(floor_seq, u32::MAX, u32::MAX);
            self.root.forget_below(seal, floor);
        }
    }

    /// Folds a patch body; validates all of it first, so a bad body changes nothing and is
    /// reported whatever the state (even where the patch would be dead).
    fn fold_patch(&mut self, stamp: Stamp, body: &[u8]) -> Result<(), ModelError> {
        let mut entries = ObjectReader::validated(body)?;
        self.root.assert_at(stamp);
        self.root.fold_entries(&mut entries, stamp, None)
    }

    fn fold_delete(&mut self, stamp: Stamp) {
        self.root.offer_replace(stamp, LeafRef::Removed);
    }
}

impl Model for MergePatch {
    type State = PatchState;
    type Output = Value;

    fn fold(&self, state: &mut PatchState, delta: DeltaView<'_>) -> Result<(), ModelError> {
        let before = state.max_stamp();
        let folded = match delta.kind {
            DeltaKind::Patch => state.fold_patch(delta.stamp, delta.body),
            DeltaKind::Delete if delta.body.is_empty() => {
                state.fold_delete(delta.stamp);
                Ok(())
            }
            DeltaKind::Delete => Err(ModelError::new(0, "a delete must have an empty body")),
        };
        debug_assert!(state.max_stamp() >= before, "stamps only grow in a state");
        folded
    }

    fn output(&self, state: &PatchState) -> Option<Value> {
        state.root.render(None)
    }

    /// Appends the state record of `state` (format: DESIGN.md, section 7, "State records").
    fn encode_state(&self, state: &PatchState, out: &mut Vec<u8>) {
        state_record::encode(state, out);
    }

    /// Validates the whole record first: on error `state` is unchanged.
    fn join_encoded_state(&self, state: &mut PatchState, encoded: &[u8]) -> Result<(), ModelError> {
        state_record::join(state, encoded)
    }

    /// Drops tombstones and stale events older than `seal`, and collapses the stamps of the
    /// remaining older events to `(seal - 1, u32::MAX, u32::MAX)`. Afterwards
    /// [`PatchState::max_stamp`] may return that floor stamp.
    fn forget_below(&self, state: &mut PatchState, seal: u64) {
        state.forget_below(seal);
    }

    /// Renders the record directly, without building a state (validates all of it first).
    fn output_encoded_state(&self, encoded: &[u8]) -> Result<Option<Value>, ModelError> {
        state_record::render(encoded)
    }

    fn is_empty(&self, state: &PatchState) -> bool {
        state.root.is_empty()
    }
}

/// Appends the binary body of `patch` to `out`, after checking that it is a valid patch: a JSON
/// object nested at most [`MAX_DEPTH`] levels deep. On error `out` is unchanged.
pub fn encode_patch(patch: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    let Value::Object(map) = patch else {
        return Err("patch must be a JSON object".into());
    };
    if nesting_exceeds(patch, MAX_DEPTH) {
        return Err(format!("patch nests deeper than {MAX_DEPTH} levels"));
    }
    binary::encode_object(map, out);
    Ok(())
}

/// Whether `value` nests arrays and objects more than `limit` levels deep (recursion bounded
/// by `limit`).
fn nesting_exceeds(value: &Value, limit: usize) -> bool {
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(|v| nesting_exceeds(v, limit - 1)),
        Value::Object(map) => limit == 0 || map.values().any(|v| nesting_exceeds(v, limit - 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(patch: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_patch(patch, &mut out).unwrap();
        out
    }

    /// Folds `(seq, patch)` pairs (a `null` patch is a delete) in the given order.
    fn fold_all(deltas: &[(u64, Value)]) -> PatchState {
        let mut state = PatchState::default();
        for (seq, patch) in deltas {
            let (kind, bytes) = match patch {
                Value::Null => (DeltaKind::Delete, Vec::new()),
                _ => (DeltaKind::Patch, body(patch)),
            };
            let stamp = Stamp::new(*seq, 0, crc32fast::hash(&bytes));
            let delta = DeltaView {
                stamp,
                kind,
                body: &bytes,
            };
            MergePatch.fold(&mut state, delta).unwrap();
        }
        state.check_invariants().unwrap();
        state
    }

    fn both_orders(first: Value, second: Value) -> Option<Value> {
        let forward = fold_all(&[(0, first.clone()), (1, second.clone())]);
        let backward = fold_all(&[(1, second), (0, first)]);
        assert_eq!(forward, backward);
        MergePatch.output(&forward)
    }

    #[test]
    fn rfc7396_examples_in_both_orders() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
            (json!({"a":{"x":1}}), json!({"a":5}), json!({"a":5})),
            (json!({"a":5}), json!({"a":{"x":1}}), json!({"a":{"x":1}})),
        ];
        for (first, second, expected) in cases {
            assert_eq!(both_orders(first, second), Some(expected));
        }
    }

    #[test]
    fn existence_follows_patches_and_deletes() {
        assert_eq!(MergePatch.output(&PatchState::default()), None);
        assert_eq!(MergePatch.output(&fold_all(&[(3, Value::Null)])), None);
        assert_eq!(both_orders(json!({}), json!({})), Some(json!({})));
        assert_eq!(both_orders(json!({"a": 1}), Value::Null), None);
        assert_eq!(
            both_orders(Value::Null, json!({"b": 2})),
            Some(json!({"b": 2}))
        );
        let reborn = [(0, json!({"a": 1})), (2, json!({"b": 2})), (1, Value::Null)];
        assert_eq!(MergePatch.output(&fold_all(&reborn)), Some(json!({"b": 2})));
    }

    #[test]
    fn older_writes_under_a_newer_replace_are_dropped() {
        let state = fold_all(&[(5, json!({"a": 1})), (1, json!({"a": {"b": {"c": 1}}}))]);
        assert!(state.root.children["a"].children.is_empty());
        let deleted = fold_all(&[(1, json!({"a": {"b": 1}})), (2, Value::Null)]);
        assert!(deleted.root.children.is_empty());
        assert_eq!(deleted.max_stamp().map(|s| s.seq), Some(2));
    }

    #[test]
    fn join_matches_folding_everything() {
        let deltas = [
            (0, json!({"a": {"b": 1, "c": [null]}})),
            (1, Value::Null),
            (2, json!({"a": {"b": null, "d": true}})),
            (3, json!({"a": "flat"})),
            (4, json!({"a": {"e": 0.5}})),
        ];
        let whole = fold_all(&deltas);
        let mut left = fold_all(&deltas[..2]);
        let right = fold_all(&deltas[2..]);
        let mut right_first = right.clone();
        left.join(&right);
        right_first.join(&fold_all(&deltas[..2]));
        assert_eq!(left, whole);
        assert_eq!(right_first, whole);
        left.join(&whole);
        assert_eq!(left, whole);
        assert_eq!(MergePatch.output(&whole), Some(json!({"a": {"e": 0.5}})));
    }

    #[test]
    fn bad_bodies_are_errors_and_change_nothing() {
        let mut state = fold_all(&[(0, json!({"a": 1}))]);
        let before = state.clone();
        let mut bad = body(&json!({"b": 2, "c": 3}));
        bad.truncate(bad.len() - 1);
        let stamp = Stamp::new(1, 0, 0);
        for (kind, bytes) in [
            (DeltaKind::Patch, &bad[..]),
            (DeltaKind::Delete, &[0u8][..]),
        ] {
            let delta = DeltaView {
                stamp,
                kind,
                body: bytes,
            };
            assert!(MergePatch.fold(&mut state, delta).is_err());
        }
        assert_eq!(state, before);
    }

    #[test]
    fn encode_patch_checks_shape_and_depth() {
        let mut out = Vec::new();
        assert_eq!(
            encode_patch(&json!([1]), &mut out),
            Err("patch must be a JSON object".to_owned())
        );
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!({ "k": deep });
        }
        assert!(encode_patch(&deep, &mut out).is_ok());
        assert!(binary::validate_object(&out).is_ok());
        out.clear();
        assert!(encode_patch(&json!({ "k": deep }), &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn equal_stamps_resolve_deterministically() {
        let stamp = Stamp::new(7, 0, 42);
        let patches = [
            json!({"a": 1, "b": {"x": 1}}),
            json!({"a": {"y": 1}, "b": 2}),
        ];
        let fold_in = |order: [usize; 2]| {
            let mut state = PatchState::default();
            for index in order {
                let bytes = body(&patches[index]);
                let delta = DeltaView {
                    stamp,
                    kind: DeltaKind::Patch,
                    body: &bytes,
                };
                MergePatch.fold(&mut state, delta).unwrap();
            }
            state
        };
        assert_eq!(fold_in([0, 1]), fold_in([1, 0]));
        let output = MergePatch.output(&fold_in([0, 1]));
        assert_eq!(output, Some(json!({"a": 1, "b": 2})));
    }
}
