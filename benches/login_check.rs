//! What latch's login check costs per request: one whole router call in
//! process (`tower::ServiceExt::oneshot`, no network), next to a bare route
//! and to the same route on axum-login with tower-sessions' memory store.
//!
//! ```text
//! cargo bench --all-features --bench login_check
//! ```
//!
//! Every case answers `GET /` with "Hello, alice!" for user 1, loaded from
//! the same in-memory map; each is checked to answer 200 before it is timed.
//! See BENCHMARKS.md for the figures and what they mean.

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use support::{call, get_request, Cases};

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let cases = rt.block_on(Cases::new());

    let mut group = c.benchmark_group("login_check");
    let simple = [
        ("bare axum", &cases.bare, None),
        ("bare axum, two no-op layers", &cases.layered, None),
        (
            "latch: session cookie",
            &cases.stateless,
            Some(&cases.session_cookie),
        ),
        (
            "latch: session renewal",
            &cases.stateless,
            Some(&cases.aged_cookie),
        ),
        (
            "latch: remember restore (stateless)",
            &cases.stateless,
            Some(&cases.remember_cookie),
        ),
        (
            "axum-login 0.18: session cookie",
            &cases.axum_login,
            Some(&cases.peer_cookie),
        ),
    ];
    for (name, app, cookie) in simple {
        let cookie = cookie.map(String::as_str);
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(call(app, get_request(cookie)).await) })
        });
    }
    let current = std::cell::RefCell::new(cases.revocable_token.clone());
    group.bench_function("latch: remember restore (memory store)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (cases, current) = (&cases, &current);
            async move {
                let mut token = current.take();
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Each use rotates the token: the next request sends the
                    // new one. Reading it from the response is not timed.
                    let request = Cases::revocable_request(&token);
                    let start = Instant::now();
                    let response = call(&cases.revocable, request).await;
                    timed += start.elapsed();
                    token = Cases::rotated_token(&response);
                }
                current.replace(token);
                timed
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = login_check;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(login_check);
