//! Archives and layers into the staging tree: compression detection ([`compression`]), tar
//! streams ([`archive`]) with PAX extras ([`pax`]), and host directories ([`dir`]).
//! Every function here applies on top of an existing tree, so layers stack.

pub mod archive;
pub mod compression;
pub mod dir;
pub mod pax;

pub use archive::{
    apply_plain_tar, apply_tar, EntryError, UnpackError, UnpackOptions, UnpackStats,
};
pub use compression::{decompress, Compression};
