//! The Socket.IO conformance kit's endpoints (`/work/shared/conformance`),
//! debug builds with `--enable-test-routes` only.
//!
//! * `/__test/engine.io/`: a raw Engine.IO endpoint that sends every message
//!   back (text as text, binary as binary).
//!
//! Both are served by the transport exactly as a module would serve it.

use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::http::router::Router;
use crate::transport::socketio::SioSettings;
use crate::transport::socketio::engine::{
    AppEnd, Application, EngineServer, Handshake, Message, Outgoing, SessionApp,
};
use http::Method;
use std::convert::Infallible;
use std::sync::Arc;

/// Path of the raw Engine.IO echo endpoint.
const ENGINE_PATH: &str = "/__test/engine.io/";

/// Registers the kit's endpoints.
pub fn routes(
    router: &mut Router,
    settings: SioSettings,
    lifecycle: Arc<Lifecycle>,
    metrics: Arc<Metrics>,
) {
    let echo = Arc::new(EngineServer::new(settings, lifecycle, metrics, Echo));
    for method in [Method::GET, Method::POST, Method::PUT] {
        router.route_with(method, ENGINE_PATH, &echo, |echo, request| async move {
            echo.handle(request).await
        });
    }
}

/// The echo endpoint's application.
struct Echo;

impl Application for Echo {
    type Session = Echo;

    fn open(&self, _handshake: Arc<Handshake>) -> Echo {
        Echo
    }
}

impl SessionApp for Echo {
    type Work = Infallible;

    async fn on_message(
        &mut self,
        message: Message,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        out.push(match message {
            Message::Text(text) => Outgoing::Text(format!("4{text}").into()),
            Message::Binary(data) => Outgoing::Binary(data),
        });
        Ok(())
    }

    async fn next_work(&mut self) -> Infallible {
        std::future::pending().await
    }

    async fn on_work(&mut self, work: Infallible, _out: &mut Vec<Outgoing>) -> Result<(), AppEnd> {
        match work {}
    }
}
