//! `POST /__test/discussions/forget-pending-index?tenant=T`: makes the data
//! directory look as a build before the discussions' pending-comment index
//! left it, for the backfill's tests: removes the tenant's `p` rows and the
//! module's `pending-index` record (in changes of [`PER_CHANGE`] keys) and
//! answers `{"removed": <p rows removed>}`. The comments stay as they are.

use crate::core::writer::{Footprint, Writer};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, response};
use crate::modules::discussions::layout;
use http::{Method, StatusCode};
use uuid::Uuid;

/// Index rows removed per change.
const PER_CHANGE: usize = 1000;

/// Registers the route.
pub fn routes(router: &mut Router, writer: Writer) {
    router.route(
        Method::POST,
        "/__test/discussions/forget-pending-index",
        move |request| {
            let writer = writer.clone();
            async move {
                let removed = forget(&writer, tenant(&request)?).await?;
                Ok(response::data(
                    StatusCode::OK,
                    &serde_json::json!({ "removed": removed }),
                ))
            }
        },
    );
}

fn tenant(request: &Request) -> Result<Uuid, ApiError> {
    request
        .query_param("tenant")
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| ApiError::validation("tenant must be a UUID"))
}

/// Removes the tenant's index rows and the record; returns how many rows.
async fn forget(writer: &Writer, tenant: Uuid) -> Result<usize, ApiError> {
    let mut removed = 0;
    loop {
        let step = writer.commit(Footprint::SMALL, move |change| {
            let keys = change.stored_keys(&layout::pending_comments(&tenant), PER_CHANGE)?;
            let count = keys.len();
            keys.into_iter().for_each(|key| change.delete(key));
            change.delete(layout::pending_index_complete());
            Ok(count)
        });
        let count = step.await?.value;
        removed += count;
        if count < PER_CHANGE {
            return Ok(removed);
        }
    }
}
