//! Letting a fork child inherit the page table entries of the code it will run.
//!
//! `fork` copies the page table entries of a mapping only if the mapping has anonymous pages
//! (an `anon_vma`); for a clean file mapping such as a program's code it copies none, and the
//! child takes a page fault for each part of the code it runs, though the parent had it all
//! mapped. For a fork server whose children all run the same short path, those faults are
//! most of a child's start.
//!
//! Two steps make the kernel copy them. [`drop_code_pages`] drops every page table entry of the
//! clean read-only file mappings (`MADV_DONTNEED`); the caller then runs what its children will
//! run, which shows which files they use. [`CodeMappings::inherit_touched`] then writes, through
//! `/proc/self/mem`, one byte of each of those files' mappings back onto itself: the kernel
//! makes that page an anonymous copy (the same bytes; the code is never writable), which gives
//! the mapping an `anon_vma`, and from then on every fork copies its entries. It drops all the
//! entries once more, and the caller runs its children's path again: what is mapped then is
//! what they need and no more (each entry costs every fork a copy and every child's exit a
//! tear-down: about 0.15 µs together, measured, so a few hundred are a tenth of a fork).
//!
//! "No more" takes one more step: a fault on a file mapping maps up to 16 pages around the
//! one touched (*fault-around*), but never past the mapping's bounds. So for that second run,
//! [`CodeMappings::inherit_touched`] splits each inherited mapping into one-page mappings
//! (`MADV_DONTDUMP` on every other page: a flag that only concerns core dumps), and
//! [`InheritedCode::rejoin`] clears the flag afterwards, which merges them back: each fault of
//! that run maps exactly the page touched.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::FileExt;

/// One mapping of `/proc/self/smaps`: its range and its file.
#[derive(Clone)]
struct Mapping {
    start: usize,
    end: usize,
    /// The file's device and inode, as `/proc/self/maps` writes them.
    file: String,
}

/// What [`drop_code_pages`] found and opened, for [`CodeMappings::inherit_touched`].
pub struct CodeMappings {
    mappings: Vec<Mapping>,
    /// `/proc/self/pagemap`, opened before the pages were dropped: so that finding which
    /// pages came back maps no more code than a `pread`.
    pagemap: File,
    /// `/proc/self/mem`, to write through.
    mem: File,
    /// The unit of `/proc/self/pagemap`.
    page_size: usize,
}

/// The first step: drops the page table entries of every clean, read-only, private file
/// mapping (code and read-only data of the program and its libraries: they are read back from
/// the page cache as they are touched).
///
/// Mappings with anonymous pages already, resident or swapped (the relocated read-only data,
/// `RELRO`), are left alone: fork copies them anyway, and dropping their pages would undo the
/// relocations.
///
/// # Safety
/// No other thread may run: the pages of the code being executed are unmapped for a moment
/// (the calling thread faults them back in; another thread in the middle of a `read` into one
/// of them would see an `EFAULT`).
pub unsafe fn drop_code_pages() -> io::Result<CodeMappings> {
    let mappings = clean_read_only_mappings()?;
    let pagemap = File::open("/proc/self/pagemap")?;
    let mem = File::options()
        .read(true)
        .write(true)
        .open("/proc/self/mem")?;
    // SAFETY: as the caller promises.
    unsafe { drop_entries(&mappings) }?;
    // SAFETY: sysconf has no preconditions.
    let page_size = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        size if size > 0 => size as usize,
        _ => return Err(io::Error::other("the page size is unknown")),
    };
    Ok(CodeMappings {
        mappings,
        pagemap,
        mem,
        page_size,
    })
}

impl CodeMappings {
    /// The second step: makes every later `fork` copy the page table entries of the mappings
    /// that have pages mapped again (touched since [`drop_code_pages`]), by writing one byte
    /// of each back onto itself through `/proc/self/mem`: the kernel makes that page an
    /// anonymous copy (the same bytes; the mapping is never writable), which gives the
    /// mapping the `anon_vma` that fork looks for.
    ///
    /// A file with one such mapping has all its clean mappings inherited: what its code reads
    /// later (its read-only data) is then inherited too as it is touched.
    ///
    /// Then it splits the inherited mappings into one-page mappings and drops the entries of
    /// all the mappings again, so that what is mapped from then on is only what the caller
    /// touches next (it runs its children's path again), page by page: what the first run and
    /// this function itself mapped is not inherited. The caller then calls
    /// [`InheritedCode::rejoin`].
    ///
    /// # Safety
    /// As [`drop_code_pages`]: no other thread may run.
    pub unsafe fn inherit_touched(self) -> io::Result<InheritedCode> {
        let mut touched_files = Vec::new();
        for m in &self.mappings {
            if !touched_files.contains(&m.file) && self.any_page_mapped(m)? {
                touched_files.push(m.file.clone());
            }
        }
        let (inherited, others): (Vec<Mapping>, Vec<Mapping>) = self
            .mappings
            .into_iter()
            .partition(|m| touched_files.contains(&m.file));
        for m in &inherited {
            let mut byte = [0u8; 1];
            self.mem.read_exact_at(&mut byte, m.start as u64)?;
            self.mem.write_all_at(&byte, m.start as u64)?;
        }
        let code = InheritedCode {
            inherited,
            page_size: self.page_size,
        };
        // SAFETY: as the caller promises.
        let dropped = unsafe {
            code.split()
                .and_then(|()| drop_entries(&code.inherited))
                .and_then(|()| drop_entries(&others))
        };
        if let Err(e) = dropped {
            // No mapping may stay split: each would cost every fork a copy of its own.
            // SAFETY: as the caller promises.
            let _ = unsafe { code.rejoin() };
            return Err(e);
        }
        Ok(code)
    }

    /// Whether any page of `m` is mapped.
    fn any_page_mapped(&self, m: &Mapping) -> io::Result<bool> {
        let mut any = false;
        for_each_mapped_page(&self.pagemap, self.page_size, m, |_| {
            any = true;
            false
        })?;
        Ok(any)
    }
}

/// Calls `visit` with the address of each page of `m` that this process's page table maps
/// (bit 63 of its `/proc/self/pagemap` entry), in order, until it returns false.
fn for_each_mapped_page(
    pagemap: &File,
    page_size: usize,
    m: &Mapping,
    mut visit: impl FnMut(usize) -> bool,
) -> io::Result<()> {
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
        for (i, entry) in entries[..count].iter().enumerate() {
            if entry & PRESENT != 0 && !visit((page + i) * page_size) {
                return Ok(());
            }
        }
        page += count;
    }
    Ok(())
}

/// The mappings every fork now copies the entries of, split into one-page mappings by
/// [`CodeMappings::inherit_touched`] until [`rejoin`](InheritedCode::rejoin) merges them.
#[derive(Clone)]
pub struct InheritedCode {
    inherited: Vec<Mapping>,
    page_size: usize,
}

impl InheritedCode {
    /// How many mappings children inherit.
    pub fn mappings(&self) -> usize {
        self.inherited.len()
    }

    /// The addresses of the pages of the inherited mappings that this process's page table
    /// maps: in a fork child of the process that called [`CodeMappings::inherit_touched`],
    /// what it inherited and what it touched since (one page per touch while the mappings are
    /// split).
    pub fn mapped_pages(&self) -> io::Result<Vec<usize>> {
        let pagemap = File::open("/proc/self/pagemap")?;
        let mut pages = Vec::new();
        for m in &self.inherited {
            for_each_mapped_page(&pagemap, self.page_size, m, |page| {
                pages.push(page);
                true
            })?;
        }
        Ok(pages)
    }

    /// Maps each of `pages` that lies in an inherited mapping by reading a byte of it (while
    /// split, exactly that page): pages a child's path needs that the caller could not run
    /// itself, learnt from [`mapped_pages`](InheritedCode::mapped_pages) in such a child.
    /// Other addresses are ignored. Returns how many pages it read.
    pub fn map_pages(&self, pages: &[usize]) -> usize {
        let mut read = 0;
        for &page in pages {
            let inside = page % self.page_size == 0
                && self
                    .inherited
                    .iter()
                    .any(|m| (m.start..m.end).contains(&page));
            if inside {
                // SAFETY: `page` is the start of a page of a mapping of this process that is
                // readable (every candidate mapping is) and stays mapped: reading one byte of
                // it is sound.
                let _ = unsafe { std::ptr::read_volatile(page as *const u8) };
                read += 1;
            }
        }
        read
    }

    /// Merges the one-page mappings back into the mappings they came from (clearing the flag
    /// that split them), keeping the entries mapped since: the last step, once the caller has
    /// run its children's path. Until then every fork would copy hundreds of mappings.
    ///
    /// # Safety
    /// As [`drop_code_pages`]: no other thread may run (another thread's fault would map 16
    /// pages around in a mapping merged already).
    pub unsafe fn rejoin(&self) -> io::Result<()> {
        for m in &self.inherited {
            // SAFETY: the range is one whole private file mapping; clearing `VM_DONTDUMP`
            // changes only what a core dump holds.
            unsafe { advise(m.start, m.end - m.start, libc::MADV_DODUMP) }?;
        }
        Ok(())
    }

    /// Splits each inherited mapping into one-page mappings: `MADV_DONTDUMP` on every other
    /// page (neighbours with different flags cannot be one mapping).
    ///
    /// # Safety
    /// As [`drop_code_pages`].
    unsafe fn split(&self) -> io::Result<()> {
        for m in &self.inherited {
            let mut page = m.start + self.page_size;
            while page < m.end {
                // SAFETY: one page of a private file mapping; `VM_DONTDUMP` changes only what
                // a core dump holds, and `rejoin` clears it.
                unsafe { advise(page, self.page_size, libc::MADV_DONTDUMP) }?;
                page += 2 * self.page_size;
            }
        }
        Ok(())
    }
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
/// As [`drop_code_pages`]; the mappings hold no private page but the same-byte copies made by
/// [`CodeMappings::inherit_touched`].
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
/// page swapped out is not counted in `Anonymous:`, and dropping it would lose it) and that
/// the program has not excluded from core dumps (the flag [`InheritedCode::rejoin`] clears).
fn clean_mappings_in(smaps: impl BufRead) -> io::Result<Vec<Mapping>> {
    /// A candidate being read, with how many of its two figures have been read as zero.
    struct Reading {
        mapping: Mapping,
        zero_figures: u8,
        dont_dump: bool,
    }
    let mut found = Vec::new();
    let mut current: Option<Reading> = None;
    let mut finish = |reading: Option<Reading>| {
        if let Some(r) = reading.filter(|r| r.zero_figures == 2 && !r.dont_dump) {
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
                dont_dump: false,
            });
        } else if let Some(r) = current.as_mut() {
            if let Some(flags) = line.strip_prefix("VmFlags:") {
                r.dont_dump = flags.split_whitespace().any(|flag| flag == "dd");
            }
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
    fn only_mappings_without_private_pages_resident_or_swapped_nor_kept_from_dumps_are_clean() {
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
7f6609fb9000-7f6609fc9000 r--p 00028000 fe:00 12    /lib/libc.so.6
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me dd sd
";
        let found = clean_mappings_in(smaps.as_bytes()).unwrap();
        let starts: Vec<usize> = found.iter().map(|m| m.start).collect();
        assert_eq!(starts, [0x5629f2200000, 0x7f6609f91000]);
        assert_eq!(found[0].file, "fe:00 77");
        assert_eq!(found[1].file, "fe:00 12");
    }
}
