//! Reading one column of a row of the SQL stores, with a decoding failure
//! as the stores' error.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::remember::StoreError;

/// The column `name` of `row`, decoded.
pub(super) fn column<'r, R, T>(row: &'r R, name: &'static str) -> Result<T, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(name).map_err(StoreError::new)
}
