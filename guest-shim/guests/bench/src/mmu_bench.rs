// SPDX-License-Identifier: MIT OR Apache-2.0
//! PV MMU benchmarks, on pages and trees from guest-shim's [`mmu`] module:
//!
//! - `mmu-update-512`: one `mmu_update` of 512 `MMU_NORMAL_PT_UPDATE`s filling a
//!   pinned L1 with writable mappings of 512 pool pages, the next one clearing it
//!   again, and so on: every batch changes every entry (the figure is per batch).
//! - `update-va-mapping-invlpg`: `update_va_mapping` of one kernel address with
//!   `UVMF_INVLPG`, mapping one of two pool frames there in turn.
//! - `pin-unpin-l4`: `MMUEXT_PIN_L4_TABLE` then `MMUEXT_UNPIN_TABLE` (two calls) of an
//!   L4 without kernel mappings over an L3, an L2 and an L1 that map four pages: the
//!   pin validates the four tables, the unpin drops their types again.
//! - `new-baseptr`: `MMUEXT_NEW_BASEPTR` to one pinned L4 and then to another, both
//!   holding the kernel half of the start-of-day L4 (a switch and a switch back).
//!
//! Each returns its figure (see `measure_ops`) or the step that failed; resources are
//! given back to the pool afterwards where the hypervisor lets us.

use guest_shim::mmu::{self, KERNEL_RW, Level, Page, Tree, USER_RW, pt_update};
use guest_shim::pv_abi::Errno;
use guest_shim::pv_abi::xen::{DOMID_SELF, MmuUpdate};

use crate::{OPS_PER_BATCH, measure_ops};

/// Why a benchmark did not run (or its figure is void): the failing step and its error.
pub type Skip = (&'static str, Errno);

/// A benchmark: its figure (tenths of a cycle per operation) or why there is none.
pub type Bench = fn() -> Result<u64, Skip>;

/// The benchmarks of this module with their `BENCH` names, in the order they run.
pub const ALL: [(&str, Bench); 4] = [
    ("mmu-update-512", mmu_update_512),
    ("update-va-mapping-invlpg", update_va_mapping_invlpg),
    ("pin-unpin-l4", pin_unpin_l4),
    ("new-baseptr", new_baseptr),
];

/// Batches of 512 updates per timed batch in `mmu-update-512`.
const MMU_UPDATE_OPS: u64 = 20;
/// Pin-unpin pairs per timed batch (each validates and releases four tables).
const PIN_UNPIN_OPS: u64 = 100;
/// Switch pairs per timed batch.
const NEW_BASEPTR_OPS: u64 = 500;
/// Where `pin-unpin-l4`'s tree maps its pages (user half, all in one L1).
const TREE_VA: u64 = 0x40_0000;
/// Pages the `pin-unpin-l4` tree maps.
const TREE_PAGES: usize = 4;

/// Runs `op` once untimed (a hypervisor that refuses it shows here), then times it with
/// [`measure_ops`] in batches of `ops`: the figure stands only if every call succeeded.
/// The grant-table benchmarks use it too, with their own error type.
pub fn timed<E>(ops: u64, mut op: impl FnMut() -> Result<(), E>) -> Result<u64, E> {
    op()?;
    let mut failed = None;
    let figure = measure_ops(ops, || {
        if let Err(e) = op() {
            failed.get_or_insert(e);
        }
    });
    failed.map_or(Ok(figure), Err)
}

/// `N` pages from the pool (mapped writable, zeroed).
fn alloc_pages<const N: usize>() -> Result<[Page; N], Skip> {
    let mut pages = [Page { pfn: 0, mfn: 0 }; N];
    for (i, p) in pages.iter_mut().enumerate() {
        match mmu::alloc() {
            Ok(page) => *p = page,
            Err(e) => {
                free_pages(&pages[..i]);
                return Err(("mmu::alloc", e));
            }
        }
    }
    Ok(pages)
}

/// Gives `pages` back to the pool (best effort: a page the hypervisor still holds as a
/// table is leaked; the guest powers off soon anyway).
fn free_pages(pages: &[Page]) {
    for p in pages {
        // SAFETY: the callers are done with the pages and no mapping of ours uses them.
        let _ = unsafe { mmu::free(*p) };
    }
}

/// `mmu-update-512`: figure per batch of 512 entry writes.
pub fn mmu_update_512() -> Result<u64, Skip> {
    let l1 = mmu::alloc_table().map_err(|e| ("mmu::alloc_table", e))?;
    if let Err(e) = mmu::pin(Level::L1, l1.mfn) {
        free_pages(&[l1]);
        return Err(("MMUEXT_PIN_L1_TABLE", e));
    }
    let result = fill_and_clear(&l1);
    // The L1 is empty again, so the unpin drops no mapping; then its frame can be
    // made writable and given back.
    let unpinned = mmu::unpin(l1.mfn).map_err(|e| ("MMUEXT_UNPIN_TABLE", e));
    free_pages(&[l1]);
    let figure = result?;
    unpinned?;
    Ok(figure)
}

/// The timed part of `mmu-update-512` on the pinned, empty L1 `l1`; leaves it empty.
fn fill_and_clear(l1: &Page) -> Result<u64, Skip> {
    let pages = alloc_pages::<{ mmu::ENTRIES }>()?;
    let mut fill = [pt_update(0, 0); mmu::ENTRIES];
    let mut clear = [pt_update(0, 0); mmu::ENTRIES];
    for (i, p) in pages.iter().enumerate() {
        fill[i] = pt_update(l1.entry_maddr(i), p.pte(USER_RW));
        clear[i] = pt_update(l1.entry_maddr(i), 0);
    }
    let apply = |reqs: &[MmuUpdate]| {
        // SAFETY: the L1 is pinned but in no tree: its entries map nothing that runs,
        // and the pages they name are ours and unused.
        unsafe { mmu::mmu_update(reqs, DOMID_SELF) }.map(drop).map_err(|e| ("mmu_update", e.errno))
    };
    let mut full = false;
    let result = timed(MMU_UPDATE_OPS, || {
        apply(if full { &clear } else { &fill })?;
        full = !full;
        Ok(())
    });
    // Empty again, or the unpin would fail and the pages stay typed writable in use.
    let cleared = if full { apply(&clear) } else { Ok(()) };
    free_pages(&pages);
    let figure = result?;
    cleared?;
    Ok(figure)
}

/// `update-va-mapping-invlpg`: figure per call.
pub fn update_va_mapping_invlpg() -> Result<u64, Skip> {
    let [a, b] = alloc_pages::<2>()?;
    let ptes = [a.pte(KERNEL_RW), b.pte(KERNEL_RW)];
    let mut which = 0;
    let result = timed(OPS_PER_BATCH, || {
        which ^= 1;
        // SAFETY: nothing reads or writes `a`'s address meanwhile; both frames are
        // ours and may be mapped writable.
        unsafe { mmu::set_kernel_pte(a.va(), ptes[which]) }.map_err(|e| ("update_va_mapping", e))
    });
    // `free` maps `a`'s own frame back at its address.
    free_pages(&[a, b]);
    result
}

/// `pin-unpin-l4`: figure per pin-unpin pair.
pub fn pin_unpin_l4() -> Result<u64, Skip> {
    let mut tree: Tree<3> = Tree::new(false).map_err(|e| ("Tree::new", e))?;
    let data = match alloc_pages::<TREE_PAGES>() {
        Ok(d) => d,
        Err(e) => {
            let _ = tree.destroy();
            return Err(e);
        }
    };
    let result = map_tree(&mut tree, &data).and_then(|()| {
        timed(PIN_UNPIN_OPS, || {
            tree.pin().map_err(|e| ("MMUEXT_PIN_L4_TABLE", e))?;
            tree.unpin().map_err(|e| ("MMUEXT_UNPIN_TABLE", e))
        })
    });
    let destroyed = tree.destroy().map_err(|e| ("Tree::destroy", e));
    free_pages(&data);
    let figure = result?;
    destroyed?;
    Ok(figure)
}

/// Maps `data` into `tree` a few slots apart in one L1, which makes the L3, L2 and L1.
fn map_tree(tree: &mut Tree<3>, data: &[Page]) -> Result<(), Skip> {
    for (i, p) in data.iter().enumerate() {
        let va = TREE_VA + i as u64 * 8 * mmu::PAGE_SIZE;
        // SAFETY: the tree is no base pointer: the mappings change nothing that runs.
        unsafe { tree.map(va, p.pte(USER_RW)) }.map_err(|e| ("Tree::map", e))?;
    }
    Ok(())
}

/// `new-baseptr`: figure per pair of switches.
pub fn new_baseptr() -> Result<u64, Skip> {
    let mut a: Tree<0> = Tree::new(true).map_err(|e| ("Tree::new", e))?;
    let mut b: Tree<0> = match Tree::new(true) {
        Ok(b) => b,
        Err(e) => {
            let _ = a.destroy();
            return Err(("Tree::new", e));
        }
    };
    let switch = |mfn: u64| {
        // SAFETY: both L4s and the start-of-day one hold the same kernel half, which
        // maps all the guest's code and data; nothing of ours is in the user half.
        unsafe { mmu::new_baseptr(mfn) }.map_err(|e| ("MMUEXT_NEW_BASEPTR", e))
    };
    let (l4a, l4b) = (a.l4().mfn, b.l4().mfn);
    let result = a.pin().and_then(|()| b.pin()).map_err(|e| ("MMUEXT_PIN_L4_TABLE", e)).and_then(|()| {
        timed(NEW_BASEPTR_OPS, || {
            switch(l4a)?;
            switch(l4b)
        })
    });
    // Back to the start-of-day tables before the trees go.
    let back = switch(mmu::bootstrap_l4().mfn);
    let destroyed = a.destroy().and(b.destroy()).map_err(|e| ("Tree::destroy", e));
    let figure = result?;
    back?;
    destroyed?;
    Ok(figure)
}
