//! Integration and end-to-end tests against a real kube-apiserver (+ etcd) and moto over HTTP.
//! One test binary: the control plane starts once per run (see `support`).

mod admission;
mod aws_emulator;
mod chart;
mod control_plane;
mod emulator;
mod engine;
mod events;
mod identity;
mod image_repository;
mod leader;
mod network;
mod observe;
mod operations;
mod operator;
mod pipeline;
mod projects;
mod reliability;
mod runs;
mod runtime;
mod scale;
mod support;
mod tenancy;
