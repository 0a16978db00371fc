//! Code inheritance for a fork server (opt-in): letting its fork children inherit the page
//! table entries of the code they will run.
//!
//! `fork` copies the page table entries of a mapping only if the mapping has anonymous pages
//! (an `anon_vma`); for a clean file mapping such as a program's code it copies none, and the
//! child takes a page fault for each part of the code it runs, though the parent had it all
//! mapped. For a fork server whose children all run the same short path, those faults are a
//! large part of a no-op child's start (a few percent of a child that works ~1 ms).
//!
//! [`inherit_code`], the one entry point, makes the kernel copy them: it drops every page table
//! entry of the clean read-only file mappings (`MADV_DONTNEED`), runs the caller's rehearsal of
//! its children's path (which shows which files they use), and writes, through
//! `/proc/self/mem`, one byte of each of those files' mappings back onto itself: the kernel
//! makes that page an anonymous copy (the same bytes; the code is never writable), which gives
//! the mapping an `anon_vma`, and from then on every fork copies its entries. It drops all the
//! entries once more and rehearses again: what is mapped then is what the children need and
//! little more (each entry costs every fork a copy and every child's exit a tear-down).
//!
//! This depends on kernel internals (when `fork` copies entries) and on security policy (a
//! write through `/proc/self/mem` to a mapping that is not writable, which
//! `proc_mem.force_override=never` forbids): it is an optimisation that must be asked for, and
//! when it fails the caller's children simply map their code themselves.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;

/// One mapping of `/proc/self/smaps`: its range and its file.
struct Mapping {
    start: usize,
    end: usize,
    /// The file's device and inode, as `/proc/self/maps` writes them.
    file: String,
}

/// Has every later `fork` of this process copy the page table entries of the code and
/// read-only data that `rehearse` runs (called twice: see the [module docs](self)). Returns how
/// many mappings children inherit.
///
/// On failure (`/proc/self/mem` cannot be written, …) nothing is inherited, or only part of
/// it: forks then behave as before, and children fault in their code themselves.
///
/// # Safety
/// No other thread may run: the pages of the code being executed are unmapped for a moment
/// (the calling thread faults them back in; another thread in the middle of a `read` into one
/// of them would see an `EFAULT`).
pub unsafe fn inherit_code(rehearse: impl FnMut()) -> io::Result<usize> {
    let mem = File::options()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    // SAFETY: as the caller promises.
    unsafe { inherit_code_through(&mem, rehearse) }
}

/// [`inherit_code`] writing through `mem`, an open `/proc/self/mem`: a test opens it read-only
/// to see the failure the system's policy would cause.
///
/// # Safety
/// As [`inherit_code`].
#[doc(hidden)]
pub unsafe fn inherit_code_through(mem: &File, mut rehearse: impl FnMut()) -> io::Result<usize> {
    let mappings = clean_read_only_mappings()?;
    // Opened before the pages are dropped: finding which pages came back maps no more code
    // than a `pread`.
    let pagemap = File::open("/proc/self/pagemap")?;
    // SAFETY: sysconf has no preconditions.
    let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return Err(io::Error::other("the page size is unknown")),
    };
    // SAFETY: as the caller promises.
    unsafe { drop_entries(&mappings) }?;
    rehearse();
    // A file with a mapping touched has all its clean mappings inherited: what its code reads
    // later (its read-only data) is then inherited too as it is touched.
    let mut touched_files = Vec::new();
    for m in &mappings {
        if !touched_files.contains(&m.file) && any_page_mapped(&pagemap, page_size, m)? {
            touched_files.push(m.file.clone());
        }
    }
    let inherited: Vec<&Mapping> = mappings
        .iter()
        .filter(|m| touched_files.contains(&m.file))
        .collect();
    for m in &inherited {
        let mut byte = [0u8; 1];
        mem.read_exact_at(&mut byte, m.start as u64)?;
        mem.write_all_at(&byte, m.start as u64)?;
    }
    // What the first run and the writing mapped is not inherited: only what the second maps.
    // SAFETY: as the caller promises; the mappings hold no private page but the same-byte
    // copies just made.
    unsafe { drop_entries(&mappings) }?;
    rehearse();
    Ok(inherited.len())
}

/// Whether this process's page table maps any page of `m` (bit 63 of its
/// `/proc/self/pagemap` entry).
fn any_page_mapped(pagemap: &File, page_size: usize, m: &Mapping) -> io::Result<bool> {
    const PRESENT: u64 = 1 << 63;
    let mut entries = [0u64; 512];
    let mut page = m.start / page_size;
    let end = m.end / page_size;
    while page < end {
        let count = (end - page).min(entries.len());
        // SAFETY: a u64 array is plain bytes of the same size.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(entries.as_mut_ptr().cast::<u8>(), count * 8) };
        pagemap.read_exact_at(bytes, page as u64 * 8)?;
        if entries[..count].iter().any(|entry| entry & PRESENT != 0) {
            return Ok(true);
        }
        page += count;
    }
    Ok(false)
}

/// `madvise(start, len, advice)`.
///
/// # Safety
/// As `madvise` itself: the advice must not break what the range's users rely on.
unsafe fn advise(start: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
    // SAFETY: as the caller promises.
    match unsafe { libc::madvise(start as *mut libc::c_void, len, advice) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Drops every page table entry of `mappings`.
///
/// # Safety
/// As [`inherit_code`]; the mappings hold no private page but the same-byte copies made by
/// [`inherit_code_through`].
unsafe fn drop_entries(mappings: &[Mapping]) -> io::Result<()> {
    for m in mappings {
        // SAFETY: the range is one whole private file mapping whose pages all hold the file's
        // bytes; dropping its entries only makes the next touch read the file again. The
        // caller guarantees no other thread runs.
        unsafe { advise(m.start, m.end - m.start, libc::MADV_DONTNEED) }?;
    }
    Ok(())
}

/// The private, non-writable file mappings that hold no anonymous page, from
/// `/proc/self/smaps`.
fn clean_read_only_mappings() -> io::Result<Vec<Mapping>> {
    clean_mappings_in(BufReader::new(File::open("/proc/self/smaps")?))
}

/// The candidates of an `smaps` text whose `Anonymous:` and `Swap:` are both zero (a private
/// page swapped out is not counted in `Anonymous:`, and dropping it would lose it).
fn clean_mappings_in(smaps: impl BufRead) -> io::Result<Vec<Mapping>> {
    /// A candidate being read, with how many of its two figures have been read as zero.
    struct Reading {
        mapping: Mapping,
        zero_figures: u8,
    }
    let mut found = Vec::new();
    let mut current: Option<Reading> = None;
    let mut finish = |reading: Option<Reading>| {
        if let Some(r) = reading.filter(|r| r.zero_figures == 2) {
            found.push(r.mapping);
        }
    };
    for line in smaps.lines() {
        let line = line?;
        if let Some(header) = parse_header(&line) {
            finish(current.take());
            current = header.map(|mapping| Reading {
                mapping,
                zero_figures: 0,
            });
        } else if let Some(r) = current.as_mut() {
            let figure = line
                .strip_prefix("Anonymous:")
                .or_else(|| line.strip_prefix("Swap:"));
            if figure.is_some_and(|kb| parse_kb(kb) == 0) {
                r.zero_figures += 1;
            }
        }
    }
    finish(current.take());
    Ok(found)
}

/// `   932 kB` → 932 (an unreadable figure counts as not zero).
fn parse_kb(field: &str) -> u64 {
    field
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

/// A mapping's header line (`start-end perms offset dev inode path`): `Some(Some(m))` for a
/// candidate (private, readable, not writable, backed by a file), `Some(None)` for another
/// mapping, `None` for the attribute lines that follow a header.
fn parse_header(line: &str) -> Option<Option<Mapping>> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let device = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("");
    let candidate = perms.len() == 4
        && perms[0] == b'r'
        && perms[1] == b'-'
        && perms[3] == b'p'
        && inode != "0"
        && path.starts_with('/');
    Some(candidate.then_some(Mapping {
        start,
        end,
        file: format!("{device} {inode}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_told_from_attributes() {
        let code = "5629f2200000-5629f2300000 r-xp 000ca000 fe:00 5309090    /bin/prog";
        let m = parse_header(code).unwrap().unwrap();
        assert_eq!((m.start, m.end), (0x5629f2200000, 0x5629f2300000));
        let data = "5629f2300000-5629f2302000 rw-p 00327000 fe:00 5309090    /bin/prog";
        assert!(parse_header(data).unwrap().is_none());
        let anon = "7f6609f91000-7f6609f93000 r--p 00000000 00:00 0 ";
        assert!(parse_header(anon).unwrap().is_none());
        let vdso = "7f660a286000-7f660a288000 r-xp 00000000 00:00 0      [vdso]";
        assert!(parse_header(vdso).unwrap().is_none());
        assert!(parse_header("Rss:                 932 kB").is_none());
        assert!(parse_header("VmFlags: rd ex mr mw me sd").is_none());
    }

    #[test]
    fn only_mappings_without_private_pages_resident_or_swapped_are_clean() {
        let smaps = "\
5629f2200000-5629f2300000 r-xp 000ca000 fe:00 77    /bin/prog
Rss:                 932 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me sd
5629f2300000-5629f2310000 r--p 00317000 fe:00 77    /bin/prog
Anonymous:            68 kB
Swap:                  0 kB
5629f2310000-5629f2320000 r--p 00327000 fe:00 77    /bin/prog
Anonymous:             0 kB
Swap:                  4 kB
5629f2320000-5629f2322000 rw-p 00337000 fe:00 77    /bin/prog
Anonymous:             0 kB
Swap:                  0 kB
7f6609f91000-7f6609fb9000 r--p 00000000 fe:00 12    /lib/libc.so.6
Anonymous:             0 kB
Swap:                  0 kB
7f6609fb9000-7f6609fc9000 r-xp 00028000 fe:00 12    /lib/libc.so.6
Anonymous:             4 kB
Swap:                  0 kB
";
        let found = clean_mappings_in(smaps.as_bytes()).unwrap();
        let starts: Vec<usize> = found.iter().map(|m| m.start).collect();
        assert_eq!(starts, [0x5629f2200000, 0x7f6609f91000]);
        assert_eq!(found[0].file, "fe:00 77");
        assert_eq!(found[1].file, "fe:00 12");
    }
}
