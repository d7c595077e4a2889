//! The library behind the `okta-rds-sync` command-line tool (`src/main.rs`): token signing, client
//! invocations, SSM port forwarding and the audit trail reader, kept apart from argument parsing so that
//! tests can call them (e.g. sign at a pinned time).

pub mod audit;
pub mod client;
pub mod ssm;
pub mod token;
