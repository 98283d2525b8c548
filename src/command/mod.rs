//! The commands of the `sidelog` binary, over the library: the shipper's (`run`, `check`,
//! `status`, `generate`), `inject` (the `inject` feature) and, with the `devtools` feature,
//! the development tools'.

#[cfg(feature = "devtools")]
pub mod dev;
pub mod generate;
#[cfg(feature = "inject")]
pub mod inject;
pub mod logging;
pub mod run;
pub mod runtime;
