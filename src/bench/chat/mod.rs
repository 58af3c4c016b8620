//! The chat module (spec 002) as `tidings bench chat` drives it (issue 13):
//! users with JWTs of a realm, rooms and memberships made through the REST
//! API with a tenant key, messages posted by the tenant's backend, and every
//! user reading its own event stream (`GET /api/v1/events`).
//!
//! * [`layout`]: who is in which room, the same in every process.
//! * [`api`]: the set-up calls (tenant key, rooms, members), concurrent over HTTP/2.
//! * [`frames`]: the stream's frames read back into the bench's deliveries.
//!
//! A published event is a message whose text is the stamped data of
//! [`crate::bench::payload`]: the stamp's topic is the room's index, its
//! sequence the room's message number, so the subscriber side's loss and
//! duplicate accounting works per room; a stamp of a room the user is not
//! in counts as misrouted (a delivery to a non-member).

pub mod api;
pub mod frames;
pub mod layout;

use super::payload::{Stamp, data_json};
use serde_json::json;

/// The body of the message carrying `stamp`: `{"text":"<stamped data>"}`.
pub fn message_body(stamp: Stamp, size: usize) -> String {
    json!({ "text": data_json(stamp, size) }).to_string()
}
