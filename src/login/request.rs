//! One request's state, as latch keeps it: its session and its login, in
//! one allocation that the session layer puts in the request's extensions.

use crate::login::state::LoginState;
use crate::session::state::SessionState;

/// One request's session and login.
pub(crate) struct RequestState {
    pub session: SessionState,
    pub login: LoginState,
}
