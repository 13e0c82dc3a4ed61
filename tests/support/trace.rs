//! latch's `tracing` events, captured per test.
//!
//! One global subscriber per test binary hands each event to the capture of
//! the thread it happens on, if that thread is capturing ([`capture`]). A
//! current-thread `#[tokio::test]` runs the app on the test's own thread, so
//! a test sees its own events and no other test's.
//!
//! A global subscriber rather than `set_default`: with scoped subscribers, a
//! callsite first hit on another test's thread can be cached as
//! uninteresting while this thread's subscriber is being registered, and
//! the event is lost.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, Once};
use tracing_subscriber::layer::SubscriberExt as _;

/// One event.
#[derive(Debug, Clone)]
pub struct CapturedEvent {
    pub level: tracing::Level,
    pub target: String,
    /// Every field, the message included, as `name=value`.
    pub fields: Vec<(String, String)>,
}

impl CapturedEvent {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The message, or `""`.
    pub fn message(&self) -> &str {
        self.field("message").unwrap_or("")
    }

    /// The fields as `name=value ...`.
    pub fn text(&self) -> String {
        self.fields
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `LEVEL target: name=value ...`.
    pub fn line(&self) -> String {
        format!("{} {}: {}", self.level, self.target, self.text())
    }

    /// Why latch refused a cookie or a login, for an event such as
    /// `session cookie rejected` with a `reason` (or `error`) field, or
    /// `login rejected: no such user`: `"<what> rejected: <why>"`.
    pub fn rejection(&self) -> Option<String> {
        if self.target != "latch" {
            return None;
        }
        let message = self.message();
        if !message.contains("rejected") {
            return None;
        }
        match self.field("reason").or_else(|| self.field("error")) {
            Some(why) => Some(format!("{message}: {why}")),
            None => Some(message.to_owned()),
        }
    }
}

/// The events captured on one test's thread.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<CapturedEvent>>>);

impl Captured {
    /// Every event so far.
    pub fn events(&self) -> Vec<CapturedEvent> {
        self.0.lock().unwrap().clone()
    }

    /// Every event since the last `take`, as [`CapturedEvent::line`]s.
    pub fn take(&self) -> Vec<String> {
        let events = std::mem::take(&mut *self.0.lock().unwrap());
        events.iter().map(CapturedEvent::line).collect()
    }

    /// The `error` events since the last `take`, as lines.
    pub fn take_errors(&self) -> Vec<String> {
        let mut lines = self.take();
        lines.retain(|line| line.starts_with("ERROR "));
        lines
    }

    /// Why latch refused what it refused since the last `take`, in order
    /// (see [`CapturedEvent::rejection`]).
    pub fn take_rejections(&self) -> Vec<String> {
        let events = std::mem::take(&mut *self.0.lock().unwrap());
        events.iter().filter_map(CapturedEvent::rejection).collect()
    }
}

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

/// The global subscriber's one layer.
struct ThreadCapture;

thread_local! {
    static CAPTURE: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ThreadCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        CAPTURE.with(|capture| {
            let Some(captured) = &*capture.borrow() else {
                return;
            };
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            captured.0.lock().unwrap().push(CapturedEvent {
                level: *event.metadata().level(),
                target: event.metadata().target().to_owned(),
                fields: fields.0,
            });
        });
    }
}

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(ThreadCapture);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
}

/// Captures the events of this thread until the guard is dropped.
pub fn capture() -> (Captured, CaptureGuard) {
    install();
    let captured = Captured::default();
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(captured.clone()));
    (captured, CaptureGuard)
}

/// Ends a [`capture`] when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| *capture.borrow_mut() = None);
    }
}

/// The one `warn` event with target `latch` among `events`, which names
/// the user `user_id` (a theft report); panics unless there is exactly one.
pub fn one_latch_warning<'a>(events: &'a [CapturedEvent], user_id: &str) -> &'a CapturedEvent {
    let warnings: Vec<&CapturedEvent> = events
        .iter()
        .filter(|e| e.level == tracing::Level::WARN && e.target == "latch")
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warn event with target latch: {events:#?}"
    );
    let warning = warnings[0];
    let named = warning
        .field("user_id")
        .unwrap_or_else(|| panic!("the warning names the user: {warning:#?}"));
    assert!(named.contains(user_id), "{named}");
    warning
}

/// Runs `f`, and returns what it gave and why latch refused what it
/// refused meanwhile (see [`Captured::take_rejections`]).
pub async fn rejections_of<T>(f: impl std::future::Future<Output = T>) -> (T, Vec<String>) {
    let (captured, guard) = capture();
    let out = f.await;
    drop(guard);
    (out, captured.take_rejections())
}
