//! The tickets module's topics and event types, and the notification's
//! wire JSON.
//!
//! Every user has two topics in the module's namespace, named by their
//! [`UserKey`]: `~tickets/n<key>` holds their notifications (event type
//! `notification`, `data` the notification object without its `id`), and
//! `~tickets/l<key>` their ticket-list updates (`ticketCreated`,
//! `ticketAdded`, `ticketUpdated`, `ticketRemoved`).
//!
//! Invariants: a notification's `id` is its event's ULID written as a UUID,
//! spliced in front of the stored object when it is served
//! ([`NOTIFICATION_JSON`], built once per event), so the inbox record, the
//! SSE frame and the webhook body name the same id; topics are internal, so
//! the generic topics API can never name them.

use super::layout::{MODULE, UserKey};
use crate::core::log::encoding::{DATA_JSON, Encoding};
use crate::core::log::namespace::Namespace;
use crate::core::log::{LogEvent, TopicRef};
use bytes::Bytes;
use ulid::Ulid;
use uuid::Uuid;

/// The module's name.
pub const NAME: &str = MODULE;
/// The module's topic namespace: `~tickets/…`.
pub const NAMESPACE: Namespace = Namespace::Module(MODULE);

/// Event type of a notification.
pub const NOTIFICATION: &str = "notification";
/// A new ticket is in the user's lists.
pub const TICKET_CREATED: &str = "ticketCreated";
/// An existing ticket entered the user's lists (they became its assignee,
/// a watcher or an agent of its queue).
pub const TICKET_ADDED: &str = "ticketAdded";
/// A ticket in the user's lists changed.
pub const TICKET_UPDATED: &str = "ticketUpdated";
/// A ticket left the user's lists.
pub const TICKET_REMOVED: &str = "ticketRemoved";

/// The topic of a user's notifications.
pub fn notifications_topic(tenant: Uuid, user: &UserKey) -> TopicRef {
    TopicRef::internal(tenant, MODULE, &format!("n{}", user.hex()))
}

/// The topic of a user's ticket-list updates.
pub fn list_topic(tenant: Uuid, user: &UserKey) -> TopicRef {
    TopicRef::internal(tenant, MODULE, &format!("l{}", user.hex()))
}

/// A notification's id: its event's ULID as a UUID.
pub fn notification_id(event: Ulid) -> String {
    Uuid::from_u128(event.0).to_string()
}

/// The event ULID behind a notification id; `None` when it is not a UUID.
pub fn parse_notification_id(text: &str) -> Option<Ulid> {
    Uuid::parse_str(text).ok().map(|uuid| Ulid(uuid.as_u128()))
}

/// The notification object as served: `{"id":…}` spliced in front of the
/// stored fields.
pub static NOTIFICATION_JSON: Encoding = Encoding::new("tickets.notification", |event| {
    with_id(event, &event.encoded(&DATA_JSON))
});

fn with_id(event: &LogEvent, data: &[u8]) -> Bytes {
    let id = notification_id(event.id());
    let rest = data.strip_prefix(b"{").unwrap_or(b"}");
    let mut json = Vec::with_capacity(data.len() + id.len() + 10);
    json.extend_from_slice(b"{\"id\":\"");
    json.extend_from_slice(id.as_bytes());
    json.push(b'"');
    if rest != b"}" {
        json.push(b',');
    }
    json.extend_from_slice(rest);
    Bytes::from(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::Event;
    use serde_json::{Value, json};

    fn logged(data: Value) -> LogEvent {
        let event = Event {
            id: Ulid::from_parts(1, 2),
            topic: "~tickets/nabc".into(),
            event_type: NOTIFICATION.into(),
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            actor: Value::Null,
            data,
        };
        let stored = Bytes::from(serde_json::to_vec(&event).unwrap());
        LogEvent::new(Uuid::nil(), event, stored)
    }

    #[test]
    fn the_served_notification_starts_with_its_id() {
        let event = logged(json!({ "type": "assignment", "read": false }));
        let served: Value = serde_json::from_slice(&event.encoded(&NOTIFICATION_JSON)).unwrap();
        assert_eq!(served["id"], notification_id(Ulid::from_parts(1, 2)));
        assert_eq!(served["type"], "assignment");
        assert_eq!(
            parse_notification_id(served["id"].as_str().unwrap()),
            Some(Ulid::from_parts(1, 2))
        );
        let empty = logged(json!({}));
        let served: Value = serde_json::from_slice(&empty.encoded(&NOTIFICATION_JSON)).unwrap();
        assert_eq!(served.as_object().unwrap().len(), 1);
    }

    #[test]
    fn topics_are_internal_and_named_by_the_user_key() {
        let user = UserKey::of("abc");
        let topic = notifications_topic(Uuid::nil(), &user);
        assert_eq!(topic.name, "~tickets/nba7816bf8f01cfea414140de5dae2223");
        assert!(
            list_topic(Uuid::nil(), &user)
                .name
                .starts_with("~tickets/l")
        );
    }
}
