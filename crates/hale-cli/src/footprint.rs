//! Keeping the daemon small once it runs: the code that only start-up needs (argument and
//! config parsing, validation, setup) is released from memory after start-up.
//!
//! After the components are registered, the daemon asks the kernel to page its executable's
//! read-only mappings out (`MADV_PAGEOUT`). The pages stay in the page cache and come back on
//! first use (a minor fault): steady-state supervision then holds only the code it actually
//! runs. The daemon does it again 20 to 40 s after the last API request, so that the code a
//! `hale status` or a scrape brought in (the HTTP server, JSON) does not stay resident. It is advice: on a kernel without it nothing changes. Then the heap pages start-up
//! freed are handed back (`malloc_trim`). `HALE_KEEP_CODE=1` turns both off, for side-by-side
//! numbers.

use std::fs;

/// Release start-up code pages of the running executable. Returns the bytes advised.
pub fn release_startup_code() -> usize {
    if std::env::var_os("HALE_KEEP_CODE").is_some_and(|v| v == "1") {
        return 0;
    }
    let Ok(exe) = fs::read_link("/proc/self/exe") else { return 0 };
    let Ok(maps) = fs::read_to_string("/proc/self/maps") else { return 0 };
    let exe = exe.to_string_lossy();
    let mut advised = 0;
    for line in maps.lines() {
        // "start-end perms offset dev inode path"
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        let Some(path) = fields.nth(3) else { continue };
        // Read-only or executable file mappings only: never writable data.
        if path != exe || perms.contains('w') {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) =
            (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        else {
            continue;
        };
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else { continue };
        let len = end - start;
        // SAFETY: the range is a whole, read-only, file-backed mapping of our own executable;
        // advice does not change its contents, only which pages are resident.
        unsafe {
            let _ = nix::sys::mman::madvise(addr, len, MADV_PAGEOUT);
        }
        advised += len;
    }
    advised
}

/// Give the heap pages that start-up used and freed (the config file's parse tree, the
/// validation pass) back to the kernel. glibc keeps freed memory in its arenas, where it
/// would stay resident for the daemon's whole life; `malloc_trim(0)` returns every whole free
/// page, also from the middle of the heap. Other C libraries: nothing to do.
pub fn release_free_heap() {
    if std::env::var_os("HALE_KEEP_CODE").is_some_and(|v| v == "1") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free; it is thread-safe.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// `MADV_PAGEOUT` (Linux 5.4).
const MADV_PAGEOUT: nix::sys::mman::MmapAdvise = nix::sys::mman::MmapAdvise::MADV_PAGEOUT;
