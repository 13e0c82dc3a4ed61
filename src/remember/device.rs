//! A short, human summary of a `User-Agent` ("Firefox on Linux"), for lists
//! of remembered devices.

/// The longest summary kept.
pub(crate) const MAX_DEVICE_LEN: usize = 64;

/// Summarises a `User-Agent` as "browser on system". Unknown parts are left
/// out; nothing known at all is "Unknown device".
pub(crate) fn summarize(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("");
    // Order matters: Edge and Opera claim to be Chrome, Chrome claims to be
    // Safari, and every browser claims to be Mozilla.
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("FxiOS/", "Firefox"),
        ("CriOS/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    let system = [
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match (browser, system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(name), None) | (None, Some(name)) => name.to_owned(),
        (None, None) => {
            // Keep something recognisable from an unknown client, printable only.
            let raw: String = ua
                .split_whitespace()
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(MAX_DEVICE_LEN)
                .collect();
            if raw.is_empty() {
                "Unknown device".to_owned()
            } else {
                raw
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_browsers() {
        let cases = [
            ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Edge on Windows"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari on macOS"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iPhone"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android"),
            ("curl/8.5.0", "curl"),
            ("my-bot/1.0 (+https://example.com)", "my-bot/1.0"),
            ("", "Unknown device"),
        ];
        for (ua, want) in cases {
            assert_eq!(summarize(Some(ua)), want, "{ua}");
        }
        assert_eq!(summarize(None), "Unknown device");
    }

    #[test]
    fn unknown_clients_are_cut_short_and_printable() {
        let long = format!("{}\u{7f}\u{e9}", "x".repeat(500));
        let summary = summarize(Some(&long));
        assert_eq!(summary.len(), MAX_DEVICE_LEN);
        assert!(summary.chars().all(|c| c.is_ascii_graphic()));
    }
}
