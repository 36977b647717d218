//! The memory meter: the live heap bytes of an Ale run, counted by a global allocator wrapper
//! that the embedder installs.
//!
//! Why an allocator: the interpreter allocates in hundreds of places (strings, vectors,
//! objects, lists, lazy sequence cells, closures, big numbers, hash tables), and charging each
//! site by hand would always miss one. [`MeteredAlloc`] sees every allocation of the process;
//! it charges only those made on a thread while a [`MemoryMeter`] is active there, so other
//! threads and the embedder's own work outside a run pay one thread-local read per allocation
//! and are never counted.
//!
//! The count is of *live* bytes: what a run allocates and frees again costs nothing, what it
//! keeps counts until it is freed. Bytes freed during a run that were allocated before it
//! (rare: a lazy sequence in the compiled program realised for the first time drops its thunk)
//! are credited to it; that credit is bounded by what existed before the run.
//!
//! The allocator must never panic, allocate or block: its state is three `Cell`s in a
//! thread-local without a destructor, initialised at compile time, so reading it needs no lazy
//! initialisation or registration, even while a thread starts or exits.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// A global allocator that delegates to `A` and counts, per thread, the bytes allocated while
/// a [`MemoryMeter`] is active on that thread. Ale runs enforce
/// [`Limits::max_memory_bytes`](crate::Limits::max_memory_bytes) only when the program's global
/// allocator is a `MeteredAlloc` (see [`metering_installed`]):
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: argyll_ale::MeteredAlloc<std::alloc::System> =
///     argyll_ale::MeteredAlloc(std::alloc::System);
/// # fn main() {}
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct MeteredAlloc<A>(pub A);

/// Whether the global allocator is a [`MeteredAlloc`]: runs still work when it is not, but their
/// memory limit is not enforced.
pub fn metering_installed() -> bool {
    // The global allocator is fixed when the program is linked: the answer never changes.
    static ANSWER: AtomicU8 = AtomicU8::new(UNKNOWN);
    const UNKNOWN: u8 = 0;
    const NO: u8 = 1;
    const YES: u8 = 2;
    match ANSWER.load(Ordering::Relaxed) {
        NO => false,
        YES => true,
        _ => {
            // Asking the allocator itself keeps a flag out of its hot path: an allocation made
            // under a meter is counted only by a `MeteredAlloc`.
            let meter = MemoryMeter::start();
            let probe = std::hint::black_box(Box::new(0u64));
            let counted = meter.live_bytes() >= std::mem::size_of::<u64>();
            drop(probe);
            ANSWER.store(if counted { YES } else { NO }, Ordering::Relaxed);
            counted
        }
    }
}

/// One thread's meter. `depth` counts the active [`MemoryMeter`]s (a count rather than a flag,
/// so guards dropped out of order still balance); `live` and `peak` are relative to the start
/// of the outermost one.
struct ThreadMeter {
    depth: Cell<u32>,
    live: Cell<isize>,
    peak: Cell<isize>,
}

thread_local! {
    static METER: ThreadMeter = const {
        ThreadMeter {
            depth: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    };
}

/// Meters active on any thread. Allocations look at it first and, while no run is metered
/// anywhere, skip the thread-local: reaching a thread-local of another crate is an indirect
/// call, which on every allocation of the process cost about 6% of a one-step flow's CPU.
/// A thread sees its own increment before its next allocation, so a metered thread always
/// takes the counting path.
static ACTIVE_METERS: AtomicUsize = AtomicUsize::new(0);

/// Whether any meter runs anywhere (the allocator's fast way out).
#[inline]
fn any_meter_active() -> bool {
    ACTIVE_METERS.load(Ordering::Relaxed) != 0
}

/// Adds `bytes` allocated to the current thread's count when a meter is active there. Called
/// from the allocator: no allocation, no panic (`try_with` on a destructor-less thread-local
/// cannot fail, and would only skip the count if it did).
#[inline]
fn charge_allocated(bytes: isize) {
    if !any_meter_active() {
        return;
    }
    let _ = METER.try_with(|meter| {
        if meter.depth.get() > 0 {
            let live = meter.live.get().wrapping_add(bytes);
            meter.live.set(live);
            if live > meter.peak.get() {
                meter.peak.set(live);
            }
        }
    });
}

/// Takes `bytes` freed off the current thread's count when a meter is active there (a free
/// never raises the peak).
#[inline]
fn charge_freed(bytes: isize) {
    if !any_meter_active() {
        return;
    }
    let _ = METER.try_with(|meter| {
        if meter.depth.get() > 0 {
            meter.live.set(meter.live.get().wrapping_sub(bytes));
        }
    });
}

/// Layout sizes never exceed `isize::MAX`, so the conversion is exact.
#[inline]
fn signed(bytes: usize) -> isize {
    isize::try_from(bytes).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards its arguments unchanged to `A`, which upholds the
// `GlobalAlloc` contract, and returns `A`'s result unchanged; the counting on the side only
// touches thread-local `Cell`s, never allocates and never unwinds.
#[allow(unsafe_code)]
unsafe impl<A: GlobalAlloc> GlobalAlloc for MeteredAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() && any_meter_active() {
            charge_allocated(signed(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() && any_meter_active() {
            charge_allocated(signed(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { self.0.dealloc(ptr, layout) };
        if any_meter_active() {
            charge_freed(signed(layout.size()));
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let new_ptr = unsafe { self.0.realloc(ptr, layout, new_size) };
        // On failure the old block is untouched and still owned by the caller: nothing changed.
        if !new_ptr.is_null() && any_meter_active() {
            let old_size = layout.size();
            if new_size >= old_size {
                charge_allocated(signed(new_size - old_size));
            } else {
                charge_freed(signed(old_size - new_size));
            }
        }
        new_ptr
    }
}

/// Measures the memory of a run on the current thread: while it lives, every allocation and
/// free on this thread is counted (when [`MeteredAlloc`] is installed). Dropping it restores the
/// meter as it was before, so meters nest: an outer meter includes what inner ones count.
///
/// Tied to the thread it was started on (neither `Send` nor `Sync`). Meters should end in the
/// reverse order of their start, as scopes do; any other order never fails but may mix up
/// peaks.
#[derive(Debug)]
pub struct MemoryMeter {
    /// The thread's count when this meter started.
    base: isize,
    /// The peak of the enclosing meter when this one started, restored (raised by this run's
    /// peak) when it ends.
    outer_peak: isize,
    _thread_bound: PhantomData<*const ()>,
}

impl MemoryMeter {
    /// Starts counting on the current thread.
    pub fn start() -> MemoryMeter {
        ACTIVE_METERS.fetch_add(1, Ordering::Relaxed);
        let (base, outer_peak) = METER
            .try_with(|meter| {
                let depth = meter.depth.get();
                if depth == 0 {
                    // Nothing counts between runs, so the outermost run starts from zero.
                    meter.live.set(0);
                    meter.peak.set(0);
                }
                meter.depth.set(depth.saturating_add(1));
                let live = meter.live.get();
                (live, meter.peak.replace(live))
            })
            .unwrap_or((0, 0));
        MemoryMeter {
            base,
            outer_peak,
            _thread_bound: PhantomData,
        }
    }

    /// Bytes allocated on this thread since the meter started and not freed yet (zero when more
    /// was freed than allocated).
    pub fn live_bytes(&self) -> usize {
        usize::try_from(thread_live().saturating_sub(self.base)).unwrap_or(0)
    }

    /// The most [`live_bytes`](MemoryMeter::live_bytes) have been since the meter started.
    pub fn peak_bytes(&self) -> usize {
        let peak = METER.try_with(|meter| meter.peak.get()).unwrap_or(0);
        usize::try_from(peak.saturating_sub(self.base)).unwrap_or(0)
    }

    /// The thread's count at which this meter's live bytes exceed `max_bytes`.
    pub(crate) fn ceiling(&self, max_bytes: usize) -> isize {
        self.base.saturating_add(signed(max_bytes))
    }
}

impl Drop for MemoryMeter {
    fn drop(&mut self) {
        let _ = METER.try_with(|meter| {
            meter.depth.set(meter.depth.get().saturating_sub(1));
            meter.peak.set(meter.peak.get().max(self.outer_peak));
        });
        ACTIVE_METERS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The current thread's count, compared with [`MemoryMeter::ceiling`] on the evaluator's hot
/// path: one thread-local read.
#[inline]
pub(crate) fn thread_live() -> isize {
    METER.try_with(|meter| meter.live.get()).unwrap_or(0)
}

/// Runs `f` with the meter paused on this thread: for process-wide state built lazily during
/// the first run (the root namespace), which belongs to no run. `f` must not start a meter (it
/// would restart the count of the paused run).
pub(crate) fn unmetered<T>(f: impl FnOnce() -> T) -> T {
    struct Resume(u32);
    impl Drop for Resume {
        fn drop(&mut self) {
            let _ = METER.try_with(|meter| meter.depth.set(self.0));
        }
    }
    let _resume = Resume(METER.try_with(|meter| meter.depth.replace(0)).unwrap_or(0));
    f()
}
