//! rs-profile: an eBPF CPU profiler (a port of bcc's profile.py) that turns
//! its samples into flame-graph frames.
//!
//! Data flows one way: [`sampler`] -> [`collector`] -> [`symbolizer`] ->
//! [`profile`] -> [`output`].

pub mod cli;
pub mod collector;
pub mod output;
pub mod pipeline;
pub mod profile;
pub mod sampler;
pub mod symbolizer;
