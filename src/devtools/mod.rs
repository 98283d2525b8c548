//! Tools to try, test and measure sidelog, kept out of the binary that runs in Pods (they
//! are the `devtools` feature, on by default; the image is built without it):
//!
//! - [`intake`]: a Datadog-compatible logs intake, with faults on demand;
//! - [`bench`]: end-to-end benchmarks of the real binary;
//! - [`demo`]: the intake, a sample writer and the shipper in one process.

pub mod bench;
pub mod demo;
pub mod intake;
pub mod writer;
