//! `aggrelog diff`: the RFC 7396 merge patch that turns an aggregate's state as of one seq into
//! its state as of another.

use serde_json::{Map, Value};

use crate::open::DbArgs;
use crate::output::{emit, Failure};
use crate::read::{databases, first_state};

/// `diff`: prints the merge patch from the state as of `from` to the state as of `to`. An
/// absent state is `{}` on the `from` side (a patch to an absent aggregate starts from `{}`);
/// an absent `to` state is the patch `null`, which RFC 7396 applies as "remove everything".
pub fn diff(args: &DbArgs, id: &str, from: u64, to: u64) -> Result<(), Failure> {
    // One opening: both states come from the same snapshot of the log.
    let dbs = databases(args)?;
    let before = first_state(&dbs, id, from)?.map(|s| s.state);
    let after = first_state(&dbs, id, to)?.map(|s| s.state);
    let patch = match after {
        None => Value::Null,
        Some(after) => merge_diff(&before.unwrap_or_else(|| Value::Object(Map::new())), &after),
    };
    emit(patch)
}

/// The merge patch `p` with `merge(from, p) == to`, as small as RFC 7396 allows: members of
/// `from` missing in `to` become `null`, equal members are left out, objects on both sides are
/// diffed member by member, anything else is replaced whole. `to` holds no `null` member of an
/// object (a merge patch cannot set one, so no state has one).
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    let (Value::Object(before), Value::Object(after)) = (from, to) else {
        return to.clone();
    };
    let mut patch = Map::new();
    for key in before.keys().filter(|key| !after.contains_key(*key)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, value) in after {
        match before.get(key) {
            Some(old) if old == value => {}
            Some(old) => drop(patch.insert(key.clone(), merge_diff(old, value))),
            None => drop(patch.insert(key.clone(), value.clone())),
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(from: &Value, patch: &Value) -> Value {
        let mut target = from.clone();
        json_patch::merge(&mut target, patch);
        target
    }

    #[test]
    fn the_patch_turns_one_state_into_the_other() {
        let cases = [
            (json!({}), json!({"a": 1})),
            (
                json!({"a": 1, "b": {"c": 2, "d": [1, null]}}),
                json!({"b": {"c": 3, "e": {}}}),
            ),
            (json!({"a": {"b": {"c": 1}}}), json!({"a": 5})),
            (json!({"a": 5}), json!({"a": {"b": {"c": 1}}})),
            (
                json!({"same": [1, 2], "x": "y"}),
                json!({"same": [1, 2], "x": "y"}),
            ),
            (json!({"arr": [1]}), json!({"arr": [1, {"k": null}]})),
        ];
        for (from, to) in cases {
            let patch = merge_diff(&from, &to);
            assert_eq!(applied(&from, &patch), to, "{from} -> {to}: {patch}");
        }
        let unchanged = merge_diff(&json!({"a": {"b": 1}}), &json!({"a": {"b": 1}}));
        assert_eq!(unchanged, json!({}), "equal states: the empty patch");
        assert_eq!(
            merge_diff(&json!({"a": 1, "b": 2}), &json!({"b": 3})),
            json!({"a": null, "b": 3})
        );
    }
}
