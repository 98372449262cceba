//! [`Children`]: the child nodes of a stamped-tree node, by key.
//!
//! A sorted vector of `(key, node)` with keys inline up to 24 bytes: most nodes have a handful
//! of children, and a vector holds them in one allocation of exactly their size, where a
//! `BTreeMap` allocated a node of eleven slots (over a kilobyte here) plus one box per key. Keys
//! arrive in ascending order within a patch, so building a node is a run of pushes; inserting a
//! new key in the middle of an existing node moves the keys after it (linear in the node's size).

use compact_str::CompactString;

use super::Node;

/// Child nodes in strictly ascending key order (byte order, as `str` compares).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Children(Vec<(CompactString, Node)>);

impl Children {
    fn find(&self, key: &str) -> Result<usize, usize> {
        // Keys mostly arrive in ascending order: check the end first.
        match self.0.last() {
            Some((last, _)) if last.as_str() < key => Err(self.0.len()),
            _ => self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)),
        }
    }

    /// The child at `key`, if any.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.find(key).ok().map(|at| &self.0[at].1)
    }

    /// The child at `key`, if any.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.find(key).ok().map(|at| &mut self.0[at].1)
    }

    /// The child at `key`, created empty if missing.
    pub fn get_or_default(&mut self, key: &str) -> &mut Node {
        let at = match self.find(key) {
            Ok(at) => at,
            Err(at) => {
                self.0
                    .insert(at, (CompactString::new(key), Node::default()));
                at
            }
        };
        &mut self.0[at].1
    }

    /// Inserts `node` at `key`, replacing any child there.
    pub fn insert(&mut self, key: &str, node: Node) {
        match self.find(key) {
            Ok(at) => self.0[at].1 = node,
            Err(at) => self.0.insert(at, (CompactString::new(key), node)),
        }
    }

    /// Keeps the children for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Node) -> bool) {
        self.0.retain_mut(|(_, node)| keep(node));
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no child.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Children in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Node)> {
        self.0.iter().map(|(key, node)| (key.as_str(), node))
    }

    /// Child nodes in key order.
    pub fn values(&self) -> impl Iterator<Item = &Node> {
        self.0.iter().map(|(_, node)| node)
    }
}

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
}
