//! `git-machine`: parse the command line, run it, map the result to an exit code.

mod cli;
mod engine;
mod env;
mod error;
mod git;
mod runner;
mod signal;
mod store;
mod tty;
mod ui;
mod workflow;

fn main() {
    std::process::exit(cli::main());
}
