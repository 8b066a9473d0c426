//! The `etcdsnap` command line as a library: flag definitions, config-file layering, the HTTP
//! client of the supervisor API and rendering. `main.rs` only parses and dispatches; the fuzz
//! targets and tests reach the parsers through here.

pub mod cli;
