//! What production brings that the other modules do not (`production`), and memory bounded
//! by configuration under hostile input (`memory`).

mod memory;
mod production;
