//! Engine.IO v4 and Socket.IO v5 text packets, as a WebSocket-only client
//! reads and writes them (one packet per WebSocket text message).
//!
//! Engine.IO: `0{open json}`, `1` close, `2` ping (answered with `3`), `4…`
//! a Socket.IO packet. Socket.IO (after the `4`): `0{json}` connected,
//! `1` disconnect, `2[ack id][json]` event, `3<ack id>[json]` ack, `4{json}`
//! connect error; the default namespace `/` is never written and a packet of
//! another namespace (`/name,`…) is read as [`Packet::Other`].
//!
//! Invariants: [`parse`] never panics and never allocates; it only splits
//! the packet, leaving the JSON to the caller (the hot path searches it
//! instead of parsing it). Binary packets (`45`, `46`) are refused: neither
//! server sends binary data in this protocol.

use serde::Deserialize;
use serde_json::Value;

/// The client's answer to an Engine.IO ping.
pub const PONG: &[u8] = b"3";

/// One packet from the server, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO open: the handshake's JSON.
    Open(&'a [u8]),
    /// Engine.IO close.
    Close,
    /// Engine.IO ping (answer [`PONG`]).
    Ping,
    /// Socket.IO connected: `{"sid":…}`.
    Connected(&'a [u8]),
    /// Socket.IO connect error: `{"message":…}`.
    ConnectError(&'a [u8]),
    /// Socket.IO disconnect (the server ended the session).
    Disconnect,
    /// Socket.IO event: `["name", …args]`, with the ack id the server wants back.
    Event {
        /// Ack id requested by the server (`None`: no answer expected).
        ack: Option<u64>,
        /// The JSON array.
        json: &'a [u8],
    },
    /// Socket.IO ack of the client's request `id`: `[…args]`.
    Ack {
        /// The client's ack id.
        id: u64,
        /// The JSON array of the ack's arguments.
        json: &'a [u8],
    },
    /// Anything a client may ignore (noop, pong, another namespace).
    Other,
}

/// Splits one text message into a packet; an error names what is malformed.
pub fn parse(message: &[u8]) -> Result<Packet<'_>, String> {
    let Some((&kind, rest)) = message.split_first() else {
        return Err("an empty Engine.IO packet".into());
    };
    match kind {
        b'0' => Ok(Packet::Open(rest)),
        b'1' => Ok(Packet::Close),
        b'2' => Ok(Packet::Ping),
        b'3' | b'6' => Ok(Packet::Other),
        b'4' => parse_socket(rest),
        other => Err(format!(
            "an Engine.IO packet of unknown type `{}`",
            char::from(other).escape_default()
        )),
    }
}

/// The Socket.IO packet inside an Engine.IO message.
fn parse_socket(packet: &[u8]) -> Result<Packet<'_>, String> {
    let Some((&kind, rest)) = packet.split_first() else {
        return Err("an empty Socket.IO packet".into());
    };
    if rest.first() == Some(&b'/') {
        return Ok(Packet::Other);
    }
    let (ack, json) = split_ack_id(rest)?;
    match (kind, ack) {
        (b'0', None) => Ok(Packet::Connected(json)),
        (b'1', None) => Ok(Packet::Disconnect),
        (b'2', ack) => Ok(Packet::Event { ack, json }),
        (b'3', Some(id)) => Ok(Packet::Ack { id, json }),
        (b'3', None) => Err("a Socket.IO ack without an id".into()),
        (b'4', None) => Ok(Packet::ConnectError(json)),
        (b'5' | b'6', _) => Err("a binary Socket.IO packet (not used by this protocol)".into()),
        (other, _) => Err(format!(
            "a Socket.IO packet of unknown type `{}`",
            char::from(other).escape_default()
        )),
    }
}

/// Most digits an ack id may have (ids fit a `u64`).
const MAX_ACK_DIGITS: usize = 19;

/// The leading decimal ack id, if any, and the JSON after it.
fn split_ack_id(rest: &[u8]) -> Result<(Option<u64>, &[u8]), String> {
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Ok((None, rest));
    }
    if digits > MAX_ACK_DIGITS {
        return Err("a Socket.IO ack id longer than 19 digits".into());
    }
    let id = rest[..digits]
        .iter()
        .fold(0u64, |id, digit| id * 10 + u64::from(digit - b'0'));
    Ok((Some(id), &rest[digits..]))
}

/// `40{auth}`: CONNECT to the default namespace (`40` alone without auth).
pub fn connect(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".into(),
    }
}

/// `42<id>["name",payload]`: an event the server must acknowledge with `id`.
pub fn emit(id: u64, name: &str, payload: &Value) -> String {
    format!(
        "42{id}{}",
        Value::Array(vec![Value::from(name), payload.clone()])
    )
}

/// The Engine.IO handshake fields the client uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// How often the server pings (ms).
    pub ping_interval: u64,
    /// How long the server waits for the pong (ms).
    pub ping_timeout: u64,
}

/// Reads the open packet's JSON.
pub fn handshake(json: &[u8]) -> Result<Handshake, String> {
    serde_json::from_slice(json).map_err(|err| {
        format!(
            "the Engine.IO open packet is not usable ({err}): {}",
            excerpt(json)
        )
    })
}

/// The only argument of an ack (`[arg]`), parsed.
pub fn ack_argument(json: &[u8]) -> Result<Value, String> {
    let mut args: Vec<Value> = serde_json::from_slice(json)
        .map_err(|err| format!("an unreadable ack ({err}): {}", excerpt(json)))?;
    if args.len() != 1 {
        return Err(format!(
            "an ack with {} arguments, expected 1: {}",
            args.len(),
            excerpt(json)
        ));
    }
    Ok(args.remove(0))
}

/// The first 300 characters of `bytes`, for messages.
pub fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn engine_and_socket_packets_are_split() {
        assert_eq!(
            parse(br#"0{"sid":"a"}"#),
            Ok(Packet::Open(br#"{"sid":"a"}"#))
        );
        assert_eq!(parse(b"2"), Ok(Packet::Ping));
        assert_eq!(parse(b"1"), Ok(Packet::Close));
        assert_eq!(parse(b"3"), Ok(Packet::Other));
        assert_eq!(
            parse(br#"40{"sid":"x"}"#),
            Ok(Packet::Connected(br#"{"sid":"x"}"#))
        );
        assert_eq!(parse(b"41"), Ok(Packet::Disconnect));
        assert_eq!(
            parse(br#"44{"message":"no"}"#),
            Ok(Packet::ConnectError(br#"{"message":"no"}"#))
        );
        assert_eq!(
            parse(br#"42["e",{"a":1}]"#),
            Ok(Packet::Event {
                ack: None,
                json: br#"["e",{"a":1}]"#
            })
        );
        assert_eq!(
            parse(br#"4217["e"]"#),
            Ok(Packet::Event {
                ack: Some(17),
                json: br#"["e"]"#
            })
        );
        assert_eq!(
            parse(br#"43123[{"ok":true}]"#),
            Ok(Packet::Ack {
                id: 123,
                json: br#"[{"ok":true}]"#
            })
        );
        assert_eq!(parse(br#"42/admin,["e"]"#), Ok(Packet::Other));
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"4",
            b"9",
            b"49",
            b"43[1]",
            b"451-[\"e\",{\"_placeholder\":true}]",
            b"4399999999999999999999[1]",
        ] {
            assert!(parse(bad).is_err(), "{}", excerpt(bad));
        }
    }

    #[test]
    fn client_packets_are_written_as_socket_io_expects() {
        assert_eq!(connect(None), "40");
        assert_eq!(connect(Some(&json!({"token":"t"}))), r#"40{"token":"t"}"#);
        assert_eq!(
            emit(
                3,
                "communication:join_channel_posts",
                &json!({"channelId": 7})
            ),
            r#"423["communication:join_channel_posts",{"channelId":7}]"#
        );
    }

    #[test]
    fn handshakes_and_acks_are_read() {
        let open = handshake(br#"{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#)
            .expect("valid");
        assert_eq!((open.sid.as_str(), open.ping_interval), ("s", 25_000));
        assert!(handshake(b"{}").is_err());
        assert_eq!(ack_argument(br#"[{"ok":true}]"#), Ok(json!({"ok": true})));
        assert!(ack_argument(b"[1,2]").is_err());
        assert!(ack_argument(b"nope").is_err());
    }
}
