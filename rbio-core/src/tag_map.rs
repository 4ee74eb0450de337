//! Tag rewriting for wrapping engines: each operation they pass on carries a slab key as its
//! tag, so the wrapper finds its own state for the completion and restores the caller's tag.

use slab::Slab;

use crate::completion::Completion;
use crate::op::Op;

/// Per-operation state of a wrapping engine, keyed by the tag it gave the inner engine.
#[derive(Debug)]
pub(crate) struct TagMap<T> {
    entries: Slab<(u64, T)>,
}

impl<T> TagMap<T> {
    pub(crate) fn new() -> Self {
        TagMap {
            entries: Slab::new(),
        }
    }

    /// Records `state` for `op` and returns the op retagged for the inner engine.
    pub(crate) fn wrap(&mut self, op: Op, state: T) -> Op {
        let key = self.entries.insert((op.tag(), state));
        op.with_tag(key as u64)
    }

    /// Takes the state back for an inner completion and restores the caller's tag.
    ///
    /// # Panics
    /// If the inner engine completes a tag that was never wrapped or completes one twice: an
    /// engine contract violation.
    pub(crate) fn unwrap(&mut self, completion: Completion) -> (Completion, T) {
        let key = completion.tag() as usize;
        let (caller_tag, state) = self
            .entries
            .try_remove(key)
            .unwrap_or_else(|| panic!("inner engine completed unknown or repeated tag {key}"));
        (completion.with_tag(caller_tag), state)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
