//! The pure analytic half of rooflinebench: what a model *must* compute and move.
//!
//! This crate parses model configurations, counts parameters, computes the FLOPs and bytes of
//! every operator of every phase, and holds the roofline math, the hardware-profile schema and
//! the device database. It deliberately does no I/O beyond parsing strings and never measures
//! anything: measured numbers come from `rooflinebench-bench` and the engine, and are joined to
//! these on [`op::OpId`].
#![forbid(unsafe_code)]

pub mod cost;
pub mod devices;
pub mod error;
pub mod format;
pub mod hardware;
pub mod measure;
pub mod op;
pub mod params;
pub mod roofline;
pub mod spec;
pub mod units;
pub mod workload;
pub mod zoo;
