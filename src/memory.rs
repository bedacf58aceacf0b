//! What the allocator does with freed memory. Frames want it kept (each
//! allocates and frees megabytes of tree); a long live run wants it handed
//! back at set points (after an interval, after unwind tables were built),
//! so that its RSS is what it holds, not what it once held.

/// Makes the allocator keep freed memory for reuse instead of handing it
/// back to the kernel: each frame allocates and frees a few megabytes of
/// tree, and glibc's defaults served them as fresh pages every time (8 MB
/// of page faults per 1080p frame of a 2,000-stack profile, a sixth of the
/// CPU of `render`). Memory stays bounded by the frames in flight.
pub fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: mallopt only sets allocator parameters; it is called
        // once, before the render threads allocate.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        }
    });
}

/// Makes every thread allocate from one arena, for a sampling run. glibc
/// gives threads arenas of their own (up to eight per CPU), and a long run
/// under a busy load left free memory that `malloc_trim` cannot hand back
/// (pages partly in use) in each: the heap live by heaptrack stayed flat
/// while anonymous memory grew, a thread arena by 6 MB in 11 minutes.
/// With one arena, side by side under one load for 12 minutes, anonymous
/// memory was 59-61 MB against 75-79 and grew 0.32 MB a minute against
/// 0.51. The threads that allocate much (the processing thread, two
/// render threads, the live page's workers) take turns on 2 CPUs at one
/// frame a second; the small allocations most of them make come from
/// glibc's per-thread caches without the arena's lock. `render`, a batch
/// job that renders on every CPU, keeps glibc's arenas. Called before any
/// thread is started.
pub fn one_arena() {
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives the memory freed since the last call back to the kernel, from
/// every allocator arena. A live run calls it once per interval: with
/// [`keep_freed_memory`]'s thresholds each of the allocator's arenas (one
/// per thread before [`one_arena`]: render threads, the processing thread,
/// the live page's workers) otherwise kept what it once held, and a soak under a busy load sat at
/// 140 MB of free memory in arenas after a minute. `render` does not call
/// it: a batch job, it keeps the pages for speed.
pub fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free memory to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
