//! Parsers and line-preserving editors for `/etc` text formats. Pure text in, text out:
//! nothing here touches the tree or the host.

pub mod apt_sources;
pub mod group;
pub mod passwd;
pub mod shadow;
