//! Permission checks: whether a logged-in user may use a route, beyond
//! being logged in.

use std::future::Future;

use crate::login::user::User;

/// A rule on the logged-in user, named as a type, for the
/// [`Allowed`](crate::Allowed) extractor: `Allowed<Account, Admin>` lets
/// through only users for whom `Admin::allows` is true.
///
/// A rule may be async (look up a role in a database). A user it refuses
/// gets `403 Forbidden`: an HTML page for a browser's navigation, JSON for
/// an API client; never a redirect to the login page, which would send a
/// logged-in user round in a loop. An anonymous request is refused as for
/// [`CurrentUser`](crate::CurrentUser): the login page, or a `401`.
///
/// ```
/// use axum_latch::{Allowed, Permission, User};
/// # #[derive(Clone)] struct Account { id: u64, is_admin: bool }
/// # impl User for Account { type Id = u64; fn id(&self) -> u64 { self.id } fn auth_hash(&self) -> &[u8] { b"" } }
///
/// struct Admin;
///
/// impl Permission<Account> for Admin {
///     async fn allows(user: &Account) -> bool {
///         user.is_admin
///     }
/// }
///
/// async fn admin_page(Allowed(user, ..): Allowed<Account, Admin>) -> String {
///     format!("Welcome to the admin pages, user {}", user.id)
/// }
/// ```
pub trait Permission<U: User>: Send + Sync + 'static {
    /// Whether `user` may go on.
    fn allows(user: &U) -> impl Future<Output = bool> + Send;
}
