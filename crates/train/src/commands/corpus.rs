//! `seqlm corpus`: corpus statistics (work in progress).

/// Arguments of `seqlm corpus`.
#[derive(Debug, clap::Args)]
pub struct CorpusArgs {}

/// Runs `seqlm corpus`.
pub fn run(_args: &CorpusArgs) -> anyhow::Result<()> {
    anyhow::bail!("seqlm corpus is not implemented yet")
}
