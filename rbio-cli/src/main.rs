//! The `rbio` command: glue between the command line and the rbio-recovery library.
//!
//! Each subcommand turns its typed arguments into the library's options, makes one library
//! call (bringup, inspect, prepare) and renders the result for people or as JSON. Only
//! rbio-engines names concrete engines; errors are printed as one line with their causes, and
//! the exit codes are listed in `rbio --help`.
#![forbid(unsafe_code)]

mod args;
mod bench;
mod commands;
mod demo;
mod exit;
mod output;
mod progress;
mod render;
mod several;
mod system;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::{Exit, Failure, EXIT_USAGE};
use crate::output::{note, OutputError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help, --version
            return match error.print() {
                Ok(()) => ExitCode::SUCCESS,
                Err(source) => exit::report(&OutputError::from(source).into()),
            };
        }
        Err(error) => {
            note!("rbio: {}", usage_line(&error));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(&cli.command) {
        Ok(exit) => exit.code(),
        Err(error) => exit::report(&error),
    }
}

fn run(command: &Command) -> Result<Exit, Failure> {
    match command {
        Command::Demo(args) => demo::demo(args),
        Command::Prepare(args) => commands::prepare_image(args),
        Command::Bringup(args) => commands::bringup(args),
        Command::Inspect(args) => commands::inspect_device(args),
        Command::Bench(args) => bench::bench(args),
    }
}

/// A clap error as one line: its first paragraph (`error: ...` and any list under it), joined,
/// and where to look for help.
fn usage_line(error: &clap::Error) -> String {
    let rendered = error.render().to_string();
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    format!("{} (see rbio --help)", paragraph.join(" "))
}
