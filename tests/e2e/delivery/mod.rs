//! Delivery: what the real binary ships and how (`shipping`), through the intake's fault
//! modes and crashes (`intake_faults`), and to additional endpoints (`dual`).

mod dual;
mod intake_faults;
mod shipping;
