//! Attack: forged tokens. Whatever an attacker makes of latch's two tokens
//! (the `session` cookie and the `_remember` cookie) without the key, the
//! request is anonymous, never a panic, never a 5xx; and the few tokens that
//! are signed with the key but say something latch never writes are refused
//! too.
//!
//! Every test runs its cases, each named for the attack, against both
//! tokens of a real login (see `support::attack`), unless it is about one
//! of them. The controls come first: good tokens, real and hand-signed, do
//! log in, so the refusals mean something.

use crate::support;

use axum::http::{HeaderValue, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use serde_json::{json, Value};
use sha2::Sha512;
use support::attack::*;
use support::jwt;
use support::KEY;

// ---------------------------------------------------------------------------
// Controls: good tokens do log in
// ---------------------------------------------------------------------------

#[tokio::test]
async fn control_a_good_session_cookie_logs_in() {
    let app = app();
    let fx = fixtures(&app).await;
    let outcome = assert_alice(
        &app,
        &[header("session", &fx.session)],
        true,
        "the good session",
    )
    .await;
    assert_eq!(
        outcome.data,
        (StatusCode::OK, "dark".to_owned()),
        "the session data is there"
    );
}

#[tokio::test]
async fn control_a_good_remember_cookie_logs_in_not_freshly() {
    let app = app();
    let fx = fixtures(&app).await;
    let outcome = assert_alice(
        &app,
        &[header("_remember", &fx.remember)],
        false,
        "the good remember cookie",
    )
    .await;
    assert!(
        outcome.issued("_remember").is_some(),
        "the remember cookie is rotated: {:?}",
        outcome.set_cookies
    );
}

#[tokio::test]
async fn control_hand_signed_tokens_are_accepted() {
    // The hand-made HMAC agrees with latch's, so the cases "signed with the
    // key" below really do carry a good signature.
    let app = app();
    let fx = fixtures(&app).await;
    assert_eq!(
        signed_claims(&fx.session_claims),
        fx.session,
        "the same bytes, the same token"
    );
    let session = signed_payload(&raw_payload(&fx.session_claims, "_user_id", "1"));
    assert_alice(
        &app,
        &[header("session", &session)],
        true,
        "hand-signed session",
    )
    .await;
    let remember = signed_payload(&raw_payload(&fx.remember_claims, "user_id", "1"));
    assert_alice(
        &app,
        &[header("_remember", &remember)],
        false,
        "hand-signed remember",
    )
    .await;
    // And a header in another key order, also signed by hand, is fine.
    let (_, p, _) = split(&fx.session);
    let reordered = sign_segments(&b64(br#"{"typ":"JWT","alg":"HS256"}"#), p, KEY);
    assert_alice(
        &app,
        &[header("session", &reordered)],
        true,
        "header in another order",
    )
    .await;
}

// ---------------------------------------------------------------------------
// The signature
// ---------------------------------------------------------------------------

/// `signature` (43 base64url characters for 32 bytes) with its two unused
/// trailing bits set: other text for the same bytes.
fn with_trailing_bits(signature: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *signature.as_bytes().last().unwrap();
    let index = ALPHABET.iter().position(|&c| c == last).unwrap();
    let mut text = signature[..signature.len() - 1].to_owned();
    text.push(ALPHABET[index | 0b11] as char);
    text
}

#[tokio::test]
async fn a_tampered_signature_is_anonymous() {
    assert_forgeries_refused(reasons::SIGNATURE, |t, _| {
        let (h, p, s) = split(t.token);
        vec![
            forged(
                "signature with one character changed",
                format!("{h}.{p}.{}", flip(s, 10)),
            ),
            forged(
                "signature with its last character changed",
                format!("{h}.{p}.{}", flip(s, s.len() - 1)),
            ),
            forged(
                "signature of 32 zero bytes",
                format!("{h}.{p}.{}", b64([0u8; 32])),
            ),
            forged(
                "signature re-encoded with its unused trailing bits set",
                format!("{h}.{p}.{}", with_trailing_bits(s)),
            )
            // Strict base64url: the text is refused before any HMAC.
            .because(reasons::MALFORMED),
        ]
    })
    .await;
}

#[tokio::test]
async fn alg_none_is_anonymous() {
    assert_forgeries_refused(reasons::HEADER, |t, _| {
        let (_, p, s) = split(t.token);
        let none = b64(br#"{"alg":"none","typ":"JWT"}"#);
        vec![
            forged("alg none, signature stripped", format!("{none}.{p}."))
                .because(reasons::MALFORMED),
            forged(
                "alg none, the original signature",
                format!("{none}.{p}.{s}"),
            )
            .because(reasons::SIGNATURE),
            forged(
                "alg none, signed with the key",
                sign_segments(&none, p, KEY),
            ),
            forged(
                "alg None, signed with the key",
                sign_segments(&b64(br#"{"alg":"None"}"#), p, KEY),
            ),
            forged(
                "alg NONE, signature stripped",
                format!("{}.{p}.", b64(br#"{"alg":"NONE"}"#)),
            )
            .because(reasons::MALFORMED),
            forged(
                "alg none, no signature segment at all",
                format!("{none}.{p}"),
            )
            .because(reasons::MALFORMED),
        ]
    })
    .await;
}

/// A real HS512 token over `header.payload`, signed with `key`.
fn hs512(header: &str, payload: &str, key: &str) -> String {
    let signed = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha512>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    format!("{signed}.{}", b64(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn alg_hs512_and_other_algorithms_are_anonymous() {
    assert_forgeries_refused(reasons::HEADER, |t, _| {
        let (_, p, s) = split(t.token);
        let alg = |name: &str| b64(format!(r#"{{"alg":"{name}","typ":"JWT"}}"#));
        vec![
            forged(
                "alg HS512, the original signature",
                format!("{}.{p}.{s}", alg("HS512")),
            )
            .because(reasons::SIGNATURE),
            // A 64-byte signature is the wrong length for HS256: the shape
            // check refuses it before the header is read. The cases below,
            // with an HS256 signature, are the ones the header check refuses.
            forged(
                "alg HS512, a real HMAC-SHA512 signature with the key",
                hs512(&alg("HS512"), p, KEY),
            )
            .because(reasons::MALFORMED),
        ]
        .into_iter()
        .chain(["HS512", "HS384", "RS256", "ES256", "hs256"].map(|name| {
            forged(
                format!("alg {name}, signed with the key"),
                sign_segments(&alg(name), p, KEY),
            )
        }))
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_missing_alg_or_an_odd_header_is_anonymous() {
    assert_forgeries_refused(reasons::HEADER, |t, _| {
        let (_, p, _) = split(t.token);
        let mut cases: Vec<Forgery> = [
            ("alg missing", br#"{"typ":"JWT"}"#.as_slice()),
            ("alg null", br#"{"alg":null,"typ":"JWT"}"#),
            ("alg an array", br#"{"alg":["HS256"],"typ":"JWT"}"#),
            ("alg twice, none last", br#"{"alg":"HS256","alg":"none"}"#),
            ("typ JWS", br#"{"alg":"HS256","typ":"JWS"}"#),
            ("typ jwt in lower case", br#"{"alg":"HS256","typ":"jwt"}"#),
            ("typ null", br#"{"alg":"HS256","typ":null}"#),
            ("typ a number", br#"{"alg":"HS256","typ":1}"#),
            ("a kid", br#"{"alg":"HS256","kid":"../../etc/passwd"}"#),
            ("a jku", br#"{"alg":"HS256","jku":"https://evil.example/"}"#),
            (
                "an embedded jwk",
                br#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
            ),
            ("a crit", br#"{"alg":"HS256","crit":["exp"]}"#),
            ("a JSON array", b"[]"),
            ("the empty object", b"{}"),
            ("not JSON", b"HS256"),
        ]
        .into_iter()
        .map(|(name, header)| {
            forged(
                format!("header {name}, signed with the key"),
                sign_segments(&b64(header), p, KEY),
            )
        })
        .collect();
        cases.push(forged(
            "empty header, signed with the key",
            sign_segments("", p, KEY),
        ));
        cases
    })
    .await;
}

// ---------------------------------------------------------------------------
// Another key
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_signed_with_another_key_is_anonymous() {
    let now = jwt::now();
    assert_forgeries_refused(reasons::SIGNATURE, |t, _| {
        vec![
            forged(
                "the same claims, signed with another key",
                jwt::encode(t.claims, OTHER_KEY),
            ),
            forged(
                "only app data, signed with another key",
                jwt::encode(
                    json!({"theme": "dark", "iat": now, "exp": now + 3600})
                        .as_object()
                        .unwrap(),
                    OTHER_KEY,
                ),
            ),
            forged(
                "signed with an empty key",
                sign_raw(HS256, &serde_json::to_vec(t.claims).unwrap(), ""),
            ),
            forged(
                "signed with the key in upper case",
                sign_raw(
                    HS256,
                    &serde_json::to_vec(t.claims).unwrap(),
                    &KEY.to_uppercase(),
                ),
            ),
        ]
    })
    .await;
}

/// Another user's id, re-signed with a key that is not the app's: the
/// forger's best guess at a key gets nobody in, as anyone.
#[tokio::test]
async fn another_user_s_id_re_signed_with_a_wrong_key_is_anonymous() {
    let wrong_key = "another key that is at least thirty-two bytes";
    assert_forgeries_refused(reasons::SIGNATURE, |t, logins| {
        let bobs = with(t.claims, t.id_field, json!(2));
        let (_, bobs_token) = logins.bobs(t);
        vec![
            forged(
                "bob's id, re-signed with a wrong key",
                jwt::encode(&bobs, wrong_key),
            ),
            forged(
                "bob's id as a string, re-signed with a wrong key",
                jwt::encode(&with(t.claims, t.id_field, json!("2")), wrong_key),
            ),
            forged(
                "bob's whole real claims, re-signed with a wrong key",
                jwt::encode(bobs_token, wrong_key),
            ),
        ]
    })
    .await;
}

// ---------------------------------------------------------------------------
// Moved payloads
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_payload_moved_onto_another_token_s_signature_is_anonymous() {
    assert_forgeries_refused(reasons::SIGNATURE, |t, logins| {
        let (h, p, s) = split(t.token);
        let (_, bob_p, bob_s) = split(logins.bobs(t).0);
        let (_, session_p, _) = split(&logins.alice.session);
        let (_, remember_p, _) = split(&logins.alice.remember);
        let edited = b64(serde_json::to_vec(&with(t.claims, t.id_field, json!(2))).unwrap());
        vec![
            forged(
                "bob's real payload on alice's signature",
                format!("{h}.{bob_p}.{s}"),
            ),
            forged(
                "alice's payload on bob's signature",
                format!("{h}.{p}.{bob_s}"),
            ),
            forged(
                "alice's payload edited to bob's id, on alice's signature",
                format!("{h}.{edited}.{s}"),
            ),
            forged(
                "alice's remember payload on this signature",
                format!("{h}.{remember_p}.{s}"),
            ),
            forged(
                "alice's session payload on this signature",
                format!("{h}.{session_p}.{s}"),
            ),
            forged(
                "payload with one character changed",
                format!("{h}.{}.{s}", flip(p, p.len() / 2)),
            ),
        ]
        .into_iter()
        // The token's own payload on its own signature is no forgery.
        .filter(|forgery| forgery.token != t.token)
        .collect()
    })
    .await;
}

// ---------------------------------------------------------------------------
// The shape: segments and encoding
// ---------------------------------------------------------------------------

#[tokio::test]
async fn truncated_or_extra_segments_are_anonymous() {
    assert_forgeries_refused(reasons::MALFORMED, |t, _| {
        let valid = t.token;
        let (h, p, s) = split(valid);
        vec![
            forged("signature cut off", format!("{h}.{p}")),
            forged("empty signature", format!("{h}.{p}.")),
            forged(
                "token truncated by one character",
                valid[..valid.len() - 1].to_owned(),
            ),
            forged("token cut in half", valid[..valid.len() / 2].to_owned()),
            forged("one character appended", format!("{valid}x")),
            forged("padded with =", format!("{valid}=")),
            forged("two parts: header and signature", format!("{h}.{s}")),
            forged("two parts: payload and signature", format!("{p}.{s}")),
            forged("four parts: a segment appended", format!("{valid}.{s}")),
            forged("four parts: payload twice", format!("{h}.{p}.{p}.{s}")),
            forged("four parts: an empty segment", format!("{h}..{p}.{s}")),
            forged("the token twice", format!("{valid}{valid}")),
            forged("the token twice, dot-joined", format!("{valid}.{valid}")),
            forged("only a dot", ".".to_owned()),
            forged("only two dots", "..".to_owned()),
            forged("four dots", "....".to_owned()),
            forged("one word", "hello".to_owned()),
            forged("not a token", "not a token".to_owned()),
        ]
    })
    .await;
}

#[tokio::test]
async fn non_base64_tokens_are_anonymous() {
    assert_forgeries_refused(reasons::MALFORMED, |t, _| {
        let (h, p, s) = split(t.token);
        let payload = serde_json::to_vec(t.claims).unwrap();
        vec![
            forged(
                "signature of 43 characters that are not base64",
                format!("{h}.{p}.{}", "*".repeat(43)),
            ),
            forged("signature in padded standard base64", {
                let signature = STANDARD.encode(mac(KEY, format!("{h}.{p}").as_bytes()));
                format!("{h}.{p}.{signature}")
            }),
            forged(
                "signature in hex",
                format!(
                    "{h}.{p}.{}",
                    mac(KEY, format!("{h}.{p}").as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ),
            ),
            forged(
                "payload with bad base64",
                format!("{h}.!!!!{}.{s}", &p[4..]),
            )
            // The signature covers the text: checked before any decoding.
            .because(reasons::SIGNATURE),
            forged(
                "payload with a space inside",
                format!("{h}.{} {}.{s}", &p[..5], &p[5..]),
            )
            .because(reasons::SIGNATURE),
            forged(
                "payload in padded standard base64, signed with the key",
                sign_segments(h, &STANDARD.encode(padded(&payload)), KEY),
            )
            .because(reasons::PAYLOAD),
            forged(
                "payload as plain JSON, signed with the key",
                sign_segments(h, &String::from_utf8(payload.clone()).unwrap(), KEY),
            )
            .because(reasons::PAYLOAD),
            forged(
                "header not base64, signed with the key",
                sign_segments("!!!!", p, KEY),
            )
            .because(reasons::HEADER),
        ]
    })
    .await;
}

/// `json` with spaces added after it, so that its base64 needs padding:
/// otherwise the standard encoding of a payload without `+` or `/` is the
/// URL-safe one, and the token a good one.
fn padded(json: &[u8]) -> Vec<u8> {
    let mut json = json.to_vec();
    while json.len().is_multiple_of(3) {
        json.push(b' ');
    }
    json
}

// ---------------------------------------------------------------------------
// Signed with the key, but nothing latch writes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_signed_payload_that_is_not_a_claims_object_is_anonymous() {
    assert_forgeries_refused(reasons::PAYLOAD, |t, _| {
        let nested = format!(
            "{{\"{}\":{}1{}}}",
            t.id_field,
            "[".repeat(3000),
            "]".repeat(3000)
        );
        let trailing = [serde_json::to_vec(t.claims).unwrap(), b"}garbage".to_vec()].concat();
        [
            ("a JSON array", b"[1,2,3]".to_vec()),
            ("a JSON number", b"42".to_vec()),
            ("a JSON string", br#""_user_id""#.to_vec()),
            ("JSON null", b"null".to_vec()),
            ("invalid JSON", br#"{"_user_id":1,"#.to_vec()),
            ("JSON with trailing garbage", trailing),
            ("not UTF-8", b"{\"_user_id\":\"\xff\xfe\"}".to_vec()),
            ("empty", Vec::new()),
            ("3000 nested arrays", nested.into_bytes()),
        ]
        .into_iter()
        .map(|(name, payload)| forged(format!("payload {name}, signed"), signed_payload(&payload)))
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_user_id_of_the_wrong_shape_is_anonymous() {
    assert_forgeries_refused(reasons::USER_ID_TYPE, |t, _| {
        [
            ("a number too big for JSON (1e400)", "1e400"),
            ("a number too big for u64", "18446744073709551616"),
            ("a huge number (1e300)", "1e300"),
            ("negative", "-1"),
            ("a fraction", "1.5"),
            ("a float", "1.0"),
            ("a string", "\"1\""),
            ("an empty string", "\"\""),
            ("a boolean", "true"),
            ("null", "null"),
            ("an array", "[1]"),
            ("an object", "{\"id\":1}"),
            ("a user that does not exist", "99"),
        ]
        .into_iter()
        .map(|(label, raw)| {
            let name = format!("{} {label}, signed", t.id_field);
            let token = signed_payload(&raw_payload(t.claims, t.id_field, raw));
            // 1e400 is no JSON serde can read: the token itself is refused.
            match raw {
                "1e400" => forged(name, token).because(reasons::PAYLOAD),
                // A session's null id is no login at all; a remember token
                // without one is refused.
                "null" if t.cookie == "session" => {
                    forged_login(name, token).because(reasons::NONE_LOGGED)
                }
                "null" => forged_login(name, token).because("no user id"),
                "99" => forged_login(name, token).because(reasons::NO_SUCH_USER),
                _ => forged_login(name, token),
            }
        })
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_missing_or_forged_fingerprint_is_anonymous() {
    assert_forgeries_refused(reasons::AUTH_HASH_CHANGED, |t, logins| {
        let bobs_fingerprint = logins.bobs(t).1["_auth"].clone();
        assert!(bobs_fingerprint.is_string(), "{bobs_fingerprint}");
        [
            ("missing", None),
            ("empty", Some(json!(""))),
            ("of another value", Some(json!("AAAAAAAAAAAAAAAAAAAAAA"))),
            ("bob's, on alice's id", Some(bobs_fingerprint)),
            ("a number", Some(json!(1))),
            ("null", Some(Value::Null)),
        ]
        .into_iter()
        .map(|(label, value)| {
            let edited = match value {
                None => without(t.claims, "_auth"),
                Some(value) => with(t.claims, "_auth", value),
            };
            let forgery = forged_login(format!("_auth {label}, signed"), signed_claims(&edited));
            // No fingerprint, or one that is not text: refused as missing;
            // text that is not the user's: refused as changed.
            match label {
                "missing" | "a number" | "null" => forgery.because(reasons::NO_FINGERPRINT),
                _ => forgery,
            }
        })
        .collect()
    })
    .await;
}

#[tokio::test]
async fn a_session_without_latch_s_claims_is_anonymous() {
    // Microdot's own session: `_user_id` and `_fresh` only, no fingerprint.
    let app = app();
    let now = jwt::now();
    let microdot = signed_claims(
        json!({"_user_id": 1, "_fresh": true, "exp": now + 3600})
            .as_object()
            .unwrap(),
    );
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "Microdot-style session",
            vec![header("session", &microdot)],
            None,
        )],
    )
    .await;
}

/// A `_fresh` that is not the boolean `true` makes the request anonymous,
/// like every other latch claim of the wrong type (`_user_id`, `_auth`,
/// `_login_at`): so it is never a fresh login either.
#[tokio::test]
async fn a_forged_fresh_flag_is_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let cases = [
        json!("true"),
        json!(1),
        json!("yes"),
        json!([true]),
        Value::Null,
    ]
    .into_iter()
    .map(|fresh| Case {
        name: format!("_fresh = {fresh}"),
        cookies: vec![header(
            "session",
            &signed_claims(&with(&fx.session_claims, "_fresh", fresh)),
        )],
        deleted: None,
        // Whether the session's data survives is the implementation's
        // choice (drop the login, or refuse the token).
        data: None,
        // A flag that is not `true` is no fresh login: nothing to refuse.
        reason: Some(reasons::NONE_LOGGED),
    })
    .collect();
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn remember_tokens_with_forged_days_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let mut cases = Vec::new();
    for (label, raw) in [
        ("0", "0"),
        ("negative", "-1"),
        ("very negative", "-9223372036854775808"),
        ("over ten years", "3651"),
        ("huge", "99999999999"),
        ("more than u32", "4294967297"),
        ("too big for JSON", "1e400"),
        ("a float", "30.0"),
        ("a fraction", "1.5"),
        ("a string", "\"30\""),
        ("null", "null"),
        ("true", "true"),
    ] {
        let token = signed_payload(&raw_payload(&fx.remember_claims, "days", raw));
        let reason = match raw {
            "1e400" => reasons::PAYLOAD,
            _ => reasons::DAYS,
        };
        cases.push(
            Case::empty(
                format!("days {label}"),
                vec![header("_remember", &token)],
                Some("_remember"),
            )
            .because(reason),
        );
    }
    cases.push(Case::empty(
        "days missing",
        vec![header(
            "_remember",
            &signed_claims(&without(&fx.remember_claims, "days")),
        )],
        Some("_remember"),
    ));
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn microdot_s_logout_remember_token_is_anonymous() {
    // Microdot logs out by writing a remember token with no user and 0 days.
    let app = app();
    let now = jwt::now();
    let mut cases = Vec::new();
    for (label, claims, reason) in [
        (
            "user_id null, days 0",
            json!({"user_id": null, "days": 0, "exp": now + 3600}),
            "no user id",
        ),
        (
            "user_id null, days 30",
            json!({"user_id": null, "days": 30, "exp": now + 3600}),
            "no user id",
        ),
        (
            "user_id missing",
            json!({"days": 30, "exp": now + 3600}),
            "not a remember-me token",
        ),
        (
            "Microdot's login token, without a fingerprint",
            json!({"user_id": 1, "days": 30, "exp": now as f64 + 3600.25}),
            "a Microdot token, not accepted now",
        ),
    ] {
        let token = signed_claims(claims.as_object().unwrap());
        cases.push(
            Case::empty(label, vec![header("_remember", &token)], Some("_remember"))
                .because(reason),
        );
    }
    assert_all_anonymous(&app, cases).await;
}

#[tokio::test]
async fn a_tampered_session_and_remember_cookie_together_are_anonymous() {
    let app = app();
    let fx = fixtures(&app).await;
    let (h, p, s) = split(&fx.session);
    let bad_session = format!("{h}.{p}.{}", flip(s, 5));
    let (h, p, s) = split(&fx.remember);
    let bad_remember = format!("{h}.{p}.{}", flip(s, 5));
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "both tampered",
            vec![HeaderValue::from_str(&format!(
                "session={bad_session}; _remember={bad_remember}"
            ))
            .unwrap()],
            Some("_remember"),
        )],
    )
    .await;
}

#[tokio::test]
async fn a_session_token_in_the_remember_cookie_and_back_is_anonymous() {
    // The two tokens are signed with the same key: each must still be
    // refused in the other's cookie.
    let app = app();
    let fx = fixtures(&app).await;
    assert_all_anonymous(
        &app,
        vec![
            Case::empty(
                "session token as the remember cookie",
                vec![header("_remember", &fx.session)],
                Some("_remember"),
            ),
            Case::empty(
                "remember token as the session cookie",
                vec![header("session", &fx.remember)],
                None,
            ),
        ],
    )
    .await;
}

/// Both tokens are signed with the same key. A logged-in session whose app
/// data holds `user_id` and `days` (an app that keeps the visitor's own id
/// under that name, say) carries every claim of a stateless remember token,
/// alice's fingerprint included: sent as the remember cookie, it must not
/// restore a login, which would renew itself for `days` at each use and so
/// outlive the session's absolute timeout.
#[tokio::test]
async fn a_session_holding_user_id_and_days_is_not_a_remember_token() {
    let app = app();
    let fx = fixtures(&app).await;
    let session = with(&fx.session_claims, "user_id", json!(1));
    let session = signed_claims(&with(&session, "days", json!(30)));
    assert_all_anonymous(
        &app,
        vec![Case::empty(
            "alice's session with user_id and days, as the remember cookie",
            vec![header("_remember", &session)],
            Some("_remember"),
        )],
    )
    .await;
}

/// The other way round: a remember token sent as the session cookie is no
/// session, and its claims are no session data an app could read.
#[tokio::test]
async fn a_remember_token_is_not_a_session() {
    let app = app();
    let fx = fixtures(&app).await;
    let response = send(
        &app,
        "GET",
        "/value/user_id",
        &[header("session", &fx.remember)],
    )
    .await;
    let set = set_cookies(&response);
    assert_eq!(body_text(response).await, "none", "no session data");
    assert!(
        set.iter()
            .any(|c| name_value(c) == ("session".into(), String::new()) && is_deletion(c)),
        "the cookie is refused and deleted: {set:?}"
    );
}

/// A remember token signed with the key whose `exp` is huge (1e20 and up):
/// dating it (`exp` less its days) must not panic, in latch's shape or
/// Microdot's.
#[tokio::test]
async fn a_signed_remember_token_with_a_huge_exp_does_not_panic() {
    let app = app();
    let alice = fixtures(&app).await;
    let mut panics = Vec::new();
    for exp in ["1e20", "1e300", "1.7976931348623157e308"] {
        for claims in [
            alice.remember_claims.clone(),
            // Microdot's exact shape: {user_id, days, exp}.
            without(&without(&alice.remember_claims, "_auth"), "_purpose"),
        ] {
            let forged = signed_payload(&raw_payload(&claims, "exp", exp));
            let app = app.clone();
            let request = tokio::spawn(async move {
                send(&app, "GET", "/maybe", &[header("_remember", &forged)])
                    .await
                    .status()
            });
            match request.await {
                Ok(status) => assert!(!status.is_server_error(), "exp {exp}: {status}"),
                Err(error) => {
                    panics.push(format!("exp {exp}, claims {:?}: {error}", claims.keys()))
                }
            }
        }
    }
    assert!(
        panics.is_empty(),
        "the request panicked:\n{}",
        panics.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// `cookie=token` with one byte changed is anonymous.
fn one_byte_changed_is_anonymous(
    cookie: &str,
    token: &str,
    index: prop::sample::Index,
    replacement: u8,
) -> Result<(), TestCaseError> {
    let tampered = with_one_byte_changed(cookie, token, index, replacement);
    prop_assume!(tampered.is_some(), "the byte is already {}", replacement);
    prop_assert_eq!(check_anonymous(&[tampered.unwrap()]), Ok(()));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_good_session_token_with_any_one_byte_changed_is_anonymous(
        index in any::<prop::sample::Index>(),
        replacement in 0x21u8..=0x7e,
    ) {
        one_byte_changed_is_anonymous("session", &harness().fixtures.session, index, replacement)?;
    }

    #[test]
    fn a_good_remember_token_with_any_one_byte_changed_is_anonymous(
        index in any::<prop::sample::Index>(),
        replacement in 0x21u8..=0x7e,
    ) {
        one_byte_changed_is_anonymous("_remember", &harness().fixtures.remember, index, replacement)?;
    }
}

/// `token` cut at `cut` and made whole again with `tail` (base64url text),
/// keeping its dots where they were and the unused low bits of its last
/// character clear: a token of the right shape, down to its signature's
/// encoding, that is not the real one (`None` if it is the real one).
fn completed(token: &str, cut: prop::sample::Index, tail: &[u8]) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let cut = cut.index(token.len());
    let last = token.len() - 1;
    let mut bytes = token.as_bytes().to_vec();
    for (i, byte) in bytes.iter_mut().enumerate().skip(cut) {
        let random = usize::from(tail[i % tail.len()]);
        if i == last {
            // 43 characters carry 32 bytes: the last one's two low bits are unused.
            *byte = ALPHABET[(random % 16) * 4];
        } else if *byte != b'.' {
            *byte = ALPHABET[random % ALPHABET.len()];
        }
    }
    let forged = String::from_utf8(bytes).expect("ASCII");
    (forged != token).then_some(forged)
}

/// Any prefix of a good session token, completed with other base64url
/// text to a token of the right shape, is anonymous, and refused by the
/// signature check: an attacker who knows most of a token gets no further
/// than one who knows none of it. (A bare prefix, as this property used to
/// send, is refused by the shape check whatever latch's signature check
/// does.)
#[test]
fn any_prefix_of_a_good_session_token_is_anonymous() {
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 1..64),
    );
    let reach = run_property(file!(), 256, strategy, |(cut, tail)| {
        let token = &harness().fixtures.session;
        let forged = completed(token, cut, &tail);
        prop_assume!(forged.is_some(), "the completion is the real token");
        let (result, rejections) = check_anonymous_why(&[header("session", &forged.unwrap())]);
        prop_assert_eq!(result, Ok(()));
        prop_assert_eq!(
            refused_by(&rejections, reasons::SIGNATURE),
            Vec::<String>::new()
        );
        Ok(true)
    });
    reach.assert_at_least(0.5, "the signature check");
}
