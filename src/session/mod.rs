//! The `Session` layer: a session kept in a signed cookie, read lazily and
//! written back only when it changed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::config::{SiteConfig, REMEMBER_COOKIE, SESSION_COOKIE};
use crate::cookies::{self, ConfigError};
use crate::crypto::key::KeyRing;

pub(crate) mod claims;
pub(crate) mod memo;
pub(crate) mod state;
pub(crate) mod verified;
pub(crate) mod verify;

pub use cookie::SameSite;

/// The session layer: put it on the router, outside the [`Login`](crate::Login) layer.
///
/// It reads the session cookie (a signed HS256 token) when a handler or
/// latch itself first asks for the session, never before, and writes the
/// cookie back only when the session changed, was renewed, or must be
/// deleted. A cookie that is missing, tampered with, expired, duplicated or
/// unreadable is an empty session, never an error response. A duplicated
/// cookie (a second `session` planted at another path, say, by a page
/// elsewhere on the site or a sibling subdomain) cannot be told from
/// latch's own, so latch deletes the name at every path the request could
/// have carried it from; [`host_prefix`](Self::host_prefix) keeps such
/// cookies from being planted at all.
///
/// Defaults: cookie `session`, `Path=/`, `HttpOnly`, `SameSite=Lax`,
/// `Secure`, no `Max-Age` (it ends when the browser closes); an idle timeout
/// of 1 day renewed by activity (the cookie is re-issued at most once a
/// minute), and an absolute timeout of 14 days from the login (a password
/// login, or a restore from a remember-me cookie, which starts a new login).
///
/// ```
/// use axum::{routing::get, Router};
/// use axum_latch::{Session, SessionData, SecretKey};
///
/// async fn visits(session: SessionData) -> String {
///     let n: u32 = session.get("visits").unwrap_or(0) + 1;
///     session.insert("visits", n).expect("a number always serializes");
///     format!("visit number {n}")
/// }
///
/// let key = SecretKey::new("an example key, at least thirty-two bytes")?;
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(Session::new(key));
/// # Ok::<(), axum_latch::KeyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Session {
    pub(crate) config: Arc<SessionConfig>,
}

#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    /// Tells this configuration's entries in the token memo from others'.
    id: u64,
    /// What the rest of latch reads too: keys, clock, cookie names and attributes.
    pub site: SiteConfig,
    /// The session cookie's name as configured, without a prefix.
    base_name: String,
    host_prefix: bool,
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub renew_after: Duration,
    /// Accept Microdot's tokens, which lack latch's claims, until a deadline.
    pub microdot_compat: Option<MicrodotCompat>,
}

/// Microdot interop mode: until when Microdot's own tokens are accepted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MicrodotCompat {
    /// Seconds since the Unix epoch.
    until: u64,
}

impl MicrodotCompat {
    /// Whether Microdot's tokens are still accepted at `now` (seconds).
    pub fn open_at(&self, now: u64) -> bool {
        now < self.until
    }
}

impl Session {
    /// A session layer that signs with `keys` (a [`SecretKey`](crate::SecretKey)
    /// or a [`KeyRing`]).
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// let session = Session::new(SecretKey::generate()?);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn new(keys: impl Into<KeyRing>) -> Self {
        Self {
            config: Arc::new(SessionConfig {
                id: memo::next_config_id(),
                site: SiteConfig::new(keys.into()),
                base_name: SESSION_COOKIE.to_owned(),
                host_prefix: false,
                idle_timeout: Duration::from_secs(24 * 60 * 60),
                absolute_timeout: Duration::from_secs(14 * 24 * 60 * 60),
                renew_after: Duration::from_secs(60),
                microdot_compat: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut SessionConfig)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.id = memo::next_config_id();
        self
    }

    /// Whether cookies carry `Secure` (default `true`). Turn it off only for
    /// development over plain HTTP: browsers do not send `Secure` cookies
    /// over `http://` except to `localhost`. Turning it off also turns off
    /// the [`__Host-` prefix](Self::host_prefix), which needs it (with a
    /// warning in the log).
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// // Development over plain http:// only.
    /// let session = Session::new(SecretKey::generate()?).secure(false);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn secure(self, secure: bool) -> Self {
        self.edit(|c| {
            c.site.attributes.secure = secure;
            if !secure && c.host_prefix {
                tracing::warn!(target: "latch", "Session::secure(false) turns off the __Host- cookie prefix, which needs Secure");
                c.host_prefix = false;
                c.name_cookies();
            }
        })
    }

    /// Names the cookies with the `__Host-` prefix (`__Host-session`,
    /// `__Host-_remember`). Browsers then accept them only with `Secure`,
    /// `Path=/` and no `Domain`, so a subdomain or a plain-HTTP page of the
    /// same site cannot plant or overwrite them: the defence against a
    /// planted duplicate that keeps a user logged out, or logs them in as
    /// someone else. Use it whenever the site is served over HTTPS.
    ///
    /// Fails if `Secure` is off, the path is not `/` or a domain is set; and
    /// afterwards, [`path`](Self::path) and [`domain`](Self::domain) refuse
    /// what the prefix forbids.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// let session = Session::new(SecretKey::generate()?).host_prefix()?;
    /// assert!(Session::new(SecretKey::generate()?).domain("example.com")?.host_prefix().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn host_prefix(self) -> Result<Self, ConfigError> {
        let a = &self.config.site.attributes;
        if !a.secure {
            return Err(ConfigError::HostPrefix("Secure is off"));
        }
        if a.path != "/" {
            return Err(ConfigError::HostPrefix("the path is not `/`"));
        }
        if a.domain.is_some() {
            return Err(ConfigError::HostPrefix("a domain is set"));
        }
        Ok(self.edit(|c| {
            c.host_prefix = true;
            c.name_cookies();
        }))
    }

    /// The `SameSite` attribute of the cookies (default `Lax`).
    ///
    /// ```
    /// use axum_latch::session::SameSite;
    /// use axum_latch::{SecretKey, Session};
    ///
    /// let session = Session::new(SecretKey::generate()?).same_site(SameSite::Strict);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.site.attributes.same_site = same_site)
    }

    /// The session cookie's name (default `session`, as in Microdot).
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// let session = Session::new(SecretKey::generate()?).cookie_name("myapp_session")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cookie_name(self, name: &str) -> Result<Self, ConfigError> {
        cookies::check_name(name)?;
        Ok(self.edit(|c| {
            c.base_name = name.to_owned();
            c.name_cookies();
        }))
    }

    /// The cookies' `Path` (default `/`).
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// // An app served under /app: its cookies go only there.
    /// let session = Session::new(SecretKey::generate()?).path("/app")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(self, path: &str) -> Result<Self, ConfigError> {
        cookies::check_path(path)?;
        if self.config.host_prefix && path != "/" {
            return Err(ConfigError::HostPrefix("the path is not `/`"));
        }
        Ok(self.edit(|c| c.site.attributes.path = path.to_owned()))
    }

    /// The cookies' `Domain` (default none: the cookie goes to this host only).
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    ///
    /// // Shared by www.example.com and app.example.com.
    /// let session = Session::new(SecretKey::generate()?).domain("example.com")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn domain(self, domain: &str) -> Result<Self, ConfigError> {
        cookies::check_domain(domain)?;
        if self.config.host_prefix {
            return Err(ConfigError::HostPrefix("a domain is set"));
        }
        Ok(self.edit(|c| c.site.attributes.domain = Some(domain.to_owned())))
    }

    /// How long a session lasts without being used (default 1 day). Each use
    /// pushes the end back; the cookie is re-issued at most once a minute.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    /// use std::time::Duration;
    ///
    /// let session = Session::new(SecretKey::generate()?).idle_timeout(Duration::from_secs(30 * 60));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn idle_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.idle_timeout = timeout)
    }

    /// How long a login lasts at most, whatever the activity (default 14
    /// days), counted from when it was made: the password login, or, for a
    /// login restored from a remember-me cookie, the restore. A remembered
    /// browser is logged in again by its remember cookie when the timeout
    /// ends the session, so with remember-me the login as a whole lasts as
    /// long as the remember cookie does (30 days by default), each session
    /// within it at most this long. What ends a remembered login for good is
    /// logout, the remember cookie's expiry, or a change of `auth_hash`.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    /// use std::time::Duration;
    ///
    /// let session = Session::new(SecretKey::generate()?).absolute_timeout(Duration::from_secs(8 * 3600));
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn absolute_timeout(self, timeout: Duration) -> Self {
        self.edit(|c| c.absolute_timeout = timeout)
    }

    /// Where latch reads the time (default the system's): a test of the
    /// app can hand it a [`Clock::manual`] and move it forward to see a
    /// session expire without waiting. The [`Login`](crate::Login) layer
    /// reads the same clock (for freshness and remember-me).
    ///
    /// ```
    /// use axum_latch::clock::Clock;
    /// use axum_latch::{SecretKey, Session};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let clock = Clock::manual(SystemTime::now());
    /// let session = Session::new(SecretKey::generate()?).clock(clock.clone());
    /// // ... log in through the app, then:
    /// clock.advance(Duration::from_secs(2 * 24 * 60 * 60)); // past the idle timeout
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn clock(self, clock: Clock) -> Self {
        self.edit(|c| c.site.clock = clock)
    }

    /// Microdot interop mode (off by default), until `until`: a Microdot
    /// app and this one, with the same secret key, share logins both ways
    /// while an app moves from Microdot to latch.
    ///
    /// latch's own tokens already read in Microdot (it ignores the claims it
    /// does not know). This mode makes latch accept Microdot's tokens too,
    /// by their exact shape (a session token with none of latch's claims; a
    /// remember token of exactly `user_id`, `days` and `exp`), and re-issue
    /// them at once as latch tokens:
    ///
    /// - a Microdot login is *adopted*: tied to the user's current
    ///   `auth_hash` from then on, its absolute timeout counted from the
    ///   adoption, and **never fresh** (latch cannot tell when, or whether,
    ///   a password was typed), so [`FreshUser`](crate::FreshUser) asks for
    ///   the password again;
    /// - a Microdot remember cookie logs the user in (not freshly) and is
    ///   replaced by a latch one.
    ///
    /// What the mode gives up: a Microdot token has no fingerprint of the
    /// user's credentials, and a Microdot session token has no expiry and no
    /// time at all. So a *copy* of a Microdot cookie is adopted again each
    /// time it is presented, up to `until`, unless the user record says
    /// when its `auth_hash` last changed
    /// ([`User::auth_hash_changed_at`](crate::User::auth_hash_changed_at)):
    ///
    /// | | without `auth_hash_changed_at` | with it |
    /// |---|---|---|
    /// | Microdot session token, after a password change or "log out everywhere" | adopted until `until` | refused (it cannot show it was made after the change) |
    /// | Microdot remember token made before the change | adopted until `until` | refused |
    /// | Microdot remember token made after the change | adopted until `until` | adopted until `until` |
    /// | any Microdot token after `until` | refused | refused |
    ///
    /// After `until`, only latch's tokens log in: users whose last login
    /// was on Microdot log in again. Pick the end of the migration, weeks
    /// rather than years away. What latch enforces on Microdot tokens
    /// throughout: the signature (HS256 with the key ring), the header,
    /// `exp` where the token has one, and the shape.
    ///
    /// ```
    /// use axum_latch::{SecretKey, Session};
    /// use std::time::{Duration, SystemTime};
    ///
    /// let key = SecretKey::new("the secret_key of the Microdot app, 32+ bytes")?;
    /// let migration_ends = SystemTime::now() + Duration::from_secs(30 * 24 * 60 * 60);
    /// let session = Session::new(key).microdot_compat(migration_ends);
    /// # Ok::<(), axum_latch::KeyError>(())
    /// ```
    pub fn microdot_compat(self, until: SystemTime) -> Self {
        let until = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.edit(|c| c.microdot_compat = Some(MicrodotCompat { until }))
    }
}

impl SessionConfig {
    /// Sets the names the cookies are sent under.
    fn name_cookies(&mut self) {
        let prefix = if self.host_prefix { "__Host-" } else { "" };
        self.site.cookie_name = format!("{prefix}{}", self.base_name);
        self.site.remember_cookie = format!("{prefix}{REMEMBER_COOKIE}");
    }
}

/// The largest session cookie latch writes (`name=value`), in bytes:
/// browsers keep cookies of about 4 KB at most, and drop larger ones silently.
pub const MAX_COOKIE_LEN: usize = 4000;

/// Why a value could not be put in the session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The name is kept by latch: `exp`, `iat`, `nbf`, or one that starts with `_`.
    #[error("the session key {0:?} is reserved by latch: pick a name that does not start with `_` and is not `exp`, `iat` or `nbf`")]
    ReservedKey(String),
    /// The session would be too large for a cookie with this value in it.
    #[error(
        "the session would be larger than the {max} bytes a browser keeps in a cookie with {key:?} in it: \
         keep large data on the server and only its id in the session"
    )]
    TooLarge {
        /// The session key.
        key: String,
        /// The limit, in bytes.
        max: usize,
    },
    /// The value could not be turned into JSON.
    #[error("the value for session key {key:?} cannot be stored as JSON: {source}")]
    Serialize {
        /// The session key.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
}
