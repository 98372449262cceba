//! References reported, not rejected (DESIGN.md, section 6c): the declared reference fields
//! (JSON pointers, `*` matching any key or index), the references found in one state, and the
//! [`ReferenceIndex`], derived from the live states and brought up to date before each query
//! by re-folding only the aggregates that gained a delta since.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use compact_str::CompactString;
use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::MergePatch;
use crate::wal::reader::DeltaReader;

/// One reference: `aggregate`'s field at `pointer` (a concrete JSON pointer) names `target`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Reference {
    /// The aggregate holding the reference.
    pub aggregate: String,
    /// Where in its state, as a JSON pointer (RFC 6901).
    pub pointer: String,
    /// The aggregate it names.
    pub target: String,
}

impl Reference {
    /// `aggregate`'s field at `pointer` names `target`.
    pub fn new(aggregate: &str, pointer: &str, target: &str) -> Self {
        Reference {
            aggregate: aggregate.to_owned(),
            pointer: pointer.to_owned(),
            target: target.to_owned(),
        }
    }
}

/// The references of one aggregate, both ways (`Db::references`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct References {
    /// Its own references, by pointer.
    pub outgoing: Vec<Reference>,
    /// The references other aggregates hold to it, by aggregate and pointer.
    pub incoming: Vec<Reference>,
}

/// A declared pointer split into its unescaped segments (`None`: `*`, any key or index).
type Pattern = Vec<Option<String>>;

/// Splits a declared pointer (`/a/*/b`, `~1` for `/` and `~0` for `~` within a segment).
fn pattern(pointer: &str) -> Pattern {
    let segments = pointer.split('/').skip(1);
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    segments.map(|s| (s != "*").then(|| unescape(s))).collect()
}

/// One segment of a concrete pointer.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Every string at `pattern` in `state`, with its concrete pointer (`at` followed by the
/// pattern's segments), into `found`. `at` is one buffer for the whole walk: a segment is
/// pushed before descending and cut after, so only a match allocates.
fn find_at(
    state: &Value,
    pattern: &[Option<String>],
    at: &mut String,
    found: &mut Vec<(String, String)>,
) {
    let Some((segment, rest)) = pattern.split_first() else {
        if let Value::String(target) = state {
            found.push((at.clone(), target.clone()));
        }
        return;
    };
    match (state, segment) {
        (Value::Object(map), Some(key)) => {
            if let Some(inner) = map.get(key) {
                descend(inner, rest, at, Segment::Key(key), found);
            }
        }
        (Value::Object(map), None) => {
            for (key, inner) in map {
                descend(inner, rest, at, Segment::Key(key), found);
            }
        }
        (Value::Array(items), Some(index)) => {
            let index = index.parse::<usize>().ok();
            if let Some((i, inner)) = index.and_then(|i| Some((i, items.get(i)?))) {
                descend(inner, rest, at, Segment::Index(i), found);
            }
        }
        (Value::Array(items), None) => {
            for (i, inner) in items.iter().enumerate() {
                descend(inner, rest, at, Segment::Index(i), found);
            }
        }
        _ => {}
    }
}

/// [`find_at`] one segment down.
fn descend(
    inner: &Value,
    rest: &[Option<String>],
    at: &mut String,
    segment: Segment<'_>,
    found: &mut Vec<(String, String)>,
) {
    let len = at.len();
    at.push('/');
    match segment {
        // A key is escaped as a pointer segment: `~` as `~0`, `/` as `~1`.
        Segment::Key(key) => key.chars().for_each(|c| match c {
            '~' => at.push_str("~0"),
            '/' => at.push_str("~1"),
            c => at.push(c),
        }),
        Segment::Index(i) => {
            // Writing to a String cannot fail.
            let _ = write!(at, "{i}");
        }
    }
    find_at(inner, rest, at, found);
    at.truncate(len);
}

/// The references of one state: `(pointer, target)`, sorted, without repeats.
pub(crate) fn references_in(state: &Value, patterns: &[Pattern]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for pattern in patterns {
        find_at(state, pattern, &mut String::new(), &mut found);
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// References `(pointer, target)` of one aggregate, sorted, or `(aggregate, pointer)` of the
/// references to one target.
type Pairs = Vec<(CompactString, CompactString)>;

/// The reference index: derived from the live states, never persisted.
#[derive(Debug, Default)]
pub(crate) struct ReferenceIndex {
    /// Whether it was built (it is then brought up to date from the index's change log).
    built: bool,
    /// The declared pointers it was built for.
    declared: BTreeSet<String>,
    patterns: Vec<Pattern>,
    /// The retraction epoch it was built at (a retraction changes states without a write).
    retraction_epoch: u64,
    /// Every live aggregate -> its references (empty when it has none).
    live: HashMap<CompactString, Pairs>,
    /// Target -> `(aggregate, pointer)` of every reference to it, sorted.
    incoming: HashMap<CompactString, Pairs>,
}

impl ReferenceIndex {
    /// Brings the index up to the engine's states: built whole the first time and when the
    /// declaration or the retractions changed, else re-folding only the aggregates that
    /// gained a delta since (the index's change log).
    pub fn update(&mut self, engine: &Engine<MergePatch>) -> Result<()> {
        let declared = engine.declared_references();
        let epoch = engine.retractions().epoch();
        let stale = !self.built || declared != self.declared || epoch != self.retraction_epoch;
        let ids: Vec<String> = {
            let mut index = engine.index_write();
            if stale {
                // Writes from here on are in the change log: none is missed.
                index.track_changes();
                index
                    .iter_unordered()
                    .map(|(id, _)| id.to_owned())
                    .collect()
            } else {
                let slots = index.take_changed();
                let ids = slots.iter().filter_map(|&s| index.entry_at(s as usize));
                ids.map(|(id, _)| id.to_owned()).collect()
            }
        };
        if stale {
            *self = ReferenceIndex {
                built: true,
                patterns: declared.iter().map(|p| pattern(p)).collect(),
                declared,
                retraction_epoch: epoch,
                ..ReferenceIndex::default()
            };
        }
        if self.patterns.is_empty() {
            return Ok(());
        }
        let folded = self.fold_into(engine, ids, stale);
        if folded.is_err() {
            // The change log was taken: rebuild next time rather than stay stale.
            self.built = false;
        }
        folded
    }

    /// Folds each of `ids` and records its references; `whole`: into an empty index, each
    /// target's list sorted once at the end instead of kept sorted at every insert (a target
    /// many aggregates name would make that quadratic).
    fn fold_into(
        &mut self,
        engine: &Engine<MergePatch>,
        ids: Vec<String>,
        whole: bool,
    ) -> Result<()> {
        let _reading = engine.reading();
        let mut reader = DeltaReader::new(engine.log());
        for id in ids {
            let state = match engine.chain(&id) {
                Some(chain) => engine.fold_chain(&id, &chain, u64::MAX, &mut reader)?,
                None => None,
            };
            let outgoing = state.map(|s| self.references_of_state(&s.state));
            match whole {
                true => self.add_unsorted(&id, outgoing),
                false => self.set(&id, outgoing),
            }
        }
        if whole {
            self.incoming
                .values_mut()
                .for_each(|sources| sources.sort_unstable());
        }
        Ok(())
    }

    /// The references of a state.
    fn references_of_state(&self, state: &Value) -> Pairs {
        (references_in(state, &self.patterns).into_iter())
            .map(|(pointer, target)| (pointer.into(), target.into()))
            .collect()
    }

    /// Records a live aggregate while the index is built whole (`None`: absent, nothing).
    fn add_unsorted(&mut self, id: &str, outgoing: Option<Pairs>) {
        let Some(outgoing) = outgoing else { return };
        let id = CompactString::new(id);
        debug_assert!(!self.live.contains_key(&id), "each aggregate once");
        for (pointer, target) in &outgoing {
            let sources = self.incoming.entry(target.clone()).or_default();
            sources.push((id.clone(), pointer.clone()));
        }
        self.live.insert(id, outgoing);
    }

    /// Records `id`'s references both ways (`None`: absent).
    fn set(&mut self, id: &str, outgoing: Option<Pairs>) {
        let old = self.live.get(id);
        if old == outgoing.as_ref() {
            return;
        }
        let id = CompactString::new(id);
        for (pointer, target) in old.into_iter().flatten() {
            if let Some(sources) = self.incoming.get_mut(target) {
                let key = (id.clone(), pointer.clone());
                if let Ok(at) = sources.binary_search(&key) {
                    sources.remove(at);
                }
                if sources.is_empty() {
                    self.incoming.remove(target);
                }
            }
        }
        for (pointer, target) in outgoing.iter().flatten() {
            let sources = self.incoming.entry(target.clone()).or_default();
            let key = (id.clone(), pointer.clone());
            if let Err(at) = sources.binary_search(&key) {
                sources.insert(at, key);
            }
        }
        match outgoing {
            Some(outgoing) => self.live.insert(id, outgoing),
            None => self.live.remove(&id),
        };
    }

    /// `aggregate`'s references both ways.
    pub fn references_of(&self, aggregate: &str) -> References {
        let outgoing = (self.live.get(aggregate).into_iter())
            .flatten()
            .map(|(p, t)| Reference::new(aggregate, p, t))
            .collect();
        let incoming = (self.incoming.get(aggregate).into_iter())
            .flatten()
            .map(|(a, p)| Reference::new(a, p, aggregate))
            .collect();
        References { outgoing, incoming }
    }

    /// Every reference whose target has no live state, sorted.
    pub fn dangling(&self) -> Vec<Reference> {
        let mut dangling: Vec<Reference> = (self.incoming.iter())
            .filter(|(target, _)| !self.live.contains_key(*target))
            .flat_map(|(target, sources)| {
                sources
                    .iter()
                    .map(move |(a, p)| Reference::new(a, p, target))
            })
            .collect();
        dangling.sort_unstable();
        dangling
    }
}

/// Checks pointers to declare: each valid, at least one.
pub(crate) fn check_pointers(pointers: &[&str]) -> Result<Vec<String>> {
    if pointers.is_empty() {
        return Err(Error::InvalidInput(
            "declare at least one reference pointer".into(),
        ));
    }
    let check = |p: &&str| {
        crate::wal::admin_records::validate_pointer(p)
            .map(|()| (*p).to_owned())
            .map_err(Error::InvalidInput)
    };
    pointers.iter().map(check).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_with_wildcards_find_every_string_they_match() {
        let state = json!({
            "parent": "F",
            "components": [{"ref": "E1"}, {"ref": 7}, {"other": "x"}, {"ref": "E2"}],
            "by_slot": {"a/b": {"ref": "S1"}, "c": {"ref": "S2"}, "t~x": {"ref": "S3"}},
        });
        let patterns: Vec<Pattern> = ["/parent", "/components/*/ref", "/by_slot/*/ref", "/no"]
            .iter()
            .map(|p| pattern(p))
            .collect();
        let found = references_in(&state, &patterns);
        let expected = [
            ("/by_slot/a~1b/ref", "S1"),
            ("/by_slot/c/ref", "S2"),
            ("/by_slot/t~0x/ref", "S3"),
            ("/components/0/ref", "E1"),
            ("/components/3/ref", "E2"),
            ("/parent", "F"),
        ];
        let expected: Vec<(String, String)> = (expected.iter())
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        assert_eq!(found, expected);
        assert_eq!(
            pattern("/a~1b/~0c/*"),
            vec![Some("a/b".into()), Some("~c".into()), None]
        );
        let indexed = references_in(&state, &[pattern("/components/3/ref")]);
        assert_eq!(indexed, vec![("/components/3/ref".into(), "E2".into())]);
    }
}
