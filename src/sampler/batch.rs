//! Draining a BPF hash map with `bpf_map_lookup_and_delete_batch`, in
//! chunks, into buffers kept across drains.
//!
//! libbpf-rs's batch iterator allocates and zeroes `count x value size`
//! bytes per call and treats a short batch as the last one (see
//! shared/notes/bpf-facts.md), so it had to be asked for the whole map at
//! once: 16 MB zeroed per interval for the walked-stack map. This calls
//! libbpf directly with modest, reused buffers and follows the kernel's
//! contract: ENOENT ends the walk (with the entries it returned), ENOSPC
//! (a bucket larger than the buffer, nothing returned) retries with a
//! larger buffer, EINTR retries.

use std::os::fd::AsRawFd;

use anyhow::{bail, Result};
use libbpf_rs::{libbpf_sys, MapCore};

/// Entries fetched per call at first.
const CHUNK: usize = 256;

/// Buffers for one map, reused by every drain.
#[derive(Default)]
pub struct BatchBuffers {
    keys: Vec<u8>,
    values: Vec<u8>,
    chunk: usize,
}

/// Reads and deletes every entry of a hash map, calling `each(key, value)`.
/// Returns how many entries there were.
pub fn drain_hash<M: MapCore>(
    map: &M,
    bufs: &mut BatchBuffers,
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<usize> {
    let key_size = map.key_size() as usize;
    let value_size = map.value_size() as usize;
    if bufs.chunk == 0 {
        bufs.chunk = CHUNK.min(map.max_entries().max(1) as usize);
    }
    let opts = libbpf_sys::bpf_map_batch_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_batch_opts>() as _,
        ..Default::default()
    };
    // The batch position tokens: at least a key's size (hash maps use a
    // u32 bucket index).
    let token_size = key_size.max(8);
    let mut prev = vec![0u8; token_size];
    let mut next = vec![0u8; token_size];
    let mut first = true;
    let mut total = 0;
    loop {
        if bufs.keys.len() < bufs.chunk * key_size {
            bufs.keys.resize(bufs.chunk * key_size, 0);
        }
        if bufs.values.len() < bufs.chunk * value_size {
            bufs.values.resize(bufs.chunk * value_size, 0);
        }
        let mut count = bufs.chunk as u32;
        // SAFETY: the buffers hold `count` keys and values and the tokens
        // `token_size` bytes; libbpf writes no more than that.
        let ret = unsafe {
            libbpf_sys::bpf_map_lookup_and_delete_batch(
                map.as_fd().as_raw_fd(),
                if first {
                    std::ptr::null_mut()
                } else {
                    prev.as_mut_ptr().cast()
                },
                next.as_mut_ptr().cast(),
                bufs.keys.as_mut_ptr().cast(),
                bufs.values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let err = if ret < 0 { -ret } else { 0 };
        if err == libc::EINTR {
            continue;
        }
        if err == libc::ENOSPC && count == 0 {
            // One bucket holds more entries than the buffer: grow it.
            bufs.chunk *= 2;
            if bufs.chunk > map.max_entries().max(1) as usize * 2 {
                bail!(
                    "failed to drain map {}: ENOSPC",
                    map.name().to_string_lossy()
                );
            }
            continue;
        }
        if err != 0 && err != libc::ENOENT {
            bail!(
                "failed to drain map {}: {}",
                map.name().to_string_lossy(),
                std::io::Error::from_raw_os_error(err)
            );
        }
        for i in 0..count as usize {
            each(
                &bufs.keys[i * key_size..(i + 1) * key_size],
                &bufs.values[i * value_size..(i + 1) * value_size],
            );
        }
        total += count as usize;
        if err == libc::ENOENT {
            return Ok(total);
        }
        std::mem::swap(&mut prev, &mut next);
        first = false;
    }
}
