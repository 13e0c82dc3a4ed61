//! How many heap allocations each request makes, counted by a counting
//! global allocator, for the same cases as the `login_check` benchmark.
//!
//! ```text
//! cargo bench --all-features --bench allocations
//! ```
//!
//! It is also the driver for instruction profiles (`scripts/profile`):
//! `allocations CASE REQUESTS` runs only that case, that many times.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use support::{call, get_request, Cases};

/// The system allocator, counting allocations and bytes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The cases, by the names `scripts/profile` passes.
const CASES: [&str; 8] = [
    "bare",
    "layered",
    "session",
    "session-registry",
    "renewal",
    "remember-stateless",
    "remember-store",
    "axum-login",
];

/// Sends `requests` requests of one case; the revocable token moves on.
async fn run(cases: &Cases, case: &str, requests: u64, token: &mut String) {
    for _ in 0..requests {
        match case {
            "bare" => drop(call(&cases.bare, get_request(None)).await),
            "layered" => drop(call(&cases.layered, get_request(None)).await),
            "session" => {
                drop(call(&cases.stateless, get_request(Some(&cases.session_cookie))).await)
            }
            "session-registry" => {
                drop(call(&cases.registry, get_request(Some(&cases.registry_cookie))).await)
            }
            "renewal" => drop(call(&cases.stateless, get_request(Some(&cases.aged_cookie))).await),
            "remember-stateless" => {
                drop(call(&cases.stateless, get_request(Some(&cases.remember_cookie))).await)
            }
            "remember-store" => {
                let response = call(&cases.revocable, Cases::revocable_request(token)).await;
                *token = Cases::rotated_token(&response);
            }
            "axum-login" => {
                drop(call(&cases.axum_login, get_request(Some(&cases.peer_cookie))).await)
            }
            other => panic!("unknown case {other:?}; cases: {CASES:?}"),
        }
    }
}

/// Allocations made building a request and reading the rotated token,
/// which the counts per request leave out.
fn harness_allocations(case: &str, token: &str) -> u64 {
    let before = ALLOCATIONS.load(Relaxed);
    match case {
        "remember-store" => {
            let request = Cases::revocable_request(token);
            let mut response = http::Response::new(axum::body::Body::empty());
            response.headers_mut().insert(
                http::header::SET_COOKIE,
                http::HeaderValue::from_str(&format!("_remember={token}; Path=/")).unwrap(),
            );
            drop((request, Cases::rotated_token(&response)));
        }
        // The same request as the case sends: with a cookie, or without.
        "bare" | "layered" => drop(get_request(None)),
        _ => drop(get_request(Some("session=x"))),
    }
    ALLOCATIONS.load(Relaxed) - before
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let cases = rt.block_on(Cases::new());
    let mut token = cases.revocable_token.clone();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();

    if let [case, requests] = &args[..] {
        let requests = requests.parse().expect("REQUESTS is a number");
        rt.block_on(run(&cases, case, requests, &mut token));
        return;
    }

    const REQUESTS: u64 = 10_000;
    println!("{:<22} {:>12} {:>14}", "case", "allocations", "bytes");
    println!("{:<22} {:>12} {:>14}", "", "per request", "per request");
    for case in CASES {
        rt.block_on(run(&cases, case, 1_000, &mut token));
        let harness = harness_allocations(case, &token);
        let (allocations, bytes) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        rt.block_on(run(&cases, case, REQUESTS, &mut token));
        let allocations = (ALLOCATIONS.load(Relaxed) - allocations) as f64 / REQUESTS as f64;
        let bytes = (BYTES.load(Relaxed) - bytes) as f64 / REQUESTS as f64;
        println!(
            "{case:<22} {:>12.1} {:>14.0}",
            allocations - harness as f64,
            bytes
        );
    }
    println!("\nCounts leave out building the request (and, for remember-store,");
    println!("reading the rotated token); bytes include them.");
}
