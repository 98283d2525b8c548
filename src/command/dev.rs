//! The development tools' commands (the `devtools` feature): `intake`, `bench`, `demo`.

use std::process::ExitCode;

use super::logging;
use super::runtime::block_on;
use sidelog_devtools::{bench, demo, intake};
use sidelog_shipper::config::{LogFormat, LogLevel};

pub fn intake(args: intake::IntakeArgs) -> ExitCode {
    logging::init(LogLevel::Info, LogFormat::Text);
    block_on(|stop| intake::run_cli(args.into_options(), stop))
}

pub fn bench(command: bench::BenchCommand) -> ExitCode {
    logging::init(LogLevel::Warn, LogFormat::Text);
    block_on(|_| bench::run(command))
}

pub fn demo(options: demo::DemoOptions) -> ExitCode {
    logging::init(LogLevel::Warn, LogFormat::Text);
    block_on(|stop| demo::run(options, stop))
}
