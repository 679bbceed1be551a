//! Integration tests: the built `git-machine` binary driven through real git in temporary
//! repositories, with a hermetic environment (see [`common::TestEnv`]).

mod basics;
mod common;
#[cfg(feature = "test-fakes")]
mod engines;
mod flow;
