//! The generated skeleton: the only file that names generated BPF types.
#![allow(
    clippy::all,
    missing_docs,
    unreachable_pub,
    dead_code,
    non_camel_case_types
)]
include!(concat!(env!("OUT_DIR"), "/profile.skel.rs"));

// SAFETY: plain C structs of integers, any bit pattern is valid.
unsafe impl plain::Plain for types::stack_key {}
// SAFETY: as above.
unsafe impl plain::Plain for types::sample_stats {}
// SAFETY: as above.
unsafe impl plain::Plain for types::process_seen {}
// SAFETY: as above.
unsafe impl plain::Plain for types::process_mapping {}
// SAFETY: as above.
unsafe impl plain::Plain for types::version_key {}
