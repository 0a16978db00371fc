//! Code inheritance for a fork server, **an opt-in** (`PROCVISOR_FORK_INHERIT_CODE=1`, read
//! by procvisor's fork server): its fork children inherit the page table entries of the code
//! they will run, instead of faulting that code in themselves.
//!
//! `fork` copies the page table entries of a private mapping only if the mapping has an
//! `anon_vma` (it has, or had, an anonymous page); for a clean file mapping such as a program's
//! code it copies none, and the child takes a page fault for each part of the code it runs,
//! though its parent had it all mapped. [`inherit_code`], the one entry point, makes the kernel
//! copy them:
//!
//! 1. it drops the page table entries of every clean, read-only, private file mapping
//!    (`MADV_DONTNEED`: the next touch reads the file's page again);
//! 2. it runs the caller's rehearsal of its children's path, which maps what that path runs;
//! 3. for each file the rehearsal touched, it writes one byte of each of its clean mappings
//!    back onto itself through `/proc/self/mem`: the kernel makes that page a private copy (the
//!    same bytes; the mapping stays read-only), which gives the mapping an `anon_vma`;
//! 4. it drops all the entries again and rehearses once more: what is mapped now is what the
//!    children need and little more, and every later `fork` copies it.
//!
//! Why it is not the default: it depends on kernel internals (when `fork` copies entries, that
//! a `MADV_DONTNEED` keeps a mapping's `anon_vma`) and on security policy (a write through
//! `/proc/self/mem` to a mapping that is not writable, which `proc_mem.force_override=never`
//! forbids), and it measured no faster: a no-op fork child took 24 page faults before its target
//! instead of 74, yet paired runs showed no gain in starts per second, with or without ~1 ms of
//! work per child (procvisor's `docs/decisions/fork-code-inheritance.md`). When it fails, the
//! fork server's children simply map their code themselves, as without it.

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
/// read-only data that `rehearse` maps (`rehearse` runs twice: see the [module docs](self)).
/// Returns how many mappings children inherit.
///
/// On failure (`/proc/self/mem` cannot be opened for writing, or the write is refused, …)
/// nothing is inherited, or only part of it: forks then behave as before, and children fault
/// in their code themselves. Either way this process itself only faults its pages back in.
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

/// [`inherit_code`] writing through `mem`, an open `/proc/self/mem`. Not an entry point: it is
/// public only for the test of the fallback, which opens `mem` read-only to see the failure a
/// policy forbidding the write causes.
///
/// # Safety
/// As [`inherit_code`].
#[doc(hidden)]
pub unsafe fn inherit_code_through(mem: &File, mut rehearse: impl FnMut()) -> io::Result<usize> {
    let mappings = clean_read_only_mappings()?;
    // Opened before the entries are dropped: finding which pages came back maps no more code
    // than a `pread`.
    let pagemap = File::open("/proc/self/pagemap")?;
    // SAFETY: sysconf has no preconditions.
    let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return Err(io::Error::other("the page size is unknown")),
    };
    // SAFETY: as the caller promises; the mappings hold only the file's bytes (they have no
    // anonymous page, resident or swapped, and nothing has written to them since: they are
    // read-only and no other thread runs).
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
    // SAFETY: as the caller promises; the mappings hold only the file's bytes and the
    // same-byte copies just made.
    unsafe { drop_entries(&mappings) }?;
    rehearse();
    Ok(inherited.len())
}

/// Whether this process's page table maps any page of `m` (bit 63 of its
/// `/proc/self/pagemap` entry, one `u64` per page).
fn any_page_mapped(pagemap: &File, page_size: usize, m: &Mapping) -> io::Result<bool> {
    const PRESENT: u64 = 1 << 63;
    let mut entries = [0u8; 8 * 512];
    let mut page = m.start / page_size;
    let end = m.end / page_size;
    while page < end {
        let bytes = &mut entries[..8 * (end - page).min(512)];
        pagemap.read_exact_at(bytes, page as u64 * 8)?;
        let present = bytes.chunks_exact(8).any(|entry| {
            let mut word = [0u8; 8];
            word.copy_from_slice(entry);
            u64::from_ne_bytes(word) & PRESENT != 0
        });
        if present {
            return Ok(true);
        }
        page += bytes.len() / 8;
    }
    Ok(false)
}

/// Drops every page table entry of `mappings` (`MADV_DONTNEED`).
///
/// # Safety
/// As [`inherit_code`]; and every page of the mappings must hold the file's bytes (their own
/// or a same-byte copy), so that dropping it only makes the next touch read the file again.
unsafe fn drop_entries(mappings: &[Mapping]) -> io::Result<()> {
    for m in mappings {
        // SAFETY: the range is one whole private file mapping whose pages all hold the file's
        // bytes, as the caller promises; no other thread runs to see them missing.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
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
