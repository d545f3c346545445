//! The command line of `bp-collector` as a library: parsed by the binary,
//! and rendered into its man page and shell completions by `bp-docs`
//! (`scripts/package`), so that all three come from one definition.

pub mod cli;
