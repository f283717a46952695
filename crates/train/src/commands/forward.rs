//! `seqlm forward` (work in progress).

/// Arguments of `seqlm forward`.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {}

/// Runs `seqlm forward`.
pub fn run(_args: &ForwardArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
