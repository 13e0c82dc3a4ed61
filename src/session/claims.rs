//! The claims of a session token that latch keeps for itself, and how it
//! reads them: straight from the token's JSON, leniently, without building
//! the app's own claims.

use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

use crate::crypto::token::{Claims, Time};

/// Session claims latch keeps for itself. Apps may not set them, nor any
/// other name that starts with `_`.
pub(crate) const USER_ID: &str = "_user_id";
pub(crate) const FRESH: &str = "_fresh";
/// The fingerprint of the user's `auth_hash` (the wire name is Microdot-era `_auth`).
pub(crate) const FINGERPRINT: &str = "_auth";
pub(crate) const LOGIN_AT: &str = "_login_at";
/// The login's random id: a new one for every login, kept while it lasts.
pub(crate) const SESSION_ID: &str = "_sid";
/// What a token is for: [`SESSION_PURPOSE`] in a session token, `remember`
/// in a stateless remember-me token. Both are signed with the same keys, so
/// each verifier checks it and neither token is accepted as the other.
pub(crate) const PURPOSE: &str = "_purpose";
/// The [`PURPOSE`] of a session token.
pub(crate) const SESSION_PURPOSE: &str = "session";
/// The confirmation tag of a remember-me token rotated in this browser,
/// until the browser shows it holds the new token (its next request with
/// this session carries it).
pub(crate) const REMEMBER_CONFIRM: &str = "_remember_confirm";
/// A login whose password was checked and whose second factor is
/// pending: not a login (see `login::two_step`).
pub(crate) const PENDING: &str = "_pending";
/// Every claim of a login, removed together when it ends.
pub(crate) const LOGIN_CLAIMS: [&str; 7] = [
    USER_ID,
    FRESH,
    FINGERPRINT,
    LOGIN_AT,
    SESSION_ID,
    REMEMBER_CONFIRM,
    PENDING,
];
/// Standard JWT claims, set by latch on every token.
pub(crate) const EXP: &str = "exp";
pub(crate) const IAT: &str = "iat";

/// The claims of a session token that latch reads itself, read straight
/// from the token's JSON; the app's own claims are skipped, not built.
#[derive(Deserialize)]
pub(crate) struct Reserved<'a> {
    #[serde(rename = "_user_id", default)]
    pub(crate) user_id: Option<Value>,
    #[serde(rename = "_fresh", default)]
    pub(crate) fresh: Lenient<bool>,
    #[serde(rename = "_auth", default, borrow)]
    pub(crate) fingerprint: Lenient<Cow<'a, str>>,
    #[serde(rename = "_login_at", default)]
    pub(crate) login_at: Time,
    #[serde(rename = "_sid", default, borrow)]
    pub(crate) session_id: Lenient<Cow<'a, str>>,
    #[serde(rename = "_purpose", default, borrow)]
    pub(crate) purpose: Lenient<Cow<'a, str>>,
    #[serde(rename = "_remember_confirm", default, borrow)]
    pub(crate) remember_confirm: Lenient<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) exp: Time,
    #[serde(default)]
    pub(crate) iat: Time,
    #[serde(default)]
    pub(crate) nbf: Time,
}

impl<'a> Reserved<'a> {
    /// Reads the claims, or `None` if the payload is not a JSON object
    /// (or names a claim twice).
    pub(crate) fn parse(payload: &'a [u8]) -> Option<Self> {
        // A struct would also read from a JSON array; a token's claims are an object.
        let first = payload.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(payload).ok()
    }
}

/// A claim of a given JSON type: absent, of that type, or of another type
/// (which only makes that claim unusable, not the whole token).
#[derive(Default)]
pub(crate) enum Lenient<T> {
    #[default]
    Missing,
    Valid(T),
    Invalid,
}

/// Reads any JSON value: the wanted type's visits give `Valid`, the others
/// `Invalid`, and arrays and objects are skipped.
struct LenientVisitor<T>(std::marker::PhantomData<T>);

macro_rules! lenient_others {
    ($($visit:ident: $t:ty),*) => {
        $(fn $visit<E: serde::de::Error>(self, _: $t) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        })*
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(Lenient::Invalid)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            Ok(Lenient::Invalid)
        }
    };
}

impl<'de> serde::de::Visitor<'de> for LenientVisitor<bool> {
    type Value = Lenient<bool>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(v))
    }
    lenient_others!(visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
}

impl<'de> Deserialize<'de> for Lenient<bool> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<bool>(std::marker::PhantomData))
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for LenientVisitor<Cow<'a, str>> {
    type Value = Lenient<Cow<'a, str>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(Cow::Borrowed(v)))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Valid(Cow::Owned(v.to_owned())))
    }
    lenient_others!(visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_bool: bool);
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<Cow<'a, str>> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientVisitor::<Cow<'a, str>>(std::marker::PhantomData))
    }
}

pub(crate) fn add_login(
    claims: &mut Claims,
    user_id: Value,
    fingerprint: String,
    session_id: String,
    fresh: bool,
    now: u64,
) {
    // A login replaces a pending one.
    claims.remove(PENDING);
    claims.insert(SESSION_ID.to_owned(), Value::String(session_id));
    claims.insert(USER_ID.to_owned(), user_id);
    claims.insert(FRESH.to_owned(), Value::Bool(fresh));
    claims.insert(FINGERPRINT.to_owned(), Value::String(fingerprint));
    claims.insert(LOGIN_AT.to_owned(), Value::from(now));
}

/// The room an anonymous session keeps for a login's user id, in bytes of JSON.
pub(crate) const LOGIN_ROOM: usize = 100;

/// Whether `name` is kept by latch and refused to apps.
pub(crate) fn is_reserved(name: &str) -> bool {
    name.starts_with('_') || matches!(name, "exp" | "iat" | "nbf")
}
