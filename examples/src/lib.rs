//! Runnable examples of cfutures: one module per scenario of the `concurrent.futures`
//! tutorials, shared by the example programs (`cargo run --example NAME`), the `tour`
//! (all of them, timed) and `compare` (the performance workloads, side by side with Python).

pub mod compare;
pub mod custom;
pub mod report;
pub mod scenarios;
pub mod site;
pub mod timeline;
pub mod tour;
pub mod work;

/// The README's Rust examples, compiled and run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
