//! `sample`: the smallest module, compiled only in debug builds and
//! registered only with `--enable-test-routes`. It exists to prove the
//! platform: its events reach the tenant's webhooks (with its declared body,
//! the event's `data`) although it contains no webhook code.
//!
//! * `POST /__test/sample/{id}/events` `{"type","data"}` (a credential with
//!   the `publish` scope) appends one event to `~sample/<id>` and answers
//!   201 with the stored event.
//!
//! Invariant: its topics are in its own namespace, unreachable from the
//! topics API; it stores nothing besides its events.

use crate::auth::Authenticator;
use crate::auth::api_keys::Scope;
use crate::core::log::TopicRef;
use crate::core::log::namespace::Namespace;
use crate::core::writer::{Footprint, Writer};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use crate::modules::platform::{Module, ModuleContext};
use crate::transport::webhook::{BodyOf, event_data};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// The module's namespace name: topics `~sample/<id>`.
const NAMESPACE_NAME: &str = "sample";

/// The sample module.
pub struct SampleModule {
    writer: Writer,
    auth: Authenticator,
}

impl SampleModule {
    /// The module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            writer: context.writer.clone(),
            auth: context.auth.clone(),
        }
    }
}

impl Module for SampleModule {
    fn name(&self) -> &'static str {
        "sample"
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(Namespace::Module(NAMESPACE_NAME))
    }

    fn webhook_body(&self) -> BodyOf {
        event_data
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        router.route_with(Method::POST, "/__test/sample/{id}/events", &self, append);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInput {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Value,
}

async fn append(module: Arc<SampleModule>, mut request: Request) -> Result<Response, ApiError> {
    let principal = module.auth.authenticate(&request)?;
    principal.require(Scope::Publish)?;
    let id = request.param("id").unwrap_or_default().to_string();
    TopicRef::new(principal.tenant, &id).map_err(ApiError::validation)?;
    let topic = TopicRef::internal(principal.tenant, NAMESPACE_NAME, &id);
    let input: EventInput = request.json().await?;
    let footprint = Footprint::json([&input.data]);
    let committed = module
        .writer
        .commit(footprint, move |change| {
            change.append(&topic, &input.event_type, Value::Null, input.data)
        })
        .await?;
    Ok(response::raw_data(
        StatusCode::CREATED,
        &committed.value.json,
    ))
}
