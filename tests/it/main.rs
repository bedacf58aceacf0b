//! End-to-end tests: the real `profile` binary, real BPF, known workloads.
//! They need root and a kernel with BTF; see common::bpf_available.

mod bad_input;
mod browser;
mod common;
mod errors;
mod feed;
mod feed_safety;
mod filters;
mod frames;
mod hardening;
mod interop;
mod messages;
mod parity;
mod process;
mod python;
mod recording;
mod sampler;
mod unwind;
mod whole_stacks;
mod write_safety;
