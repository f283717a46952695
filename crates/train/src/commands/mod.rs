//! The `seqlm` subcommands, one file each: argument struct (clap) plus a `run` function.

pub mod corpus;
pub mod forward;
pub mod init;
