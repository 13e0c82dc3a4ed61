//! Where latch meets a web framework: layers, services, extractors and
//! responses. The rest of the crate knows nothing of any framework.

pub(crate) mod axum;
