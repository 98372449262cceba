//! The merge-patch model against its definition: RFC 7396 (`json_patch::merge`) applied in stamp
//! order, a delete resetting the aggregate to absent. Also state records (`encode_state`,
//! `join_encoded_state`) and `forget_below` against the same definition.

use aggrelog::model::binary::{self, decode_value, encode_value, value_span};
use aggrelog::model::merge_patch::encode_patch;
use aggrelog::model::{DeltaKind, DeltaView, MergePatch, Model, ModelError, PatchState, Stamp};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// One delta of the aggregate: `patch` is `Value::Null` for a delete.
#[derive(Clone, Debug)]
struct Delta {
    stamp: Stamp,
    kind: DeltaKind,
    patch: Value,
    body: Vec<u8>,
}

impl Delta {
    fn new(seq: u64, position: u32, patch: Option<Value>) -> Delta {
        let mut body = Vec::new();
        let kind = match &patch {
            Some(patch) => {
                encode_patch(patch, &mut body).expect("generated patches are objects");
                DeltaKind::Patch
            }
            None => DeltaKind::Delete,
        };
        let stamp = Stamp::new(seq, position, crc32fast::hash(&body));
        let patch = patch.unwrap_or(Value::Null);
        Delta {
            stamp,
            kind,
            patch,
            body,
        }
    }

    fn view(&self) -> DeltaView<'_> {
        DeltaView {
            stamp: self.stamp,
            kind: self.kind,
            body: &self.body,
        }
    }
}

/// The normative definition: sort by stamp, apply in order from absent.
fn oracle(deltas: &[Delta]) -> Option<Value> {
    let mut sorted: Vec<&Delta> = deltas.iter().collect();
    sorted.sort_by_key(|delta| delta.stamp);
    sorted.dedup_by_key(|delta| delta.stamp);
    let mut state = None;
    for delta in sorted {
        match delta.kind {
            DeltaKind::Delete => state = None,
            DeltaKind::Patch => {
                let doc = state.get_or_insert_with(|| Value::Object(Map::new()));
                json_patch::merge(doc, &delta.patch);
            }
        }
    }
    state
}

fn fold(deltas: &[Delta], order: impl IntoIterator<Item = usize>) -> PatchState {
    let mut state = PatchState::default();
    for index in order {
        MergePatch
            .fold(&mut state, deltas[index].view())
            .expect("generated bodies are valid");
    }
    state
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(String::from)
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.5),
        Just(-0.0),
        Just(1.0),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
    ]
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => (0u64..3).prop_map(Value::from),
        1 => (-3i64..0).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => float().prop_map(Value::from),
        2 => "[xyé]{0,2}".prop_map(Value::from),
    ]
    .boxed()
}

/// Values nested up to 4 levels: objects (small key alphabet) and arrays, nulls anywhere.
fn value() -> BoxedStrategy<Value> {
    scalar()
        .prop_recursive(4, 48, 4, |inner| {
            prop_oneof![
                1 => vec(inner.clone(), 0..4).prop_map(Value::Array),
                3 => btree_map(key(), inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
        .boxed()
}

fn patch() -> impl Strategy<Value = Value> {
    btree_map(key(), value(), 0..4).prop_map(|map| Value::Object(map.into_iter().collect()))
}

/// A delete (about 10%) or a patch.
fn operation() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![1 => Just(None), 9 => patch().prop_map(Some)]
}

/// Deltas with distinct `(seq, position)`, a fold order (a permutation of all of them plus
/// random duplicates), and a random split into two groups.
fn case(max_deltas: usize) -> impl Strategy<Value = (Vec<Delta>, Vec<usize>, Vec<bool>)> {
    vec((0u64..6, operation()), 1..=max_deltas)
        .prop_flat_map(|operations| {
            let count = operations.len();
            let positions = Just((0..count as u32).collect::<Vec<_>>()).prop_shuffle();
            let duplicates = vec(0..count, 0..=count);
            (
                Just(operations),
                positions,
                duplicates,
                vec(any::<bool>(), count),
            )
        })
        .prop_flat_map(|(operations, positions, duplicates, sides)| {
            let count = operations.len();
            let deltas: Vec<Delta> = operations
                .into_iter()
                .zip(positions)
                .map(|((seq, patch), position)| Delta::new(seq, position, patch))
                .collect();
            let order: Vec<usize> = (0..count).chain(duplicates).collect();
            (Just(deltas), Just(order).prop_shuffle(), Just(sides))
        })
}

fn check_case(deltas: &[Delta], order: &[usize], sides: &[bool]) -> Result<(), TestCaseError> {
    let expected = oracle(deltas);
    let state = fold(deltas, order.iter().copied());
    prop_assert_eq!(state.check_invariants(), Ok(()));
    prop_assert_eq!(MergePatch.output(&state), expected);
    let max_stamp = deltas.iter().map(|delta| delta.stamp).max();
    prop_assert_eq!(state.max_stamp(), max_stamp);

    // Canonical: the same set of deltas gives the same state in any order.
    let mut sorted: Vec<usize> = (0..deltas.len()).collect();
    sorted.sort_by_key(|&index| deltas[index].stamp);
    prop_assert_eq!(&fold(deltas, sorted), &state);

    // Join: fold two groups apart, join them both ways.
    let group = |side: bool| {
        let members = order.iter().copied().filter(|&index| sides[index] == side);
        fold(deltas, members)
    };
    let (left, right) = (group(false), group(true));
    let mut left_right = left.clone();
    left_right.join(&right);
    let mut right_left = right.clone();
    right_left.join(&left);
    prop_assert_eq!(left_right.check_invariants(), Ok(()));
    prop_assert_eq!(&left_right, &state);
    prop_assert_eq!(&right_left, &state);

    let mut twice = state.clone();
    twice.join(&state);
    prop_assert_eq!(&twice, &state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn fold_matches_sequential_merge((deltas, order, sides) in case(12)) {
        check_case(&deltas, &order, &sides)?;
    }

    #[test]
    fn conflicts_follow_checksum_order(
        operations in vec((0u64..3, 0u32..3, operation()), 1..=10),
        seed in any::<u64>(),
    ) {
        let deltas: Vec<Delta> = operations
            .into_iter()
            .map(|(seq, position, patch)| Delta::new(seq, position, patch))
            .collect();
        for (i, a) in deltas.iter().enumerate() {
            for b in &deltas[i + 1..] {
                let same = a.kind == b.kind && a.body == b.body;
                prop_assume!(a.stamp != b.stamp || same, "a CRC collision");
            }
        }
        let order = shuffled(deltas.len(), seed);
        let sides: Vec<bool> = order.iter().map(|index| index % 2 == 0).collect();
        check_case(&deltas, &order, &sides)?;
    }

    /// Full-stamp ties (only a CRC collision makes them): the result is still independent of
    /// arrival order and grouping.
    #[test]
    fn equal_stamps_are_order_independent(
        operations in vec((0u64..2, 0u32..2, 0u32..2, operation()), 1..=10),
        seeds in (any::<u64>(), any::<u64>()),
    ) {
        let deltas: Vec<Delta> = operations
            .into_iter()
            .map(|(seq, position, checksum, patch)| {
                let mut delta = Delta::new(seq, position, patch);
                delta.stamp.checksum = checksum;
                delta
            })
            .collect();
        let first = fold(&deltas, shuffled(deltas.len(), seeds.0));
        let second = fold(&deltas, shuffled(deltas.len(), seeds.1));
        prop_assert_eq!(first.check_invariants(), Ok(()));
        prop_assert_eq!(&first, &second);
        let half = deltas.len() / 2;
        let mut joined = fold(&deltas, (half..deltas.len()).rev());
        joined.join(&fold(&deltas, 0..half));
        prop_assert_eq!(&joined, &first);
        prop_assert_eq!(MergePatch.output(&joined), MergePatch.output(&first));
    }

    #[test]
    fn codec_round_trips(value in value()) {
        let mut bytes = Vec::new();
        encode_value(&value, &mut bytes);
        prop_assert_eq!(decode_value(&bytes), Ok(value));
        prop_assert_eq!(value_span(&bytes, 0), Ok(0..bytes.len()));
    }

    /// Corrupted bodies: an error or, if still valid, exactly the patch the bytes now spell.
    #[test]
    fn corrupted_bodies_never_panic(patch in patch(), at in any::<usize>(), byte in any::<u8>()) {
        let mut body = Vec::new();
        encode_patch(&patch, &mut body).expect("an object");
        let at = at % body.len();
        body[at] = byte;
        let delta = DeltaView { stamp: Stamp::new(1, 0, 0), kind: DeltaKind::Patch, body: &body };
        let mut state = PatchState::default();
        match MergePatch.fold(&mut state, delta) {
            Err(error) => {
                prop_assert!(error.offset <= body.len());
                prop_assert_eq!(&state, &PatchState::default());
                prop_assert!(binary::validate_object(&body).is_err());
            }
            Ok(()) => {
                let decoded = decode_value(&body).expect("fold accepted it");
                let mut expected = json!({});
                json_patch::merge(&mut expected, &decoded);
                prop_assert_eq!(MergePatch.output(&state), Some(expected));
            }
        }
    }

    #[test]
    fn random_bodies_never_panic(body in vec(0u8..12, 0..40)) {
        let delta = DeltaView { stamp: Stamp::new(1, 0, 0), kind: DeltaKind::Patch, body: &body };
        let mut state = PatchState::default();
        let folded = MergePatch.fold(&mut state, delta);
        prop_assert_eq!(folded.is_ok(), binary::validate_object(&body).is_ok());
        let _ = decode_value(&body);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// A heavier run of the main property: `cargo test --release -- --ignored`.
    #[test]
    #[ignore]
    fn fold_matches_sequential_merge_heavy((deltas, order, sides) in case(40)) {
        check_case(&deltas, &order, &sides)?;
    }
}

/// A permutation of `0..count` from a seed (Fisher-Yates).
fn shuffled(count: usize, seed: u64) -> Vec<usize> {
    let mut rng = aggrelog::testing::Rng::new(seed);
    let mut order: Vec<usize> = (0..count).collect();
    for i in (1..count).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    order
}

/// Two different deltas with the same `(seq, position)`: the one with the larger checksum
/// takes effect last, whichever arrives first.
#[test]
fn conflicting_deltas_apply_in_checksum_order() {
    let pairs = [
        (json!({"a": {"b": 1}, "c": 1}), json!({"a": 2, "d": null})),
        (
            json!({"a": null, "x": [1]}),
            json!({"a": {"z": {}}, "x": {"y": 1}}),
        ),
    ];
    for (first, second) in pairs {
        let one = Delta::new(4, 2, Some(first.clone()));
        let two = Delta::new(4, 2, Some(second.clone()));
        assert_ne!(one.stamp.checksum, two.stamp.checksum);
        let (low, high) = if one.stamp < two.stamp {
            (first, second)
        } else {
            (second, first)
        };
        let mut expected = json!({});
        json_patch::merge(&mut expected, &low);
        json_patch::merge(&mut expected, &high);
        let deltas = [one, two];
        for order in [[0, 1], [1, 0]] {
            let state = fold(&deltas, order);
            assert_eq!(MergePatch.output(&state), Some(expected.clone()));
        }
        let delete = Delta::new(4, 2, None);
        let with_delete = [deltas[0].clone(), delete];
        let expected = oracle(&with_delete);
        assert_eq!(MergePatch.output(&fold(&with_delete, [1, 0])), expected);
        assert_eq!(MergePatch.output(&fold(&with_delete, [0, 1])), expected);
    }
}

/// The generator covers the interesting shapes: present, absent, nested and removed values.
#[test]
fn generated_cases_are_varied() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut absent, mut nested, mut deletes) = (0, 0, 0);
    for _ in 0..500 {
        let tree = case(12).new_tree(&mut runner).expect("a case");
        let (deltas, _, _) = tree.current();
        deletes += deltas
            .iter()
            .filter(|d| d.kind == DeltaKind::Delete)
            .count();
        match oracle(&deltas) {
            None => absent += 1,
            Some(Value::Object(map)) => nested += usize::from(map.values().any(Value::is_object)),
            Some(_) => unreachable!("the root is an object"),
        }
    }
    println!("absent {absent} nested {nested} deletes {deletes} of 500");
    assert!(absent > 25 && nested > 100 && deletes > 150);
}

// ---------------------------------------------------------------------------------------------
// State records and forget_below

fn record(state: &PatchState) -> Vec<u8> {
    let mut out = Vec::new();
    MergePatch.encode_state(state, &mut out);
    out
}

fn from_record(bytes: &[u8]) -> Result<PatchState, ModelError> {
    let mut state = PatchState::default();
    MergePatch.join_encoded_state(&mut state, bytes)?;
    Ok(state)
}

fn fold_into(state: &mut PatchState, deltas: &[Delta], order: &[usize]) {
    for &index in order {
        MergePatch
            .fold(state, deltas[index].view())
            .expect("generated bodies are valid");
    }
}

/// What joining possibly corrupted record `bytes` into `base` must do: fail and change
/// nothing, or succeed with a canonical state whose record is exactly `bytes`.
fn check_untrusted_record(base: &PatchState, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut state = base.clone();
    match MergePatch.join_encoded_state(&mut state, bytes) {
        Err(error) => {
            prop_assert!(error.offset <= bytes.len());
            prop_assert_eq!(&state, base);
        }
        Ok(()) => {
            let decoded = from_record(bytes).expect("decoded once already");
            prop_assert_eq!(decoded.check_invariants(), Ok(()));
            prop_assert_eq!(record(&decoded), bytes);
            prop_assert_eq!(state.check_invariants(), Ok(()));
            let mut expected = base.clone();
            expected.join(&decoded);
            prop_assert_eq!(&state, &expected);
            let _ = MergePatch.output(&state);
        }
    }
    Ok(())
}

/// Deltas with seqs in `0..seqs` and distinct `(seq, position)`, a fold order (a permutation
/// plus duplicates) and a group in `0..groups` per delta.
fn grouped_case(
    max_deltas: usize,
    seqs: u64,
    groups: u8,
) -> impl Strategy<Value = (Vec<Delta>, Vec<usize>, Vec<u8>)> {
    vec((0..seqs, operation()), 1..=max_deltas)
        .prop_flat_map(move |operations| {
            let count = operations.len();
            let positions = Just((0..count as u32).collect::<Vec<_>>()).prop_shuffle();
            let duplicates = vec(0..count, 0..=count);
            (
                Just(operations),
                positions,
                duplicates,
                vec(0..groups, count),
            )
        })
        .prop_flat_map(|(operations, positions, duplicates, groups)| {
            let count = operations.len();
            let deltas: Vec<Delta> = operations
                .into_iter()
                .zip(positions)
                .map(|((seq, patch), position)| Delta::new(seq, position, patch))
                .collect();
            let order: Vec<usize> = (0..count).chain(duplicates).collect();
            (Just(deltas), Just(order).prop_shuffle(), Just(groups))
        })
}

/// The members of `group`, in fold order.
fn members(order: &[usize], groups: &[u8], group: u8) -> Vec<usize> {
    order
        .iter()
        .copied()
        .filter(|&index| groups[index] == group)
        .collect()
}

/// `forget_below(seal)` on a state that holds every delta with `seq < seal` (and the newer
/// ones of group 0): the output does not change, nor the output after folding the other
/// deltas, in any order, through more records and a second seal `seal + raise`.
fn check_forget(
    deltas: &[Delta],
    order: &[usize],
    groups: &[u8],
    seal: u64,
    raise: u64,
) -> Result<(), TestCaseError> {
    let old = |index: usize| deltas[index].stamp.seq < seal;
    // Every old delta, and the new ones of group 0.
    let first: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| old(i) || groups[i] == 0)
        .collect();
    let rest: Vec<usize> = order.iter().copied().filter(|&i| !old(i)).collect();
    let full = fold(deltas, order.iter().copied());
    let expected = oracle(deltas);

    let before = fold(deltas, first.iter().copied());
    let mut state = before.clone();
    MergePatch.forget_below(&mut state, seal);
    prop_assert_eq!(state.check_invariants(), Ok(()));
    prop_assert_eq!(MergePatch.output(&state), MergePatch.output(&before));
    let mut twice = state.clone();
    MergePatch.forget_below(&mut twice, seal);
    prop_assert_eq!(&twice, &state);
    if first.iter().all(|&i| old(i)) {
        // Nothing newer than the seal: a forgotten absent aggregate is empty.
        let absent = MergePatch.output(&state).is_none();
        prop_assert_eq!(MergePatch.is_empty(&state), absent);
    }
    let forgotten = from_record(&record(&state)).expect("a record decodes");
    prop_assert_eq!(&forgotten, &state);

    // The rest (group 0 again: duplicates are harmless), then a higher seal, then more.
    let seal2 = seal + raise;
    let (below2, above2): (Vec<usize>, Vec<usize>) =
        rest.iter().partition(|&&i| deltas[i].stamp.seq < seal2);
    fold_into(&mut state, deltas, &below2);
    MergePatch.forget_below(&mut state, seal2);
    state = from_record(&record(&state)).expect("a record decodes");
    fold_into(&mut state, deltas, &above2);
    prop_assert_eq!(state.check_invariants(), Ok(()));
    prop_assert_eq!(MergePatch.output(&state), expected.clone());
    prop_assert_eq!(MergePatch.output(&state), MergePatch.output(&full));

    // Robustness beyond the contract: joining the forgotten state with the state it was
    // made from (say both records survived a crash) changes nothing either.
    let mut both = forgotten.clone();
    both.join(&before);
    fold_into(&mut both, deltas, &rest);
    prop_assert_eq!(MergePatch.output(&both), expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// `join_encoded_state(Default, encode_state(s)) == s`, the record is canonical, and
    /// joining a record is `PatchState::join`.
    #[test]
    fn state_records_round_trip((deltas, order, sides) in case(12)) {
        let state = fold(&deltas, order.iter().copied());
        let bytes = record(&state);
        let decoded = from_record(&bytes).expect("a record decodes");
        prop_assert_eq!(decoded.check_invariants(), Ok(()));
        prop_assert_eq!(&decoded, &state);
        prop_assert_eq!(record(&decoded), bytes.clone());

        let group = |side: bool| {
            let members = order.iter().copied().filter(|&index| sides[index] == side);
            fold(&deltas, members)
        };
        let (left, right) = (group(false), group(true));
        let mut joined = left.clone();
        MergePatch.join_encoded_state(&mut joined, &record(&right)).expect("valid");
        prop_assert_eq!(&joined, &state);
        let mut again = state.clone();
        MergePatch.join_encoded_state(&mut again, &bytes).expect("valid");
        prop_assert_eq!(&again, &state);
    }

    /// Compaction: fold group 0, write its record, read it back, fold group 1 (late deltas
    /// included), write and read again, fold group 2: the state of all deltas, whatever the
    /// seqs of each group.
    #[test]
    fn compaction_generations_are_exact((deltas, order, groups) in grouped_case(14, 6, 3)) {
        let mut state = fold(&deltas, members(&order, &groups, 0));
        for group in 1..3 {
            state = from_record(&record(&state)).expect("a record decodes");
            fold_into(&mut state, &deltas, &members(&order, &groups, group));
            let so_far: Vec<Delta> = deltas
                .iter()
                .zip(&groups)
                .filter(|(_, g)| **g <= group)
                .map(|(delta, _)| delta.clone())
                .collect();
            prop_assert_eq!(MergePatch.output(&state), oracle(&so_far));
        }
        prop_assert_eq!(&state, &fold(&deltas, order.iter().copied()));
        prop_assert_eq!(MergePatch.output(&state), oracle(&deltas));
    }

    #[test]
    fn forget_below_keeps_outputs(
        (deltas, order, groups) in grouped_case(16, 10, 2),
        seal in 0u64..11,
        raise in 0u64..4,
    ) {
        check_forget(&deltas, &order, &groups, seal, raise)?;
    }

    /// Every truncation of a record is an error; flipped bytes give an error or a canonical
    /// state whose record is exactly the corrupted bytes; never a panic.
    #[test]
    fn corrupted_records_never_panic(
        (deltas, order, sides) in case(10),
        flips in vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let state = fold(&deltas, order.iter().copied());
        let base = fold(&deltas, order.iter().copied().filter(|&i| sides[i]));
        let bytes = record(&state);
        for len in 0..bytes.len() {
            let mut target = base.clone();
            let result = MergePatch.join_encoded_state(&mut target, &bytes[..len]);
            prop_assert!(result.is_err(), "prefix {} of {:02x?}", len, bytes);
            prop_assert_eq!(&target, &base);
        }
        let mut corrupted = bytes.clone();
        for (at, byte) in flips {
            let at = at % corrupted.len();
            corrupted[at] = byte;
        }
        check_untrusted_record(&base, &corrupted)?;
        check_untrusted_record(&PatchState::default(), &corrupted)?;
    }

    #[test]
    fn random_records_never_panic(
        noise in prop_oneof![
            vec(any::<u8>(), 0..48),
            vec(0u8..16, 0..48).prop_map(|mut bytes| {
                bytes.insert(0, 1);
                bytes
            }),
        ],
    ) {
        check_untrusted_record(&PatchState::default(), &noise)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8192))]

    /// Heavier runs of the record and forget properties:
    /// `cargo test --release -- --ignored`.
    #[test]
    #[ignore]
    fn compaction_generations_are_exact_heavy((deltas, order, groups) in grouped_case(30, 12, 3)) {
        let mut state = fold(&deltas, members(&order, &groups, 0));
        for group in 1..3 {
            let mut next = PatchState::default();
            MergePatch.join_encoded_state(&mut next, &record(&state)).expect("valid");
            state = next;
            fold_into(&mut state, &deltas, &members(&order, &groups, group));
        }
        prop_assert_eq!(&state, &fold(&deltas, order.iter().copied()));
        prop_assert_eq!(MergePatch.output(&state), oracle(&deltas));
    }

    #[test]
    #[ignore]
    fn forget_below_keeps_outputs_heavy(
        (deltas, order, groups) in grouped_case(30, 16, 2),
        seal in 0u64..17,
        raise in 0u64..6,
    ) {
        check_forget(&deltas, &order, &groups, seal, raise)?;
    }
}

/// A deleted aggregate leaves nothing after `forget_below` above its delete; `seal` at or
/// below the delete keeps the tombstone.
#[test]
fn forgotten_delete_is_empty() {
    let deltas = [
        Delta::new(1, 0, Some(json!({"a": {"b": 1}, "c": [2]}))),
        Delta::new(2, 0, Some(json!({"a": {"d": null}}))),
        Delta::new(3, 0, None),
    ];
    let state = fold(&deltas, [2, 0, 1]);
    assert_eq!(MergePatch.output(&state), None);
    assert!(!MergePatch.is_empty(&state));
    for seal in 0..=3 {
        let mut kept = state.clone();
        MergePatch.forget_below(&mut kept, seal);
        assert!(!MergePatch.is_empty(&kept), "seal {seal}");
        let late = Delta::new(3, 1, Some(json!({"e": 5})));
        MergePatch.fold(&mut kept, late.view()).unwrap();
        assert_eq!(MergePatch.output(&kept), Some(json!({"e": 5})));
    }
    let mut forgotten = state.clone();
    MergePatch.forget_below(&mut forgotten, 4);
    assert!(MergePatch.is_empty(&forgotten));
    assert_eq!(forgotten, PatchState::default());
    assert_eq!(record(&forgotten), [1, 0]);
    let reborn = Delta::new(4, 0, Some(json!({"f": true})));
    MergePatch.fold(&mut forgotten, reborn.view()).unwrap();
    assert_eq!(MergePatch.output(&forgotten), Some(json!({"f": true})));

    // Re-patched after the delete: the object survives, the tombstones go.
    let mut live = fold(&deltas, [0, 1, 2]);
    let patch = Delta::new(5, 0, Some(json!({"g": null, "h": 1})));
    MergePatch.fold(&mut live, patch.view()).unwrap();
    MergePatch.forget_below(&mut live, 6);
    assert!(!MergePatch.is_empty(&live));
    assert_eq!(MergePatch.output(&live), Some(json!({"h": 1})));
    let floor = Stamp::new(5, u32::MAX, u32::MAX);
    assert_eq!(live.max_stamp(), Some(floor));
    // Beyond the contract (a delta below the seal after all): on live paths it loses to the
    // floor stamp, as it would have lost to the newer writes it stands for.
    let mut late = live.clone();
    let too_late = Delta::new(5, 3, Some(json!({"h": 2})));
    MergePatch.fold(&mut late, too_late.view()).unwrap();
    assert_eq!(MergePatch.output(&late), Some(json!({"h": 1})));
    let record = record(&live);
    let mut plain = Vec::new();
    encode_value(&json!({"h": 1}), &mut plain);
    assert_eq!(record[12..], plain[..]);
}
