//! delivery-operator: a Kubernetes operator that turns a `DeliveryPipeline` resource into a
//! complete container delivery pipeline in AWS and keeps it in that state.
//!
//! Layout, in the direction data flows: [`api`] (the CRD types) -> [`desired`] (names, tags,
//! policies shared by every group) -> [`groups`] (one folder per group of AWS resources:
//! desired, diff, AWS calls, behind one contract, and the one registry) -> [`engine`] (the
//! dependency graph, concurrency, in-progress, deletion, conditions; knows neither AWS nor the
//! API) -> [`controller`] (sessions, engine run, status, events). [`render`] shows people the
//! offline plan and an observe-only run's drift. [`aws`] holds sessions, error classes and tag
//! adapters (it knows nothing of the spec); [`metrics`] the Prometheus metrics; [`leader`]
//! leader election on a Lease, so that one replica reconciles; [`cli`] the command line.

pub mod api;
pub mod aws;
pub mod cli;
pub mod controller;
pub mod desired;
pub mod engine;
pub mod groups;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod tenancy;
