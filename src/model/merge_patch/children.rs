//! [`Children`]: the child nodes of a stamped-tree node, by key.
//!
//! Most nodes have a handful of children: they are a sorted vector of `(key, node)` with keys
//! inline up to 24 bytes, one allocation of exactly their size (a `BTreeMap` allocated a node of
//! eleven slots, over a kilobyte here, plus one box per key). Keys arrive in ascending order
//! within a patch, so building such a node is a run of pushes. A key inserted in the middle moves
//! the keys after it, which makes a wide node (an aggregate with thousands of attributes, whose
//! keys arrive in any order) quadratic to build: a node that grows past [`WIDE_CHILDREN`] keys
//! becomes a hash map, constant time per lookup and insert (a `BTreeMap` spent 28 ms on the
//! comparisons of 100k lookups in a node of 10k keys). Either form iterates in key order: a wide
//! node sorts its keys when iterated (rendering, encoding a state), once per pass.

use compact_str::CompactString;
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;

use super::Node;

/// Children beyond which a node is kept in a hash map rather than a sorted vector.
const WIDE_CHILDREN: usize = 64;

/// Child nodes in strictly ascending key order (byte order, as `str` compares).
#[derive(Clone, Debug)]
pub(super) enum Children {
    /// A sorted vector: up to [`WIDE_CHILDREN`] keys.
    Narrow(Vec<(CompactString, Node)>),
    /// A hash map, once the node grew past [`WIDE_CHILDREN`] keys (boxed: most nodes are
    /// narrow, and every node carries this enum).
    Wide(Box<HashMap<CompactString, Node>>),
}

impl Default for Children {
    fn default() -> Self {
        Children::Narrow(Vec::new())
    }
}

impl PartialEq for Children {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Children {}

/// Where `key` is (`Ok`) or would go (`Err`) in a sorted vector of children.
fn find(children: &[(CompactString, Node)], key: &str) -> Result<usize, usize> {
    // Keys mostly arrive in ascending order: check the end first.
    match children.last() {
        Some((last, _)) if last.as_str() < key => Err(children.len()),
        _ => children.binary_search_by(|(k, _)| k.as_str().cmp(key)),
    }
}

impl Children {
    /// The child at `key`, if any.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Children::Narrow(children) => find(children, key).ok().map(|at| &children[at].1),
            Children::Wide(children) => children.get(key),
        }
    }

    /// The child at `key`, if any.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match self {
            Children::Narrow(children) => {
                let at = find(children, key).ok()?;
                Some(&mut children[at].1)
            }
            Children::Wide(children) => children.get_mut(key),
        }
    }

    /// The child at `key`, created empty if missing.
    pub fn get_or_default(&mut self, key: &str) -> &mut Node {
        self.widen_before_insert(key);
        match self {
            Children::Narrow(children) => {
                let at = match find(children, key) {
                    Ok(at) => at,
                    Err(at) => {
                        children.insert(at, (CompactString::new(key), Node::default()));
                        at
                    }
                };
                &mut children[at].1
            }
            Children::Wide(children) => match children.entry_ref(key) {
                EntryRef::Occupied(child) => child.into_mut(),
                EntryRef::Vacant(slot) => {
                    slot.insert_with_key(CompactString::new(key), Node::default())
                }
            },
        }
    }

    /// Inserts `node` at `key`, replacing any child there.
    pub fn insert(&mut self, key: &str, node: Node) {
        *self.get_or_default(key) = node;
    }

    /// Turns a full sorted vector into a map before a new key would be inserted into it.
    fn widen_before_insert(&mut self, key: &str) {
        if let Children::Narrow(children) = self {
            if children.len() >= WIDE_CHILDREN && find(children, key).is_err() {
                let map = std::mem::take(children).into_iter().collect();
                *self = Children::Wide(Box::new(map));
            }
        }
    }

    /// Keeps the children for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Node) -> bool) {
        match self {
            Children::Narrow(children) => children.retain_mut(|(_, node)| keep(node)),
            Children::Wide(children) => children.retain(|_, node| keep(node)),
        }
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        match self {
            Children::Narrow(children) => children.len(),
            Children::Wide(children) => children.len(),
        }
    }

    /// Whether there is no child.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Children in key order.
    pub fn iter(&self) -> ChildrenIter<'_> {
        match self {
            Children::Narrow(children) => ChildrenIter::Narrow(children.iter()),
            Children::Wide(children) => {
                let mut sorted: Vec<(&str, &Node)> = children
                    .iter()
                    .map(|(key, node)| (key.as_str(), node))
                    .collect();
                sorted.sort_unstable_by_key(|(key, _)| *key);
                ChildrenIter::Wide(sorted.into_iter())
            }
        }
    }

    /// Child nodes in key order.
    pub fn values(&self) -> impl Iterator<Item = &Node> {
        self.iter().map(|(_, node)| node)
    }
}

/// The children of a node in key order, whichever form holds them.
pub(super) enum ChildrenIter<'a> {
    Narrow(std::slice::Iter<'a, (CompactString, Node)>),
    Wide(std::vec::IntoIter<(&'a str, &'a Node)>),
}

impl<'a> Iterator for ChildrenIter<'a> {
    type Item = (&'a str, &'a Node);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ChildrenIter::Narrow(children) => children.next().map(|(k, n)| (k.as_str(), n)),
            ChildrenIter::Wide(children) => children.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ChildrenIter::Narrow(children) => children.size_hint(),
            ChildrenIter::Wide(children) => children.size_hint(),
        }
    }
}

impl ExactSizeIterator for ChildrenIter<'_> {}

#[cfg(test)]
impl std::ops::Index<&str> for Children {
    type Output = Node;

    /// The child at `key`; panics if there is none (tests).
    fn index(&self, key: &str) -> &Node {
        match self.get(key) {
            Some(node) => node,
            None => panic!("no child {key:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_sorted_whatever_the_insertion_order() {
        let mut children = Children::default();
        for key in ["m", "b", "z", "a", "é", "ab", "b"] {
            children.get_or_default(key);
        }
        children.insert("c", Node::default());
        let keys: Vec<_> = children.iter().map(|(k, _)| k.to_owned()).collect();
        assert_eq!(keys, ["a", "ab", "b", "c", "m", "z", "é"]);
        assert!(children.get("ab").is_some() && children.get("x").is_none());
        children.retain(|_| false);
        assert!(children.is_empty());
    }

    #[test]
    fn a_wide_node_keeps_its_order_and_equals_a_narrow_one_with_the_same_keys() {
        let keys: Vec<String> = (0..500u32)
            .map(|n| format!("k{}", n * 7919 % 500))
            .collect();
        let mut wide = Children::default();
        for key in &keys {
            wide.get_or_default(key);
        }
        assert!(matches!(wide, Children::Wide(_)));
        let mut sorted = keys.clone();
        sorted.sort();
        let listed: Vec<&str> = wide.iter().map(|(k, _)| k).collect();
        assert_eq!(listed, sorted);
        assert!(wide.get_mut("k499").is_some() && wide.get_mut("k500").is_none());
        // The same keys built in order stay narrow up to the threshold only; equality is by
        // content, whatever the form.
        let narrow = Children::Narrow(
            sorted
                .iter()
                .map(|k| (CompactString::new(k), Node::default()))
                .collect(),
        );
        assert_eq!(wide, narrow);
        wide.retain(|_| false);
        assert!(wide.is_empty());
    }
}
