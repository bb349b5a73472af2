//! OCI whiteouts (`layer.md` § "Whiteouts"): `DIR/.wh.NAME` deletes `DIR/NAME` and
//! `DIR/.wh..wh..opq` empties `DIR`, but only of what lower layers put there. A layer's own
//! entries survive its whiteouts whatever the order in the tar, so each layer records the
//! directory entries (parent, name) it wrote; an opaque directory keeps itself and those
//! entries. A whiteout of a path that does not exist is not an error. Whiteout files are
//! never stored.

use std::collections::HashSet;

use crate::tree::path::join;
use crate::tree::{Follow, InodeId, PathError, Tree};

use super::archive::EntryError;

/// Names starting with this are whiteouts.
pub const PREFIX: &[u8] = b".wh.";
/// The opaque-directory marker.
pub const OPAQUE: &[u8] = b".wh..wh..opq";

/// The directory entries the current layer wrote.
#[derive(Debug, Default)]
pub struct LayerState {
    written: HashSet<(InodeId, Box<[u8]>)>,
}

impl LayerState {
    /// Records that the entry at `names` (just written) belongs to this layer.
    pub fn record(&mut self, tree: &Tree, names: &[&[u8]]) -> Result<(), EntryError> {
        let (parent, name) = tree.resolve_parent(&join(names), Follow::Strict)?;
        if let Some(name) = name {
            self.written.insert((parent, name.into_boxed_slice()));
        }
        Ok(())
    }

    fn wrote(&self, parent: InodeId, name: &[u8]) -> bool {
        self.written.contains(&(parent, Box::from(name)))
    }
}

/// Applies the whiteout entry at `names` (its last name starts with `.wh.`).
pub fn apply(tree: &mut Tree, state: &LayerState, names: &[&[u8]]) -> Result<(), EntryError> {
    let Some((name, parents)) = names.split_last() else {
        return Ok(());
    };
    let parent = match tree.resolve(&join(parents), Follow::Strict, true) {
        Ok(id) if tree.inode(id).is_dir() => id,
        // Nothing there to hide.
        Ok(_) | Err(PathError::NotFound(_)) | Err(PathError::NotADir(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if *name == OPAQUE {
        prune(tree, state, parent);
        return Ok(());
    }
    let target = &name[PREFIX.len()..];
    if target.is_empty() || target == b"." || target == b".." || target.starts_with(PREFIX) {
        return Err(EntryError::Header(format!(
            "bad whiteout name {:?}",
            String::from_utf8_lossy(name)
        )));
    }
    hide(tree, state, parent, target);
    Ok(())
}

/// Hides the lower-layer entry `name` of `parent`.
fn hide(tree: &mut Tree, state: &LayerState, parent: InodeId, name: &[u8]) {
    let Ok(Some(child)) = tree.child(parent, name) else {
        return;
    };
    let is_dir = tree.inode(child).is_dir();
    if state.wrote(parent, name) {
        // This layer's own entry replaced the lower one; a directory merged with the lower
        // directory's children, which the whiteout still hides.
        if is_dir {
            prune(tree, state, child);
        }
    } else if !is_dir || !prune(tree, state, child) {
        tree.remove(parent, name);
    }
}

/// Removes everything under `dir` that this layer did not write; returns whether anything
/// was kept.
fn prune(tree: &mut Tree, state: &LayerState, dir: InodeId) -> bool {
    let children: Vec<(Box<[u8]>, InodeId)> = match tree.inode(dir).as_dir() {
        Some(d) => d.entries().map(|(n, id)| (Box::from(n), id)).collect(),
        None => return false,
    };
    let mut kept = false;
    for (name, child) in children {
        let is_dir = tree.inode(child).is_dir();
        if state.wrote(dir, &name) {
            kept = true;
            if is_dir {
                prune(tree, state, child);
            }
        } else if is_dir && prune(tree, state, child) {
            // A lower directory that holds this layer's entries (written through it
            // without a directory entry of its own) stays.
            kept = true;
        } else {
            tree.remove(dir, &name);
        }
    }
    kept
}
