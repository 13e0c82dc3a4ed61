//! The error type latch takes from the app's own code (user loaders,
//! remember-me stores): any error, boxed.

/// An error from the app's code, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
