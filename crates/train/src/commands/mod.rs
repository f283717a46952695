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
pub mod quantize;
pub mod train;

use std::collections::BTreeSet;

use clap::parser::ValueSource;

/// The ids of the options given on the command line, as opposed to filled in from their
/// defaults (clap's `ArgMatches::value_source`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GivenOptions(BTreeSet<String>);

impl GivenOptions {
    /// The options of `matches` whose value came from the command line.
    pub fn from_matches(matches: &clap::ArgMatches) -> Self {
        let given = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect();
        GivenOptions(given)
    }

    /// Whether the option with this id (the field name) was given.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// The exit status of a failed command: 2 for a usage error (an option whose value is out of
/// its range or does not fit the others), 1 for everything else.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    let usage = error
        .chain()
        .any(|cause| cause.is::<Usage>() || matches!(cause.downcast_ref(), Some(crate::Error::InvalidOption { .. })));
    if usage {
        2
    } else {
        1
    }
}

/// An error in what the command line asks for (options that do not fit together), as opposed
/// to the files or the machine: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Usage(#[from] pub crate::Error);
