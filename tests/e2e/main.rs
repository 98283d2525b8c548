//! sidelog's integration tests, one binary with a module per feature. Most start the real
//! binary (`SIDELOG_BIN`, else the one cargo built) against the built-in intake on 127.0.0.1
//! and compare what arrived, line for line, with what was written; the harness is in
//! `harness/`. Run one feature with `cargo test --test e2e -- tailing::`.

mod agent;
mod cli;
mod delivery;
mod docs;
mod failures;
mod harness;
mod intake;
mod kubernetes;
mod lifecycle;
mod operations;
mod processing;
mod secrets;
mod tailing;
