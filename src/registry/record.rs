//! What a session registry keeps: one record per browser that is logged in,
//! and the endings that every instance must hear of.

/// One browser's login, as a [`SessionStore`](crate::registry::SessionStore)
/// keeps it: what "Where you're logged in" shows.
///
/// A remembered browser is one record for as long as its remember-me
/// cookie lasts: each login the cookie restores keeps the record's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id (22 characters of base64url), as in the session
    /// cookie. Not a secret: it names the session and grants nothing.
    pub session_id: String,
    /// The user's id, as JSON text (`"user001"`, `42`).
    pub user_id: String,
    /// A short summary of the browser, like `Firefox on Linux`.
    pub device: String,
    /// When the user logged in on this browser (seconds since the Unix epoch).
    pub created_at: u64,
    /// When the browser was last seen, to within the registry's
    /// [touch period](crate::registry::RegistryBuilder::touch_every).
    pub last_active_at: u64,
    /// After this time the session cannot be valid any more (its absolute
    /// timeout, or its remember-me cookie's expiry, has passed): a store may
    /// drop the record, and an ending of it, from then on.
    pub expires_at: u64,
    /// Whether the browser holds a remember-me cookie for this session.
    pub remembered: bool,
}

/// Something that ends sessions, as every instance must hear of it.
///
/// As JSON (how the Redis store keeps its change feed), it is an object
/// tagged by `kind`: `{"kind":"session","session_id":..,"user_id":..,"until":..}`
/// or `{"kind":"user","user_id":..,"not_before":..,"except":..,"until":..}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ending {
    /// One session ends.
    Session {
        /// The session's id.
        session_id: String,
        /// The user's id, as JSON text.
        user_id: String,
        /// When the ending may be forgotten: the session could not be valid
        /// after it anyway.
        until: u64,
    },
    /// Every session of a user that logged in at or before `not_before`
    /// ends, except the one named in `except`.
    User {
        /// The user's id, as JSON text.
        user_id: String,
        /// Seconds since the Unix epoch: sessions (and remember-me
        /// cookies) made at or before it end.
        not_before: u64,
        /// A session to keep ("log out my other sessions").
        except: Option<String>,
        /// When the cut-off may be forgotten.
        until: u64,
    },
}

impl Ending {
    /// The user whose sessions end.
    ///
    /// ```
    /// use axum_latch::registry::Ending;
    ///
    /// let ending = Ending::User { user_id: "42".into(), not_before: 10, except: None, until: 20 };
    /// assert_eq!(ending.user_id(), "42");
    /// ```
    pub fn user_id(&self) -> &str {
        match self {
            Ending::Session { user_id, .. } | Ending::User { user_id, .. } => user_id,
        }
    }

    /// When the ending may be forgotten (seconds since the Unix epoch).
    ///
    /// ```
    /// use axum_latch::registry::Ending;
    ///
    /// let ending = Ending::Session { session_id: "a".into(), user_id: "42".into(), until: 20 };
    /// assert_eq!(ending.until(), 20);
    /// ```
    pub fn until(&self) -> u64 {
        match self {
            Ending::Session { until, .. } | Ending::User { until, .. } => *until,
        }
    }
}

/// An [`Ending`] as the store's change feed numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the feed: every change gets a larger number than every
    /// change recorded before it.
    pub seq: u64,
    /// What ended.
    pub ending: Ending,
}
