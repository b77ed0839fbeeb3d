//! What every harness shares: a reader that turns the fuzzer's bytes into
//! choices, aligned scratch memory, hostile writes, and element types.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fmt::Debug;
use std::time::Duration;

use shmipc_core::bytes::{ByteQueue, BytesConfig};
use shmipc_core::sync::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// The most operations one input runs, so that every input ends quickly
/// whatever its length.
pub const MAX_OPS: usize = 256;

/// Reads choices from the fuzzer's bytes. Once they run out every read is
/// zero, so any input, even an empty one, is a complete program.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next two bytes (little-endian), or what is left of them.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next eight bytes (little-endian), or what is left of them.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        b.iter_mut().for_each(|b| *b = self.u8());
        u64::from_le_bytes(b)
    }

    /// A number below `n` (0 if `n` is 0), from one byte when `n` fits one.
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            1..=256 => self.u8() as usize % n,
            _ => self.u16() as usize % n,
        }
    }

    /// Up to `n` of the next bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        self.bytes(usize::MAX)
    }

    /// A short timeout: mostly zero (expired before the call starts, which
    /// still takes the blocking path once, without a system call), else
    /// 1 µs, 20 µs, and for one byte value of 256 a whole millisecond.
    /// Blocking calls in the harnesses wait only on a queue or word that
    /// nothing else will change, so they always run into the deadline:
    /// keeping real sleeps short and rare keeps the fuzzer fast. (The
    /// fuzzer likes runs of `0x00` and `0xff`; both mean zero.)
    pub fn timeout(&mut self) -> Duration {
        Duration::from_micros(match self.u8() {
            0x80..=0xbf => 1,
            0xc0..=0xcf => 20,
            0xd0 => 1000,
            _ => 0,
        })
    }
}

/// Makes the calling thread's timed sleeps end when they should, instead of
/// up to 50 µs later (the kernel's default timer slack): the fuzz targets
/// sleep in many short timed waits. Called once by each target's `init`.
pub fn tight_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// Zeroed memory aligned to 128 bytes, the most any shmipc object needs,
/// that the harness owns and hands out only as a raw pointer: the objects
/// placed in it see it as shared memory, and hostile writes go through the
/// same pointer.
///
/// Outside fuzzing a 128-byte guard follows the `len` usable bytes and
/// [`AlignedBuf::check_guard`] fails if anything wrote into it; under the
/// fuzzer the allocation is exact, so AddressSanitizer sees any access past
/// the end, reads included.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
    layout: Layout,
}

/// Room for a byte queue of `config`: give it to [`byte_queue_handles`].
pub fn byte_queue_buf(config: BytesConfig) -> AlignedBuf {
    let layout = ByteQueue::layout(config).expect("a valid configuration");
    AlignedBuf::new(layout.size())
}

/// A new byte queue of `config` in `buf` (from [`byte_queue_buf`]), as
/// three handles: the creator's, a clone of it, and one that attached.
pub fn byte_queue_handles(buf: &AlignedBuf, config: BytesConfig) -> [ByteQueue<'_>; 3] {
    let (ptr, len) = (buf.ptr(), buf.len());
    // SAFETY: the handles borrow `buf`, which outlives them; nothing but
    // they (and a hostile writer, which only writes bytes) uses it.
    let q = unsafe { ByteQueue::init_at(ptr, len, config) }.expect("init");
    // SAFETY: as for init_at.
    let attached = unsafe { ByteQueue::attach(ptr, len) }.expect("attach");
    [q.clone(), attached, q]
}

const GUARD: usize = if cfg!(fuzzing) { 0 } else { 128 };
const GUARD_BYTE: u8 = 0xa5;

impl AlignedBuf {
    /// `len` zeroed bytes (at least one).
    pub fn new(len: usize) -> AlignedBuf {
        let len = len.max(1);
        let layout = Layout::from_size_align(len + GUARD, 128).expect("a sane buffer size");
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        // SAFETY: the guard lies inside the allocation, after `len` bytes.
        unsafe { ptr.add(len).write_bytes(GUARD_BYTE, GUARD) };
        AlignedBuf { ptr, len, layout }
    }

    /// `len` bytes, the first ones copied from `init` (the rest zero).
    pub fn with_bytes(len: usize, init: &[u8]) -> AlignedBuf {
        let b = AlignedBuf::new(len);
        let n = init.len().min(b.len);
        // SAFETY: `n` bytes fit in the buffer; `init` is a distinct slice.
        unsafe { std::ptr::copy_nonoverlapping(init.as_ptr(), b.ptr, n) };
        b
    }

    /// The first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The usable length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, exclusively borrowed.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` initialised bytes owned by `self`; the borrow of
        // `self` keeps every other user away while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Panics if anything wrote past the usable bytes.
    pub fn check_guard(&self) {
        for i in 0..GUARD {
            // SAFETY: inside the allocation.
            let b = unsafe { self.ptr.add(self.len + i).read() };
            assert_eq!(b, GUARD_BYTE, "write past the end of the object, at +{i}");
        }
    }

    /// A hostile peer's write into the object: the input chooses where, how
    /// wide and what (see [`poke`]).
    pub fn poke(&self, input: &mut Input<'_>) {
        // SAFETY: `ptr` is valid for `len` bytes.
        unsafe { poke(self.ptr, self.len, input) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.check_guard();
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

/// Writes into `len` bytes at `base` as a hostile or buggy peer would.
/// The input chooses an offset (anywhere, or 8-aligned) and one of:
///
/// - a raw value 1, 2, 4 or 8 bytes wide;
/// - the 8-byte word there plus a small signed delta (a position or length
///   that is plausible but wrong);
/// - one bit of the word flipped (a state or flag bit);
/// - the word copied from another 8-aligned place (a stale header or
///   position, which a check by shape alone would accept).
///
/// # Safety
///
/// `base` is 8-aligned and valid for writes of `len` bytes, and nothing holds a reference
/// to plain (non-atomic) bytes among them. The objects living there are
/// made of atomics and are not in use by another thread: a peer process
/// would write concurrently, which this single-threaded harness cannot
/// imitate, but every value it can leave behind is one a peer could.
pub unsafe fn poke(base: *mut u8, len: usize, input: &mut Input<'_>) {
    let how = input.u8();
    let mut off = input.below(len);
    if how & 0x10 != 0 || how & 3 != 0 {
        off &= !7;
    }
    let words = len / 8;
    match how & 3 {
        0 => {
            let width = 1usize << ((how >> 2) & 3);
            let value = input.u64().to_le_bytes();
            let n = width.min(len - off);
            // SAFETY: `off + n <= len`; `value` is a local array.
            unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), base.add(off), n) };
        }
        _ if off + 8 > len || words == 0 => {}
        1 => {
            let delta = input.u8() as i8 as i64 * [1, 8][(how >> 2) as usize & 1];
            let p = word(base, off);
            // SAFETY: `off + 8 <= len`, 8-aligned (the base is 128-aligned).
            unsafe { p.write(p.read().wrapping_add(delta as u64)) };
        }
        2 => {
            let bit = input.u8() % 64;
            let p = word(base, off);
            // SAFETY: as above.
            unsafe { p.write(p.read() ^ (1 << bit)) };
        }
        _ => {
            let from = input.below(words) * 8;
            // SAFETY: both words lie inside the buffer and are 8-aligned.
            unsafe { word(base, off).write(word(base, from).read()) };
        }
    }
}

/// The 8-byte word at `off` bytes from `base`.
fn word(base: *mut u8, off: usize) -> *mut u64 {
    base.wrapping_add(off).cast::<u64>()
}

/// The second thread of [`Hostile::run`] under the fuzzer: one thread for
/// the whole run, handed each input's writer and script in turn (a thread
/// per input would cost a spawn each time, and its thread-local
/// bookkeeping, freed after the join returns, looks like a leak to
/// LeakSanitizer).
mod writer {
    use std::sync::{Condvar, Mutex, OnceLock};

    use super::{AtomicBool, Hostile, Input, Ordering};

    /// The job: the writer and the script, as addresses (valid from
    /// `start` until `stop` returns, which waits for the thread to leave
    /// them), and a number so that a job is run once.
    #[derive(Clone, Copy, Default)]
    struct State {
        job: Option<(usize, usize, usize)>,
        number: u64,
        running: bool,
    }

    struct Writer {
        state: Mutex<State>,
        changed: Condvar,
        stop: AtomicBool,
    }

    fn writer() -> &'static Writer {
        static WRITER: OnceLock<&'static Writer> = OnceLock::new();
        WRITER.get_or_init(|| {
            let w: &'static Writer = Box::leak(Box::new(Writer {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                stop: AtomicBool::new(false),
            }));
            std::thread::spawn(move || work(w));
            w
        })
    }

    fn work(w: &'static Writer) {
        let mut done = 0;
        loop {
            let mut st = w.state.lock().unwrap();
            let (hostile, ptr, len) = loop {
                match st.job {
                    Some(job) if st.number != done => break job,
                    _ => st = w.changed.wait(st).unwrap(),
                }
            };
            done = st.number;
            st.running = true;
            drop(st);
            // SAFETY: `start` handed these over, and `stop` waits for
            // `running` to drop before they may go away.
            let (hostile, script) = unsafe {
                (
                    &*(hostile as *const Hostile),
                    std::slice::from_raw_parts(ptr as *const u8, len),
                )
            };
            let mut cursor = Input::new(script);
            while !w.stop.load(Ordering::Relaxed) {
                hostile.write_next(script, &mut cursor);
                std::thread::yield_now();
            }
            w.state.lock().unwrap().running = false;
            w.changed.notify_all();
        }
    }

    /// Has the thread write with `hostile` through `script` until `stop`.
    pub(super) fn start(hostile: &Hostile, script: &[u8]) {
        let w = writer();
        w.stop.store(false, Ordering::Relaxed);
        let mut st = w.state.lock().unwrap();
        st.job = Some((
            hostile as *const Hostile as usize,
            script.as_ptr() as usize,
            script.len(),
        ));
        st.number += 1;
        drop(st);
        w.changed.notify_all();
    }

    /// Ends the job, and returns once the thread has let go of it.
    pub(super) fn stop() {
        let w = writer();
        w.stop.store(true, Ordering::Relaxed);
        let mut st = w.state.lock().unwrap();
        st.job = None;
        while st.running {
            st = w.changed.wait(st).unwrap();
        }
    }
}

/// The two item bytes [`Hostile::payload_only`] fills the queue with.
pub const MARKS: [u8; 2] = [0xe7, 0xdb];

/// A hostile peer of a queue: writes into the queue's memory anywhere, or
/// only into the bytes that hold items or message payloads (see
/// [`Hostile::payload_only`]), between operations or from a second thread
/// while they run ([`Hostile::run`]).
///
/// Its writes are atomic stores (byte-wise where a value is not aligned),
/// so the writer itself takes part in no data race; the queue's plain
/// copies of payload bytes do race with it, as they race with a peer
/// process.
pub struct Hostile {
    base: *mut u8,
    len: usize,
    /// Where it may write: `[start, end)` ranges, or anywhere if empty.
    only: Vec<(usize, usize)>,
}

// SAFETY: a view of the buffer that only makes atomic loads and stores
// through it; `Hostile::new`'s contract keeps the buffer alive.
unsafe impl Send for Hostile {}
// SAFETY: as for Send; `&Hostile` offers nothing else.
unsafe impl Sync for Hostile {}

impl Hostile {
    /// A writer over `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `base` is 8-aligned and valid for `len` bytes for as long as the
    /// writer lives, and nothing holds a reference to plain bytes there.
    pub unsafe fn new(base: *mut u8, len: usize) -> Hostile {
        Hostile {
            base,
            len,
            only: Vec::new(),
        }
    }

    fn byte(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.len);
        // SAFETY: in bounds (new's contract); AtomicU8 has the layout of u8
        // and any byte is a valid one.
        unsafe { &*self.base.add(i).cast::<AtomicU8>() }
    }

    fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned (the base is); AtomicU64 has the
        // layout of u64.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    /// The bytes as they are now.
    pub fn snapshot(&self) -> Vec<u8> {
        (0..self.len)
            .map(|i| self.byte(i).load(Ordering::Relaxed))
            .collect()
    }

    /// Whether writes are restricted to payload bytes.
    pub fn is_payload_only(&self) -> bool {
        !self.only.is_empty()
    }

    /// Restricts the writes to the bytes that hold item (or message)
    /// payload. `cycle(mark, snap)` fills the queue with items made of the
    /// byte `mark` only, calls `snap()` while it is full, and empties it
    /// again; it runs once per [`MARKS`] byte. The payload is where the
    /// first fill left 0xe7 and the second 0xdb: positions and sequence
    /// numbers only grow and stay far below either at these capacities,
    /// and a stamp or owner word that holds one of them in the first fill
    /// still holds it in the second. Returns whether payload was found (a
    /// queue of zero-length messages has none).
    pub fn payload_only(&mut self, mut cycle: impl FnMut(u8, &mut dyn FnMut())) -> bool {
        let mut snaps = Vec::new();
        for m in MARKS {
            let mut snap = None;
            cycle(m, &mut || snap = Some(self.snapshot()));
            snaps.push(snap.expect("the fill took a snapshot"));
        }
        let mut only = Vec::new();
        let mut i = 0;
        while i < self.len {
            if snaps[0][i] == MARKS[0] && snaps[1][i] == MARKS[1] {
                let start = i;
                while i < self.len && snaps[0][i] == MARKS[0] && snaps[1][i] == MARKS[1] {
                    i += 1;
                }
                only.push((start, i));
            } else {
                i += 1;
            }
        }
        self.only = only;
        self.is_payload_only()
    }

    /// One hostile write, chosen by `input`: anywhere, as [`poke`]
    /// describes, or a raw value of 1 to 8 bytes inside one payload range.
    pub fn write(&self, input: &mut Input<'_>) {
        if !self.only.is_empty() {
            let (start, end) = self.only[input.below(self.only.len())];
            let off = start + input.below(end - start);
            let width = (1 + input.below(8)).min(end - off);
            for (k, b) in input.u64().to_le_bytes()[..width].iter().enumerate() {
                self.byte(off + k).store(*b, Ordering::Relaxed);
            }
            return;
        }
        let how = input.u8();
        let mut off = input.below(self.len);
        if how & 0x10 != 0 || how & 3 != 0 {
            off &= !7;
        }
        match how & 3 {
            0 => {
                let width = 1usize << ((how >> 2) & 3);
                let value = input.u64().to_le_bytes();
                for (k, b) in value[..width.min(self.len - off)].iter().enumerate() {
                    self.byte(off + k).store(*b, Ordering::Relaxed);
                }
            }
            _ if off + 8 > self.len => {}
            1 => {
                let delta = input.u8() as i8 as i64 * [1, 8][(how >> 2) as usize & 1];
                let w = self.word(off);
                w.store(
                    w.load(Ordering::Relaxed).wrapping_add(delta as u64),
                    Ordering::Relaxed,
                );
            }
            2 => {
                let bit = input.u8() % 64;
                let w = self.word(off);
                w.store(w.load(Ordering::Relaxed) ^ (1 << bit), Ordering::Relaxed);
            }
            _ => {
                let from = input.below(self.len / 8) * 8;
                let v = self.word(from).load(Ordering::Relaxed);
                self.word(off).store(v, Ordering::Relaxed);
            }
        }
    }

    /// Runs `body` with this writer working through `script` (its own
    /// bytes, over and over, until `body` returns). Under the fuzzer it
    /// writes from a second thread while `body`'s operations run; in the
    /// stable replay tests (no `cfg(fuzzing)`) it makes one write each
    /// time `body` calls the `between` function it is given, so that a
    /// replay is deterministic. An empty script writes nothing.
    pub fn run<R>(&self, script: &[u8], body: impl FnOnce(&mut dyn FnMut()) -> R) -> R {
        if script.is_empty() {
            return body(&mut || {});
        }
        if cfg!(fuzzing) {
            writer::start(self, script);
            let r = body(&mut || {});
            writer::stop();
            r
        } else {
            let mut cursor = Input::new(script);
            body(&mut || self.write_next(script, &mut cursor))
        }
    }

    /// The next write of `script`, starting over at its end.
    fn write_next<'s>(&self, script: &'s [u8], cursor: &mut Input<'s>) {
        if cursor.is_empty() {
            *cursor = Input::new(script);
        }
        self.write(cursor);
    }
}

/// An item type for the slot queues: `Pod`, comparable, and made from a
/// counter so that each item pushed is recognisable.
pub trait Elem: bytemuck::Pod + PartialEq + Debug {
    /// The item for counter value `n`.
    fn make(n: u64) -> Self;
}

impl Elem for u8 {
    fn make(n: u64) -> Self {
        n as u8
    }
}

impl Elem for u16 {
    fn make(n: u64) -> Self {
        n as u16
    }
}

impl Elem for u64 {
    fn make(n: u64) -> Self {
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Twelve bytes aligned to four: a size that is not a power of two.
impl Elem for [u32; 3] {
    fn make(n: u64) -> Self {
        [n as u32, (n >> 32) as u32, !(n as u32)]
    }
}

/// Runs `run` on every committed input of `target`: its seed corpus
/// (`fuzz/corpus/<target>/`, which must not be empty) and its crash
/// reproducers (`fuzz/regressions/<target>/`, if any). `fuzz` is the fuzz
/// folder. This is how stable `cargo test` replays them.
pub fn replay(fuzz: &std::path::Path, target: &str, run: fn(&[u8])) {
    let mut seeds = 0;
    for (dir, required) in [("corpus", true), ("regressions", false)] {
        let dir = fuzz.join(dir).join(target);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(_) if !required => continue,
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let mut files: Vec<_> = entries
            .map(|e| e.expect("a directory entry").path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("read an input");
            eprintln!("replaying {}", file.display());
            run(&data);
            seeds += 1;
        }
    }
    assert!(seeds > 0, "no seeds for {target}");
}
