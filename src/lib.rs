//! kiln builds machine images from a declarative manifest.
//!
//! The pipeline runs one way: `imagefile.yaml` is parsed and checked into a
//! [`manifest::Manifest`], and each later stage takes the previous stage's
//! value. `main.rs` only parses the command line ([`cli`]) and calls [`run`];
//! each command lives in [`commands`], a thin adapter over the
//! operations in [`ops`] and the stages.

pub mod apt;
pub mod assemble;
pub mod bootstrap;
pub mod cache;
pub mod chroot;
pub mod cli;
pub mod commands;
pub mod distro;
pub mod failure;
pub mod fetch;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod lock;
pub mod machine;
pub mod manifest;
pub mod normalise;
pub mod ops;
pub mod output;
pub mod phases;
pub mod plan;
pub mod report;
pub mod reproducible;
pub mod sbom;
pub mod snapshot;
pub mod terminal;

pub use failure::Failure;

use cli::{Command, Settings};

/// Runs one kiln command with settings already resolved from the command
/// line and environment.
pub fn run(settings: Settings) -> Result<(), Failure> {
    terminal::set_quiet(settings.quiet);
    match settings.command {
        Command::Validate(validate) => commands::validate::run(&validate),
        Command::Schema { lock } => commands::schema::run(lock),
        Command::Lock(settings) => commands::lock::run(&settings),
        Command::Fetch(settings) => commands::fetch::run(&settings),
        Command::Build(settings) => commands::build::run(&settings),
        Command::Elements(settings) => commands::elements::run(&settings),
        Command::Cache(settings) => commands::cache::run(&settings),
        Command::Sbom(settings) => commands::sbom::run(&settings),
        Command::Init(init) => commands::init::run(&init),
        Command::Boot(settings) => commands::boot::run(&settings),
        Command::Test(settings) => commands::test::run(&settings),
        Command::Completions(settings) => commands::completions::run(&settings),
        Command::Man(settings) => commands::man::run(&settings),
        // DIB's command line: an imagefile for the call, `kiln build`'s own
        // command on it, then the files placed where DIB puts them.
        Command::DiskImageCreate(settings) => {
            match commands::disk_image_create::prepare(&settings)? {
                Some((mapped, build)) => {
                    commands::build::run(&build)?;
                    commands::disk_image_create::finish(&mapped)
                }
                None => Ok(()),
            }
        }
    }
}
