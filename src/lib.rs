//! rs-profile: an eBPF CPU profiler (a port of bcc's profile.py) that turns
//! its samples into flame-graph frames.
//!
//! Data flows one way: [`sampler`] -> [`collector`] -> [`symbolizer`] ->
//! [`profile`] -> [`output`]. Recordings ([`recording`]) and imports
//! ([`import`]) produce the same profiles, so they reach the same outputs;
//! [`export`] writes them in other tools' formats.

pub mod cli;
pub mod collector;
pub mod encode;
pub mod export;
pub mod import;
pub mod memory;
pub mod offline;
pub mod output;
pub mod pipeline;
pub mod process;
pub mod profile;
pub mod python;
pub mod recording;
pub mod safe_file;
pub mod sampler;
pub mod symbolizer;
pub mod unwind;
