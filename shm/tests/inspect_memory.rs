//! `shmipc::inspect` reads an MPMC queue's claims in memory that does not
//! grow with its item size: the slot records' bookkeeping words are what
//! it decodes, not the items after them.
//!
//! A tracking global allocator notes the largest allocation the calling
//! thread makes while a measured section runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use shmipc::inspect::{HoldKind, Report, MAX_SCAN};
use shmipc::{Named, Queue, RingConfig, Unlinker};

struct Largest;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = MEASURING.try_with(|m| {
        if m.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// tracking touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Largest = Largest;

/// The largest allocation `f` makes on this thread, and its result.
fn largest<R>(f: impl FnOnce() -> R) -> (usize, R) {
    LARGEST.with(|l| l.set(0));
    MEASURING.with(|m| m.set(true));
    let r = f();
    MEASURING.with(|m| m.set(false));
    (LARGEST.with(Cell::get), r)
}

/// A page-sized item: a queue of 1024 of them is 4 MiB of records.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C)]
struct Page([u8; 4096]);

#[test]
fn inspecting_a_queue_of_large_items_reads_no_more_than_the_record_headers() {
    let names = Unlinker::new("inspect-mem");
    let n = names.name("pages");
    let q = Queue::<Page>::create(&n, RingConfig::new(1024)).expect("create");
    q.try_push(Page([1; 4096])).expect("push");
    assert_eq!(q.claim_push_and_stop().expect("claim"), 1);
    let (most, r) = largest(|| Report::open(&n).expect("inspect"));
    assert!(r.holds_complete, "{:?}", r.holds);
    assert_eq!(r.holds.len(), 1, "{:?}", r.holds);
    assert_eq!(r.holds[0].kind, HoldKind::PushClaim);
    assert_eq!(r.holds[0].position, 1);
    // The bookkeeping of as many records as a scan takes (16 bytes each)
    // is the bound the scan had before records held their items; the
    // items of this queue alone are four times that.
    let bound = (MAX_SCAN as usize) * 16;
    assert!(
        most <= bound,
        "inspect made an allocation of {most} bytes (bound {bound}) for a queue of {} MiB",
        (q.capacity() * 4096) >> 20
    );
}

/// An item larger than the chunks the scan reads: of its records only the
/// bookkeeping is read.
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C)]
struct Huge([Page; 32]);

#[test]
fn inspecting_a_queue_of_items_larger_than_a_read_finds_its_claims() {
    let names = Unlinker::new("inspect-huge");
    let n = names.name("huge");
    let q = Queue::<Huge>::create(&n, RingConfig::new(8)).expect("create");
    q.try_push(Huge([Page([1; 4096]); 32])).expect("push");
    assert_eq!(q.claim_push_and_stop().expect("claim"), 1);
    let pos = q.claim_pop_and_stop().expect("claim pop");
    let (most, r) = largest(|| Report::open(&n).expect("inspect"));
    assert!(r.holds_complete, "{:?}", r.holds);
    let found: Vec<_> = r.holds.iter().map(|h| (h.position, h.kind)).collect();
    assert_eq!(
        found,
        [(pos, HoldKind::PopClaim), (1, HoldKind::PushClaim)],
        "{:?}",
        r.holds
    );
    assert!(most < size_of::<Huge>(), "an allocation of {most} bytes");
}
