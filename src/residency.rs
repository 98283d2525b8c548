//! What sidelog keeps resident: once start-up is over, the pages of its own code and
//! constants are handed back to the kernel, so that only the code that keeps running stays
//! mapped.
//!
//! Why: the kernel maps code 64 KB (or a whole page-cache folio) at a time around each page
//! that runs, and keeps it mapped until memory runs short. Argument and configuration parsing,
//! logger set-up and the first connection run once, but touch most of the binary, so without
//! this a quiet sidecar shows its whole binary in its resident set for the life of the Pod.
//! After `MADV_DONTNEED` on the read-only segments, code that runs again is mapped back from
//! the page cache (a minor fault, no disk read while the binary is cached).
//!
//! Only segments the program never writes are touched: the executable's loadable segments
//! without write permission (code, constants, unwind tables). Writable and RELRO segments hold
//! relocated data that the file does not have, and are left alone, as are shared libraries
//! (their pages are shared with every other process using them). Read-only segments are only
//! ever written by text relocations, which sidelog's builds never have, and by a debugger's
//! breakpoint or a uprobe: one set before the release goes with its page, which is why it
//! happens once, early.

/// Hands back the pages of the executable's read-only segments; returns how many bytes were
/// advised. Safe to call at any time from any thread: a page that is needed again is mapped
/// back on first use.
#[cfg(target_os = "linux")]
pub fn release_code_pages() -> usize {
    let segments = read_only_segments();
    let page = page_size();
    segments
        .iter()
        .filter_map(|&(start, len)| page_inward(start, len, page))
        .map(|(start, len)| {
            // SAFETY: the range is whole pages inside a read-only, file-backed mapping of the
            // executable that is never written, so dropping the pages loses nothing: each is
            // read back from the file on next use.
            let rc = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            if rc == 0 { len } else { 0 }
        })
        .sum()
}

#[cfg(not(target_os = "linux"))]
pub fn release_code_pages() -> usize {
    0
}

/// The page-aligned part of `[start, start + len)`: partial pages at either end may be shared
/// with a neighbouring segment, so they are left out.
fn page_inward(start: usize, len: usize, page: usize) -> Option<(usize, usize)> {
    let first = start.checked_add(page - 1)? / page * page;
    let end = start.checked_add(len)? / page * page;
    (end > first).then(|| (first, end - first))
}

#[cfg(target_os = "linux")]
fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    }
}

/// `(address, length)` of the executable's loadable segments that are not writable.
#[cfg(target_os = "linux")]
fn read_only_segments() -> Vec<(usize, usize)> {
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `dl_phdr_info` whose program headers stay mapped
        // for the call, and `data` is the vector handed to `dl_iterate_phdr` below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<(usize, usize)>)) };
        let headers = if info.dlpi_phdr.is_null() {
            &[][..]
        } else {
            // SAFETY: `dlpi_phnum` headers start at `dlpi_phdr`.
            unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) }
        };
        out.extend(
            headers
                .iter()
                .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
                .map(|h| {
                    (
                        (info.dlpi_addr as usize).wrapping_add(h.p_vaddr as usize),
                        h.p_memsz as usize,
                    )
                }),
        );
        // The executable comes first; the shared libraries after it are left alone.
        1
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    // SAFETY: `visit` matches the callback type and only writes to `out`, which outlives the
    // call.
    unsafe { libc::dl_iterate_phdr(Some(visit), &mut out as *mut _ as *mut libc::c_void) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_inward_keeps_whole_pages_only() {
        assert_eq!(page_inward(4096, 8192, 4096), Some((4096, 8192)));
        assert_eq!(page_inward(4000, 8192, 4096), Some((4096, 4096)));
        assert_eq!(page_inward(4097, 4096, 4096), None);
        assert_eq!(page_inward(usize::MAX - 10, 100, 4096), None);
    }

    /// Resident kB of the executable's mappings that are not writable, from smaps.
    #[cfg(target_os = "linux")]
    fn resident_read_only_kb() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").expect("own executable");
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut ours = false;
        let mut kb = 0;
        for line in smaps.lines() {
            // A mapping's header: address range, permissions, offset, device, inode, path.
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                ["Rss:", value, ..] if ours => kb += value.parse::<u64>().unwrap_or(0),
                [range, perms, _, _, _, path, ..] if range.contains('-') => {
                    ours = !perms.contains('w') && std::path::Path::new(path) == exe;
                }
                [range, ..] if range.contains('-') => ours = false,
                _ => {}
            }
        }
        kb
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_pages_leave_the_resident_set_and_code_still_runs() {
        let before = resident_read_only_kb();
        let released = release_code_pages();
        let after = resident_read_only_kb();
        assert!(released > 0, "nothing released");
        assert!(
            after < before,
            "resident read-only kB before {before}, after {after}"
        );
        // Code that ran before runs again, mapped back from the file.
        assert_eq!(page_inward(4000, 8192, 4096), Some((4096, 4096)));
        assert!(resident_read_only_kb() > 0);
    }
}
