//! The `seqlm` subcommands, one file each: argument struct (clap) plus a `run` function.

pub mod bench;
pub mod corpus;
pub mod eval;
pub mod export;
pub mod forward;
pub mod generate;
pub mod import;
pub mod init;
pub mod train;
