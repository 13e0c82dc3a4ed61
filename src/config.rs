//! The settings every part of latch reads: the keys, the clock, and the
//! names and attributes of latch's two cookies. The `Session` layer is
//! where an app sets them; the login, remember-me and response code read
//! them from here, not from the session layer's own settings.

use crate::clock::Clock;
use crate::cookies::CookieAttributes;
use crate::crypto::key::KeyRing;

/// The session cookie's name, as in Microdot (before any prefix).
pub(crate) const SESSION_COOKIE: &str = "session";

/// The remember-me cookie's name, as in Microdot (before any prefix).
pub(crate) const REMEMBER_COOKIE: &str = "_remember";

/// latch's settings for the site it serves.
#[derive(Clone, Debug)]
pub(crate) struct SiteConfig {
    /// The keys every cookie is signed and checked with.
    pub keys: KeyRing,
    /// Where every part of latch reads the time.
    pub clock: Clock,
    /// The session cookie's name as sent, with the `__Host-` prefix if on.
    pub cookie_name: String,
    /// The remember-me cookie's name as sent.
    pub remember_cookie: String,
    /// The attributes both cookies are written with.
    pub attributes: CookieAttributes,
}

impl SiteConfig {
    /// The defaults, signing with `keys`.
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys,
            clock: Clock::system(),
            cookie_name: SESSION_COOKIE.to_owned(),
            remember_cookie: REMEMBER_COOKIE.to_owned(),
            attributes: CookieAttributes::default(),
        }
    }
}
