//! Tests of the tailer as a whole, kept out of the shipper's own files: the model check of the
//! reader and the file table (`model`), and the Datadog Agent's own test cases for the
//! processing rules and line handling, run through the tailer's framing and encoding
//! (`agent_cases`).

mod agent_cases;
mod model;
