//! Prints how much memory a session registry's in-memory set of ended
//! sessions takes, for 1,000,000 ended sessions (the target is under
//! 64 MiB), measured as the heap the registry keeps after loading them.
//!
//! Run: `cargo bench --features memory --bench registry_memory`.

mod support;

use axum_latch::registry::SessionRegistry;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

/// The system allocator, keeping a count of the bytes in use.
struct Live;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Live {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Live = Live;

fn mib(bytes: isize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    println!(
        "{:>12} {:>16} {:>14}",
        "ended", "registry heap", "per session"
    );
    // `cargo test` runs this file too, without `--bench`: a smoke run then.
    let measuring = std::env::args().any(|a| a == "--bench");
    let counts: &[u64] = if measuring {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[1_000]
    };
    for &count in counts {
        let store = rt.block_on(support::store_with_endings(count));
        let before = LIVE.load(Relaxed);
        let registry = rt
            .block_on(SessionRegistry::connect(store.clone()))
            .expect("the memory store answers");
        let kept = LIVE.load(Relaxed) - before;
        let size = registry.ended_size();
        assert_eq!(size.sessions as u64, count, "every ending loaded");
        println!(
            "{count:>12} {:>12.1} MiB {:>10.1} B",
            mib(kept),
            kept as f64 / count as f64
        );
        drop(registry);
        drop(store);
    }
    println!("\nThe registry's heap after loading the endings from its store: the");
    println!("set of ended sessions (and one user cut-off), not the store's copy.");
}
