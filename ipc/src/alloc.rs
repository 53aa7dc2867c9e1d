//! The allocator of a pool's data area: page runs for large buffers, slabs of
//! fixed-size slots packed into single pages for small ones.
//!
//! Pure bookkeeping over offsets (no memory access, no `unsafe`). Page runs are
//! kept best-fit in two ordered maps and coalesce on free; a slab page holds
//! one size class and a bitmap of its slots; partially used slab pages of each
//! class sit on a list with O(1) insert and remove. Every operation is O(1) or
//! O(log runs).

use std::collections::{BTreeMap, BTreeSet};

/// Page size of the data area (and of the machine: checked at pool creation).
pub(crate) const PAGE: usize = 4096;
/// The smallest slot; offsets of every allocation are multiples of it.
pub(crate) const GRANULE: usize = 128;
/// Slot sizes of the slab classes; larger requests get whole pages.
pub(crate) const CLASSES: [usize; 5] = [128, 256, 512, 1024, 2048];
const NOT_LISTED: u32 = u32::MAX;
/// Allocations of at least this many pages (2 MiB) start at a multiple of
/// it where a free run allows, so they can live in huge pages (the pool's
/// data area starts at a 2 MiB-aligned memfd offset).
pub(crate) const HUGE_PAGES: u32 = (2 << 20) / PAGE as u32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PageState {
    /// Free, or inside a large allocation (only run starts are tracked).
    Plain,
    /// First page of a large allocation of `pages` pages.
    Large { pages: u32 },
    /// A slab page of class `class`: `used` has a bit per taken slot; `pos` is
    /// its index in the class's partial list, or `NOT_LISTED` when full.
    Slab { class: u8, used: u32, pos: u32 },
}

/// Bookkeeping for one pool's data area of `pages` pages.
#[derive(Debug)]
pub(crate) struct Allocator {
    pages: Vec<PageState>,
    runs_by_start: BTreeMap<u32, u32>,
    runs_by_len: BTreeSet<(u32, u32)>,
    partial: [Vec<u32>; CLASSES.len()],
    allocated: usize,
    live: usize,
}

impl Allocator {
    pub(crate) fn new(pages: u32) -> Self {
        let mut a = Allocator {
            pages: vec![PageState::Plain; pages as usize],
            runs_by_start: BTreeMap::new(),
            runs_by_len: BTreeSet::new(),
            partial: Default::default(),
            allocated: 0,
            live: 0,
        };
        if pages > 0 {
            a.insert_run(0, pages);
        }
        a
    }

    pub(crate) fn capacity(&self) -> usize {
        self.pages.len() * PAGE
    }

    /// Bytes held by live allocations (rounded up to their slot or pages).
    pub(crate) fn allocated(&self) -> usize {
        self.allocated
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Bytes in free page runs (what a large allocation could use).
    pub(crate) fn free_run_bytes(&self) -> usize {
        self.runs_by_start
            .values()
            .map(|&n| n as usize * PAGE)
            .sum()
    }

    /// The size an allocation of `size` bytes really takes.
    pub(crate) fn rounded(size: usize) -> Option<usize> {
        match CLASSES.iter().find(|&&c| size <= c) {
            Some(&c) => Some(c),
            None => size.checked_next_multiple_of(PAGE),
        }
    }

    /// Allocates `size` bytes; returns (offset in the data area, capacity).
    pub(crate) fn alloc(&mut self, size: usize) -> Option<(usize, usize)> {
        let got = match CLASSES.iter().position(|&c| size <= c) {
            Some(class) => self.alloc_slot(class),
            None => {
                let pages = u32::try_from(size.div_ceil(PAGE)).ok()?;
                let start = if pages >= HUGE_PAGES {
                    self.take_run_aligned(pages, HUGE_PAGES)
                        .or_else(|| self.take_run(pages))?
                } else {
                    self.take_run(pages)?
                };
                self.pages[start as usize] = PageState::Large { pages };
                Some((start as usize * PAGE, pages as usize * PAGE))
            }
        }?;
        self.allocated += got.1;
        self.live += 1;
        Some(got)
    }

    /// Frees the allocation at `offset`; returns its capacity, or `None` if no
    /// allocation starts there.
    pub(crate) fn free(&mut self, offset: usize) -> Option<usize> {
        let page = u32::try_from(offset / PAGE).ok()?;
        let cap = match *self.pages.get(page as usize)? {
            PageState::Plain => return None,
            PageState::Large { pages } => {
                if !offset.is_multiple_of(PAGE) {
                    return None;
                }
                self.pages[page as usize] = PageState::Plain;
                self.insert_run_coalescing(page, pages);
                pages as usize * PAGE
            }
            PageState::Slab { class, used, pos } => {
                let size = CLASSES[class as usize];
                let in_page = offset % PAGE;
                if !in_page.is_multiple_of(size) {
                    return None;
                }
                let bit = 1u32 << (in_page / size);
                if used & bit == 0 {
                    return None;
                }
                let used = used & !bit;
                if used == 0 {
                    if pos != NOT_LISTED {
                        self.unlist(class, pos);
                    }
                    self.pages[page as usize] = PageState::Plain;
                    self.insert_run_coalescing(page, 1);
                } else if pos == NOT_LISTED {
                    let list = &mut self.partial[class as usize];
                    let pos = list.len() as u32;
                    list.push(page);
                    self.pages[page as usize] = PageState::Slab { class, used, pos };
                } else {
                    self.pages[page as usize] = PageState::Slab { class, used, pos };
                }
                size
            }
        };
        self.allocated -= cap;
        self.live -= 1;
        Some(cap)
    }

    fn alloc_slot(&mut self, class: usize) -> Option<(usize, usize)> {
        let size = CLASSES[class];
        let slots = PAGE / size;
        let full: u32 = if slots == 32 {
            u32::MAX
        } else {
            (1 << slots) - 1
        };
        let page = match self.partial[class].last() {
            Some(&p) => p,
            None => {
                let p = self.take_run(1)?;
                self.pages[p as usize] = PageState::Slab {
                    class: class as u8,
                    used: 0,
                    pos: self.partial[class].len() as u32,
                };
                self.partial[class].push(p);
                p
            }
        };
        let PageState::Slab { used, pos, .. } = self.pages[page as usize] else {
            return None; // the partial list holds slab pages only
        };
        let slot = used.trailing_ones();
        let used = used | (1 << slot);
        let pos = if used == full {
            self.unlist(class as u8, pos);
            NOT_LISTED
        } else {
            pos
        };
        self.pages[page as usize] = PageState::Slab {
            class: class as u8,
            used,
            pos,
        };
        Some((page as usize * PAGE + slot as usize * size, size))
    }

    /// Removes the page at `pos` from its class's partial list (swap-remove).
    fn unlist(&mut self, class: u8, pos: u32) {
        let list = &mut self.partial[class as usize];
        list.swap_remove(pos as usize);
        if let Some(&moved) = list.get(pos as usize)
            && let PageState::Slab { pos: p, .. } = &mut self.pages[moved as usize]
        {
            *p = pos;
        }
    }

    fn take_run(&mut self, pages: u32) -> Option<u32> {
        let &(len, start) = self.runs_by_len.range((pages, 0)..).next()?;
        self.remove_run(start, len);
        if len > pages {
            self.insert_run(start + pages, len - pages);
        }
        Some(start)
    }

    /// A run of `pages` starting at a multiple of `align` pages, from the
    /// first few free runs long enough (best fit first); `None` when none of
    /// them has an aligned stretch that long.
    fn take_run_aligned(&mut self, pages: u32, align: u32) -> Option<u32> {
        const CANDIDATES: usize = 16;
        let (len, start, at) = self
            .runs_by_len
            .range((pages, 0)..)
            .take(CANDIDATES)
            .find_map(|&(len, start)| {
                let at = start.checked_next_multiple_of(align)?;
                (u64::from(at) + u64::from(pages) <= u64::from(start) + u64::from(len))
                    .then_some((len, start, at))
            })?;
        self.remove_run(start, len);
        if at > start {
            self.insert_run(start, at - start);
        }
        let end = start + len;
        if end > at + pages {
            self.insert_run(at + pages, end - at - pages);
        }
        Some(at)
    }

    fn insert_run(&mut self, start: u32, len: u32) {
        self.runs_by_start.insert(start, len);
        self.runs_by_len.insert((len, start));
    }

    fn remove_run(&mut self, start: u32, len: u32) {
        self.runs_by_start.remove(&start);
        self.runs_by_len.remove(&(len, start));
    }

    fn insert_run_coalescing(&mut self, mut start: u32, mut len: u32) {
        if let Some((&prev, &plen)) = self.runs_by_start.range(..start).next_back()
            && prev + plen == start
        {
            self.remove_run(prev, plen);
            start = prev;
            len += plen;
        }
        if let Some(&nlen) = self.runs_by_start.get(&(start + len)) {
            self.remove_run(start + len, nlen);
            len += nlen;
        }
        self.insert_run(start, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_allocations_pack_into_one_page() {
        let mut a = Allocator::new(4);
        let offs: Vec<_> = (0..32).map(|_| a.alloc(100).unwrap()).collect();
        assert!(offs.iter().all(|&(o, c)| o < PAGE && c == 128));
        assert_eq!(a.free_run_bytes(), 3 * PAGE);
        let next = a.alloc(1).unwrap();
        assert_eq!(next.0 / PAGE, 1, "a full slab moves on to a new page");
        for (o, _) in offs {
            a.free(o).unwrap();
        }
        a.free(next.0).unwrap();
        assert_eq!(a.free_run_bytes(), 4 * PAGE);
        assert_eq!(a.allocated(), 0);
        assert_eq!(a.live(), 0);
    }

    #[test]
    fn large_allocations_are_page_runs_and_coalesce() {
        let mut a = Allocator::new(8);
        let x = a.alloc(PAGE + 1).unwrap();
        let y = a.alloc(3 * PAGE).unwrap();
        let z = a.alloc(3 * PAGE).unwrap();
        assert_eq!((x.1, y.1, z.1), (2 * PAGE, 3 * PAGE, 3 * PAGE));
        assert!(x.0.is_multiple_of(PAGE) && y.0.is_multiple_of(PAGE) && z.0.is_multiple_of(PAGE));
        assert_eq!(a.alloc(1), None, "every page is taken");
        a.free(y.0).unwrap();
        a.free(x.0).unwrap();
        assert_eq!(a.alloc(5 * PAGE).map(|g| g.1), Some(5 * PAGE));
    }

    #[test]
    fn huge_allocations_start_at_huge_page_boundaries_when_a_run_allows() {
        let huge = HUGE_PAGES as usize * PAGE;
        let mut a = Allocator::new(4 * HUGE_PAGES);
        let small = a.alloc(3 * PAGE).unwrap();
        let big = a.alloc(huge + PAGE).unwrap();
        assert!(big.0.is_multiple_of(huge), "{big:?}");
        // The pages skipped for alignment stay free and usable.
        let gap = a.alloc(HUGE_PAGES as usize * PAGE - 3 * PAGE).unwrap();
        assert_eq!(gap.0, small.1);
        a.free(big.0).unwrap();
        // No aligned stretch is left long enough: it falls back to any run.
        let mut b = Allocator::new(HUGE_PAGES + 8);
        b.alloc(PAGE * 4).unwrap();
        let unaligned = b.alloc(huge).unwrap();
        assert_eq!(unaligned.0, 4 * PAGE);
        b.free(unaligned.0).unwrap();
        assert_eq!(b.allocated(), 4 * PAGE);
    }

    #[test]
    fn bogus_frees_are_refused() {
        let mut a = Allocator::new(2);
        let (o, _) = a.alloc(200).unwrap();
        assert_eq!(a.free(o + 1), None);
        assert_eq!(a.free(o + 256), None, "slot not taken");
        assert_eq!(a.free(PAGE), None, "free page");
        assert_eq!(a.free(100 * PAGE), None, "outside");
        assert_eq!(a.free(o), Some(256));
        assert_eq!(a.free(o), None, "double free");
    }

    #[test]
    fn mixed_churn_returns_to_empty() {
        let mut a = Allocator::new(64);
        let sizes = [1, 128, 129, 300, 700, 1500, 2048, 2049, 5000, 12000, 40000];
        let mut held = Vec::new();
        for round in 0..50 {
            for (i, &s) in sizes.iter().enumerate() {
                if let Some(g) = a.alloc(s * (1 + (round + i) % 3)) {
                    held.push(g.0);
                }
            }
            if round % 2 == 1 {
                for o in held.drain(..held.len() / 2) {
                    a.free(o).unwrap();
                }
            }
        }
        for o in held {
            a.free(o).unwrap();
        }
        assert_eq!(a.allocated(), 0);
        assert_eq!(a.free_run_bytes(), a.capacity());
        assert_eq!(a.runs_by_start.len(), 1, "fully coalesced");
    }
}
