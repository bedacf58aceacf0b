//! Compiles the BPF sampler (bpf/profile.bpf.c) CO-RE against the committed
//! bpf/vmlinux.h and generates its libbpf-rs skeleton into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/profile.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"))
        .join("profile.skel.rs");
    SkeletonBuilder::new()
        .source(SRC)
        // -mcpu=v3: atomic fetch-and-add with a result (address-space
        // numbers); every kernel with the BTF we require runs v3 programs.
        .clang_args(["-Ibpf", "-Wall", "-mcpu=v3"])
        .build_and_generate(&out)
        .unwrap_or_else(|err| panic!("failed to build the BPF sampler {SRC}: {err:#}"));
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed=bpf/profile.h");
    println!("cargo:rerun-if-changed=bpf/unwinder.bpf.h");
    println!("cargo:rerun-if-changed=bpf/mappings.bpf.h");
    println!("cargo:rerun-if-changed=bpf/python.bpf.h");
    println!("cargo:rerun-if-changed=bpf/vmlinux.h");
}
