//! Checkpoints (DESIGN.md, section 5a): the file format ([`format`]), which checkpoint open may
//! trust ([`validate`]), and taking one ([`write`]).

pub(crate) mod format;
pub(crate) mod validate;
pub(crate) mod write;

pub use format::CheckpointMeta;
