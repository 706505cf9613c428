//! delivery-operator: a Kubernetes operator that turns a `DeliveryPipeline` resource into a
//! complete container delivery pipeline in AWS and keeps it in that state.
//!
//! Layout: [`api`] (the CRD types), [`desired`] (pure rendering of the desired AWS state),
//! [`aws`] (one module per AWS subresource behind [`engine::Subresource`]), [`engine`]
//! (ordering, conditions, deletion), [`controller`] (kube-runtime wiring), [`metrics`].

pub mod api;
pub mod aws;
pub mod controller;
pub mod desired;
pub mod engine;
pub mod metrics;
