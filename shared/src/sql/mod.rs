//! SQL text per database engine. Each engine module quotes identifiers with its own single function and
//! renders the planner's engine-agnostic [`crate::plan::Step`]s; adding an engine means adding a module here
//! and one in [`crate::db`].

pub mod postgres;
