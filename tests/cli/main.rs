//! Integration tests: the built `git-machine` binary driven through real git in temporary
//! repositories, with a hermetic environment (see [`common::TestEnv`]).

mod architecture;
mod basics;
mod common;
mod config;
#[cfg(feature = "test-fakes")]
mod crash;
mod e2e;
#[cfg(feature = "test-fakes")]
mod engines;
mod fake_model;
mod faults;
mod flow;
mod help;
mod hostile;
mod machine;
#[cfg(feature = "test-fakes")]
mod misbehave;
mod output;
mod parallel;
mod person;
mod pool;
mod pty;
#[cfg(feature = "test-fakes")]
mod races;
mod secrets;
mod snapshots;
mod trust;
mod vars_input;
mod watch;
mod watched;
mod workspace;
