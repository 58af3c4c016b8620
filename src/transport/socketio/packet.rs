//! Socket.IO v5 packets: `<type>[<attachments>-][<nsp>,][<id>][<json>]`,
//! carried in Engine.IO message packets; binary attachments follow their
//! header as separate binary messages, referenced in the JSON by
//! `{"_placeholder":true,"num":n}`.
//!
//! Invariants: decoding never panics and accepts exactly what the reference
//! parser accepts as valid (payload shape per type, reserved event names
//! refused, every placeholder naming an announced attachment, at most
//! [`MAX_ATTACHMENTS`]); encoding writes the Engine.IO message text (the
//! leading `4` included) the way the reference encoder does.

use super::settings::MAX_ATTACHMENTS;
use bytes::Bytes;
use serde_json::Value;
use std::fmt::Write as _;

/// Event names a client may not use (the reference parser refuses them).
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `0`: join a namespace (client) / joined (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: the answer to an event that asked for one.
    Ack,
    /// `4`: a refused CONNECT (server only).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an answer with binary attachments.
    BinaryAck,
}

impl Kind {
    fn of(digit: char) -> Option<Self> {
        Some(match digit {
            '0' => Self::Connect,
            '1' => Self::Disconnect,
            '2' => Self::Event,
            '3' => Self::Ack,
            '4' => Self::ConnectError,
            '5' => Self::BinaryEvent,
            '6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn digit(self) -> char {
        match self {
            Self::Connect => '0',
            Self::Disconnect => '1',
            Self::Event => '2',
            Self::Ack => '3',
            Self::ConnectError => '4',
            Self::BinaryEvent => '5',
            Self::BinaryAck => '6',
        }
    }

    fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// A decoded client packet.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Its type.
    pub kind: Kind,
    /// Its namespace (`/` when not named).
    pub nsp: String,
    /// Binary attachments announced (they follow as binary messages).
    pub attachments: usize,
    /// Its ack id.
    pub id: Option<u64>,
    /// Its JSON payload.
    pub data: Option<Value>,
}

/// Why a packet is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Decodes the text of a client packet (an Engine.IO message's data).
pub fn decode(text: &str) -> Result<Packet, Malformed> {
    let mut rest = text;
    let kind = take_char(&mut rest)
        .and_then(Kind::of)
        .ok_or(Malformed("unknown packet type"))?;
    let attachments = if kind.is_binary() {
        attachments(&mut rest)?
    } else {
        0
    };
    let nsp = if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        let nsp = rest[..end].to_string();
        rest = rest.get(end + 1..).unwrap_or_default();
        nsp
    } else {
        "/".to_string()
    };
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let id = match digits {
        0 => None,
        _ => Some(
            rest[..digits]
                .parse()
                .map_err(|_| Malformed("ack id too large"))?,
        ),
    };
    rest = &rest[digits..];
    let data = match rest {
        "" => None,
        json => Some(serde_json::from_str(json).map_err(|_| Malformed("payload is not JSON"))?),
    };
    check_payload(kind, data.as_ref())?;
    if let Some(data) = &data {
        check_placeholders(data, attachments)?;
    }
    Ok(Packet {
        kind,
        nsp,
        attachments,
        id,
        data,
    })
}

fn take_char(rest: &mut &str) -> Option<char> {
    let mut chars = rest.chars();
    let first = chars.next()?;
    *rest = chars.as_str();
    Some(first)
}

/// Reads `<digits>-` of a binary packet.
fn attachments(rest: &mut &str) -> Result<usize, Malformed> {
    let (count, tail) = rest
        .split_once('-')
        .ok_or(Malformed("binary packet without an attachment count"))?;
    let count: usize = count
        .parse()
        .map_err(|_| Malformed("bad attachment count"))?;
    if count > MAX_ATTACHMENTS {
        return Err(Malformed("too many attachments"));
    }
    *rest = tail;
    Ok(count)
}

/// The payload shapes the reference parser accepts per type.
fn check_payload(kind: Kind, data: Option<&Value>) -> Result<(), Malformed> {
    let valid = match kind {
        Kind::Connect => data.is_none_or(Value::is_object),
        Kind::Disconnect => data.is_none(),
        Kind::ConnectError => data.is_some_and(|data| data.is_string() || data.is_object()),
        Kind::Event | Kind::BinaryEvent => match data.and_then(Value::as_array) {
            Some(array) => match array.first() {
                Some(Value::Number(_)) => true,
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                _ => false,
            },
            None => false,
        },
        Kind::Ack | Kind::BinaryAck => data.is_some_and(Value::is_array),
    };
    valid.then_some(()).ok_or(Malformed("invalid payload"))
}

/// Every placeholder must name one of the `attachments` announced.
fn check_placeholders(data: &Value, attachments: usize) -> Result<(), Malformed> {
    match data {
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_placeholders(item, attachments)),
        Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)) => {
            let num = map.get("num").and_then(Value::as_u64);
            match num {
                Some(num) if (num as usize) < attachments => Ok(()),
                _ => Err(Malformed("illegal attachments")),
            }
        }
        Value::Object(map) => map
            .values()
            .try_for_each(|item| check_placeholders(item, attachments)),
        _ => Ok(()),
    }
}

/// The Engine.IO message text (`4` + the packet) of a server packet.
pub fn encode(
    kind: Kind,
    nsp: &str,
    attachments: usize,
    id: Option<u64>,
    data: Option<&Value>,
) -> Bytes {
    let mut text = String::from("4");
    text.push(kind.digit());
    if kind.is_binary() {
        let _ = write!(text, "{attachments}-");
    }
    if nsp != "/" {
        text.push_str(nsp);
        text.push(',');
    }
    if let Some(id) = id {
        let _ = write!(text, "{id}");
    }
    if let Some(data) = data {
        text.push_str(&data.to_string());
    }
    Bytes::from(text)
}

/// The Engine.IO message text of an EVENT `name` with one argument given as
/// encoded JSON, e.g. `42/chat,["message",{…}]`: how a module builds the
/// shared packet of a log event once (an `Encoding`) without re-encoding
/// the stored JSON.
pub fn event_text(nsp: &str, name: &str, json: &[u8]) -> Bytes {
    let head = encode(Kind::Event, nsp, 0, None, None);
    let name = Value::from(name).to_string();
    let mut text = Vec::with_capacity(head.len() + name.len() + json.len() + 3);
    text.extend_from_slice(&head);
    text.push(b'[');
    text.extend_from_slice(name.as_bytes());
    text.push(b',');
    text.extend_from_slice(json);
    text.push(b']');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_every_part_of_a_packet() {
        let packet = decode(r#"52-/custom,789["m",{"_placeholder":true,"num":1}]"#).unwrap();
        assert_eq!(packet.kind, Kind::BinaryEvent);
        assert_eq!(
            (packet.nsp.as_str(), packet.attachments, packet.id),
            ("/custom", 2, Some(789))
        );
        assert_eq!(decode("0/custom").unwrap().nsp, "/custom");
        assert_eq!(decode("0").unwrap().data, None);
        assert_eq!(
            decode(r#"0{"token":"1"}"#).unwrap().data,
            Some(json!({"token":"1"}))
        );
        assert_eq!(decode("1/a,").unwrap().nsp, "/a");
    }

    #[test]
    fn refuses_what_the_reference_parser_refuses() {
        for bad in [
            "abc",
            "7",
            "2{}",
            r#"2abc["m"]"#,
            r#"2["connect"]"#,
            "2[]",
            "0[1]",
            r#"1"x""#,
            r#"5-["m"]"#,
            r#"51-["m",{"_placeholder":true,"num":1}]"#,
            "599-[\"m\"]",
            r#"399999999999999999999999[1]"#,
            "",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn encodes_like_the_reference() {
        let data = json!(["a", 1]);
        assert_eq!(
            encode(Kind::Event, "/", 0, None, Some(&data)),
            "42[\"a\",1]"
        );
        assert_eq!(
            encode(Kind::BinaryAck, "/x", 2, Some(7), Some(&data)),
            "462-/x,7[\"a\",1]"
        );
        assert_eq!(encode(Kind::Disconnect, "/x", 0, None, None), "41/x,");
        assert_eq!(event_text("/", "e", br#"{"a":1}"#), r#"42["e",{"a":1}]"#);
    }
}
