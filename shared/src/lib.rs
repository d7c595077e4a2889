//! okta-rds-sync: Okta event-hook deliveries in, converged RDS database roles out.
//!
//! The pipeline (DESIGN.md): [`verify`] the delivery, [`okta`] parse it, [`journal`] record facts,
//! [`plan`] the difference (pure), [`converge`] runs that pipeline on each target through its engine in
//! [`db`], [`audit`] every change.
//! Functions (`functions/`) are thin adapters over [`engine::Engine`].

pub mod audit;
pub mod config;
pub mod converge;
pub mod db;
pub mod engine;
pub mod error;
pub mod journal;
pub mod logging;
pub mod naming;
pub mod okta;
pub mod okta_api;
pub mod okta_expression;
pub mod plan;
pub mod queue;
pub mod reconcile;
pub mod secrets;
pub mod startup;
pub mod status_lookup;
pub mod tls;
pub mod verify;
