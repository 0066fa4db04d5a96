//! The tuning changes where glibc puts a large block: an 8 MiB buffer is mapped on its own
//! (counted in `mallinfo2().hblks`) before the tuning and comes from the heap after it.
//! One test in its own binary, because mallopt changes the whole process.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn a_large_block_comes_from_the_heap_after_tuning() {
    use mixlab_malloc::{Tuning, keep_freed_memory};

    // Counts the blocks glibc has mapped with mmap while `len` bytes are held.
    fn mapped_while_holding(len: usize) -> usize {
        let buffer = vec![1u8; len];
        let mapped = mapped_blocks();
        std::hint::black_box(&buffer);
        mapped
    }
    #[allow(unsafe_code)]
    fn mapped_blocks() -> usize {
        // SAFETY: mallinfo2 reads malloc's statistics and returns them by value.
        unsafe { libc::mallinfo2() }.hblks
    }

    if std::env::var_os(mixlab_malloc::ENV_VAR).is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        eprintln!("skipped: MIXLAB_MALLOC or GLIBC_TUNABLES is set in this environment");
        return;
    }
    let idle = mapped_blocks();
    // glibc's default threshold starts at 128 KiB, so an 8 MiB block is its own mapping.
    assert_eq!(mapped_while_holding(8 << 20), idle + 1);
    // Freeing it raised glibc's dynamic threshold to about 8 MiB, so the next probe is larger:
    // 16 MiB would be mapped again without the tuning (the threshold is then 32 MiB).
    assert_eq!(keep_freed_memory(), Tuning::Applied);
    assert_eq!(mapped_while_holding(16 << 20), idle);
}
