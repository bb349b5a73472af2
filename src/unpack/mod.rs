//! Archives and layers into the staging tree: compression detection ([`compression`]), tar
//! streams ([`archive`]) with PAX extras ([`pax`]), and host directories ([`dir`]).
//! Every function here applies on top of an existing tree, so layers stack; OCI layers
//! ([`layer`]) add whiteouts ([`whiteout`]) and the diff_id check.

pub mod archive;
pub mod compression;
pub mod dir;
pub mod layer;
pub mod pax;
pub mod whiteout;

pub use archive::{
    apply_plain_tar, apply_tar, EntryError, UnpackError, UnpackOptions, UnpackStats,
};
pub use compression::{decompress, Compression};
pub use layer::{apply_layer, LayerError};
