//! Where a routing table comes from before it reaches the store: the files
//! operations teams edit, read and checked row by row.

pub mod fields;
pub mod files;

pub use files::{DataDirs, LoadError, LoadedFiles, OperatorSecret, Problem};
