//! A ticket notification as the bench reads it back, from a stream's
//! `notification` frame or an inbox page: its id, ticket, type and, for
//! SLA types, which deadline and when it was due.
//!
//! Only the fields the accounting needs are read; anything else in the
//! object is ignored, and a notification without an id, a numeric
//! `ticketId` or a type is unreadable (an error the caller reports).

use serde::Deserialize;
use std::time::UNIX_EPOCH;

/// A notification's type, as far as the bench tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `assignment`: the user was assigned the ticket.
    Assignment,
    /// `reassignment`: the ticket was reassigned away from the user.
    Reassignment,
    /// `slaWarning` of one deadline.
    SlaWarning(Deadline),
    /// `slaBreach` of one deadline.
    SlaBreach(Deadline),
    /// Any other type.
    Other,
}

/// Which SLA deadline an SLA notification is about (`metadata.slaType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Deadline {
    /// The first response.
    Response,
    /// The resolution.
    Resolution,
}

impl Kind {
    /// The type's name, as the server writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Assignment => "assignment",
            Self::Reassignment => "reassignment",
            Self::SlaWarning(_) => "slaWarning",
            Self::SlaBreach(_) => "slaBreach",
            Self::Other => "other",
        }
    }
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Its id (the same on the stream and in the inbox).
    pub id: String,
    /// The ticket's id.
    pub ticket: u64,
    /// Its type.
    pub kind: Kind,
    /// When it was raised (`createdAt`, unix ms), if readable.
    pub created_ms: Option<u64>,
    /// The deadline an SLA notification is about (`metadata.slaTarget`, unix ms).
    pub sla_target_ms: Option<u64>,
}

/// The fields read from the wire.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ticket_id: &'a str,
    #[serde(default)]
    created_at: Option<&'a str>,
    #[serde(default)]
    metadata: Metadata<'a>,
}

/// The metadata fields of SLA notifications.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata<'a> {
    #[serde(default, borrow)]
    sla_type: Option<&'a str>,
    #[serde(default, borrow)]
    sla_target: Option<&'a str>,
}

impl Notice {
    /// Reads a notification object (JSON).
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let wire: Wire<'_> = serde_json::from_slice(json).map_err(|err| {
            format!(
                "unreadable notification ({err}): {}",
                String::from_utf8_lossy(&json[..json.len().min(200)])
            )
        })?;
        Self::of(&wire)
    }

    /// Reads a notification already parsed as a JSON value (an inbox item).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, String> {
        Self::parse(value.to_string().as_bytes())
    }

    fn of(wire: &Wire<'_>) -> Result<Self, String> {
        let ticket = wire.ticket_id.parse().map_err(|_| {
            format!(
                "a notification's ticketId is not a number: {}",
                wire.ticket_id
            )
        })?;
        let deadline = match wire.metadata.sla_type {
            Some("resolution") => Deadline::Resolution,
            _ => Deadline::Response,
        };
        let kind = match wire.kind {
            "assignment" => Kind::Assignment,
            "reassignment" => Kind::Reassignment,
            "slaWarning" => Kind::SlaWarning(deadline),
            "slaBreach" => Kind::SlaBreach(deadline),
            _ => Kind::Other,
        };
        Ok(Self {
            id: wire.id.to_string(),
            ticket,
            kind,
            created_ms: wire.created_at.and_then(unix_ms),
            sla_target_ms: wire.metadata.sla_target.and_then(unix_ms),
        })
    }
}

/// An RFC 3339 UTC time (`…Z`) as unix milliseconds.
pub fn unix_ms(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    u64::try_from(at.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_and_sla_notifications_are_read() {
        let assignment = br#"{"id":"0190a0b1-0000-0000-0000-000000000001","type":"assignment","ticketId":"42","title":"t","createdAt":"2026-01-01T00:00:01.500Z","metadata":{}}"#;
        let notice = Notice::parse(assignment).expect("reads");
        assert_eq!(notice.ticket, 42);
        assert_eq!(notice.kind, Kind::Assignment);
        assert_eq!(notice.created_ms, Some(1_767_225_601_500));
        assert_eq!(notice.sla_target_ms, None);
        let breach = br#"{"id":"x","type":"slaBreach","ticketId":"7","metadata":{"slaType":"resolution","slaTarget":"2026-01-01T00:00:00.000Z"}}"#;
        let notice = Notice::parse(breach).expect("reads");
        assert_eq!(notice.kind, Kind::SlaBreach(Deadline::Resolution));
        assert_eq!(notice.kind.name(), "slaBreach");
        assert_eq!(notice.sla_target_ms, Some(1_767_225_600_000));
        let warning = serde_json::json!({"id":"y","type":"slaWarning","ticketId":"8","metadata":{"slaType":"response"}});
        assert_eq!(
            Notice::from_value(&warning).expect("reads").kind,
            Kind::SlaWarning(Deadline::Response)
        );
    }

    #[test]
    fn unreadable_notifications_are_errors() {
        assert!(Notice::parse(b"nope").is_err());
        assert!(Notice::parse(br#"{"id":"x","type":"assignment","ticketId":"abc"}"#).is_err());
        assert!(Notice::parse(br#"{"type":"assignment","ticketId":"1"}"#).is_err());
        let other = Notice::parse(br#"{"id":"x","type":"comment","ticketId":"1"}"#).unwrap();
        assert_eq!(other.kind, Kind::Other);
    }
}
