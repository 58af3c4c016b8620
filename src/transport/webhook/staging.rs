//! The writer's [`EventObserver`] that puts every appended event of every
//! module into the durable outbox: one row per enabled endpoint of the
//! event's tenant whose filter takes its type, in the change that appends
//! the event. Modules write no webhook code; each declares the body its
//! events carry ([`WebhookBodies`], by topic namespace).
//!
//! Invariants: an event and its rows are one change (acknowledged ⇒ rows
//! durable; a failed change ⇒ no row); the index of endpoints is read in
//! memory, never the store; a lane is woken only by an after-commit hook,
//! so never before its row is durable; a body over `--webhook-max-body`
//! that an endpoint would receive fails the change with 413.

use super::dispatcher::Dispatcher;
use super::endpoints::Index;
use super::outbox;
use crate::core::log::LogEvent;
use crate::core::log::encoding::DATA_JSON;
use crate::core::log::namespace::{Namespace, NamespaceOf};
use crate::core::writer::{Change, EventObserver};
use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// How the POST body of an event is made from it.
pub type BodyOf = fn(&LogEvent) -> Bytes;

/// The whole stored event JSON (`{"id","topic","type",…,"data"}`).
pub fn whole_event(event: &LogEvent) -> Bytes {
    event.json.clone()
}

/// The event's `data` alone (a surface whose spec shows the payload; encoded
/// once and shared with the SSE frames of that payload).
pub fn event_data(event: &LogEvent) -> Bytes {
    event.encoded(&DATA_JSON).into_owned()
}

/// The body of each namespace's events; [`whole_event`] for a namespace
/// nobody declared.
#[derive(Clone, Default)]
pub struct WebhookBodies {
    public: Option<BodyOf>,
    modules: HashMap<&'static str, BodyOf>,
}

impl WebhookBodies {
    /// Events of `namespace` are sent as `body` makes them.
    pub fn declare(&mut self, namespace: Namespace, body: BodyOf) {
        match namespace {
            Namespace::Public => self.public = Some(body),
            Namespace::Module(name) => {
                self.modules.insert(name, body);
            }
        }
    }

    /// The body maker of events of `topic`.
    fn of(&self, topic: &str) -> BodyOf {
        let declared = match Namespace::of(topic) {
            NamespaceOf::Public => self.public,
            NamespaceOf::Module(name) => self.modules.get(name).copied(),
        };
        declared.unwrap_or(whole_event)
    }
}

/// Stages deliveries of appended events (see the module doc).
pub(super) struct Stager {
    pub(super) index: Arc<Index>,
    /// Weak: the dispatcher holds the writer, which holds this observer.
    pub(super) dispatcher: Weak<Dispatcher>,
    pub(super) max_body: usize,
    pub(super) bodies: WebhookBodies,
}

impl EventObserver for Stager {
    fn appended(&self, change: &mut Change<'_>, event: &LogEvent) -> Result<(), ApiError> {
        let targets = self.index.targets(&event.tenant, &event.event.event_type);
        if targets.is_empty() {
            return Ok(());
        }
        let body = self.bodies.of(&event.event.topic)(event);
        if body.len() > self.max_body {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the event is {} bytes, more than a webhook delivery may carry (--webhook-max-body {})",
                    body.len(),
                    self.max_body
                ),
            ));
        }
        let now = crate::core::clock::unix_millis();
        for endpoint in &targets {
            outbox::stage(change, endpoint, &event.event, &body, now)?;
            let (dispatcher, id) = (self.dispatcher.clone(), endpoint.id);
            change.after_commit(move || {
                if let Some(dispatcher) = dispatcher.upgrade() {
                    dispatcher.poke(&id);
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::{Event, TopicRef};
    use serde_json::json;
    use ulid::Ulid;
    use uuid::Uuid;

    fn event_on(topic: &str) -> LogEvent {
        let event = Event {
            id: Ulid::from_parts(1, 1),
            topic: topic.into(),
            event_type: "t".into(),
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            actor: json!(null),
            data: json!({"x": 1}),
        };
        let json = Bytes::from(serde_json::to_vec(&event).unwrap());
        LogEvent::new(Uuid::nil(), event, json)
    }

    #[test]
    fn each_namespace_gets_its_declared_body() {
        let mut bodies = WebhookBodies::default();
        bodies.declare(Namespace::Module("discussion"), event_data);
        let module_topic = TopicRef::internal(Uuid::nil(), "discussion", "1").name;
        let module_event = event_on(&module_topic);
        assert_eq!(&bodies.of(&module_topic)(&module_event)[..], br#"{"x":1}"#);
        let public = event_on("room");
        assert_eq!(
            bodies.of("room")(&public),
            public.json,
            "undeclared: whole event"
        );
        let other = TopicRef::internal(Uuid::nil(), "other", "1").name;
        assert_eq!(bodies.of(&other)(&event_on(&other)), event_on(&other).json);
    }
}
