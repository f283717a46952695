//! The `seqlm` subcommands, one file each: argument struct (clap) plus a `run` function. What
//! several of them need is in [`common`]; no subcommand imports another.

pub mod bench;
pub mod common;
pub mod corpus;
pub mod eval;
pub mod export;
pub mod forward;
pub mod generate;
pub mod import;
pub mod init;
pub mod train;
