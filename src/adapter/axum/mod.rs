//! latch for axum: the layers' services and futures, the extractors, the
//! route guards and the responses of refused requests.

mod auth;
mod cross_origin;
mod extract;
mod guard;
mod login_layer;
mod pending;
mod rejection;
mod request;
mod session_data;
mod session_layer;

pub use auth::Auth;
pub use cross_origin::{CrossOriginGuardFuture, CrossOriginGuardService};
pub use extract::{Allowed, CurrentUser, FreshUser};
pub use guard::{RequireLogin, RequireLoginFuture, RequireLoginService};
pub use login_layer::{LoginFuture, LoginService};
pub use pending::{PendingLogin, Verified};
pub use rejection::{Forbidden, LoginRejection, LoginRequired, MissingLayer};
pub use session_data::SessionData;
pub use session_layer::{SessionFuture, SessionService};
