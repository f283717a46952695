//! Training and command-line tooling for seqmodels: the `seqlm` program's subcommands.

pub mod commands;
