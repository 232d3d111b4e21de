//! Parts of the command line kept apart from `main.rs`.

pub mod reports;
