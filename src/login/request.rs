//! One request's state, as latch keeps it: its session and its login, in
//! one allocation that the session layer puts in the request's extensions.

use crate::cookies::{self, Lookup};
use crate::login::state::LoginState;
use crate::session::state::{RequestView, SessionState};

/// One request's session and login.
pub(crate) struct RequestState {
    pub session: SessionState,
    pub login: LoginState,
}

impl RequestState {
    /// Reads what latch needs of the request while an extractor has it:
    /// the session cookie, and, when finding the user may need them (no
    /// login in the session, or `remember` asked for by `Auth`), the
    /// remember cookie and the `User-Agent`. Nothing is copied otherwise.
    pub fn prime(&self, request: &RequestView<'_>, remember: bool) {
        self.session.prime(request);
        let wants_headers = self.login.wants_headers();
        // Asked only when it matters: `Auth` primes the remember cookie anyway.
        let needs_remember = (!remember || wants_headers) && self.session.login_needs_remember();
        if needs_remember && wants_headers {
            // For the request loader: a request without a login in its session.
            self.login.keep_headers(request.headers);
        }
        if !(remember || needs_remember) {
            return;
        }
        let name = &self.session.site().remember_cookie;
        let find = || cookies::find_borrowed(request.headers, name).map(str::to_owned);
        self.login
            .prime(find, request.headers.get(http::header::USER_AGENT));
        if *self.login.remember_lookup() == Lookup::Duplicate {
            self.session.keep_strays(request);
        }
    }
}
