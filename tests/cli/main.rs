//! Integration tests: the built `git-machine` binary driven through real git in temporary
//! repositories, with a hermetic environment (see [`common::TestEnv`]).

mod architecture;
mod basics;
mod common;
mod config;
mod e2e;
#[cfg(feature = "test-fakes")]
mod engines;
mod fake_model;
mod faults;
mod flow;
mod help;
mod machine;
mod output;
mod parallel;
mod person;
mod pool;
mod pty;
mod snapshots;
mod vars_input;
mod watch;
