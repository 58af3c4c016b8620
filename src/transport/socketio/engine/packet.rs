//! Engine.IO v4 packets and the long-polling payload codec.
//!
//! A text packet is one type digit (`0` open … `6` noop) followed by its
//! data; a binary WebSocket frame is a message packet carrying bytes. A
//! long-polling payload joins packets with the record separator `\x1e`,
//! binary messages written as `b` + base64.
//!
//! Invariants: decoding never panics; anything that is not a packet a
//! client may send is an error (the session then closes); encoding writes
//! every packet exactly as given, in order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

/// Separator of packets in a long-polling payload.
const SEPARATOR: u8 = 0x1e;

/// A packet sent by a client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientPacket {
    /// `1`: the client ends the session.
    Close,
    /// `2` with its data (`2probe` on an upgrade probe).
    Ping(String),
    /// `3` with its data (`3` answers a server ping).
    Pong,
    /// `4…` text or a binary frame: a message for the application.
    Message(Message),
    /// `5`: the client completes the upgrade to WebSocket.
    Upgrade,
    /// `6`: nothing.
    Noop,
}

/// The data of a message packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (the packet's data after the `4`).
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

/// A malformed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketError;

impl std::fmt::Display for PacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("malformed Engine.IO packet")
    }
}

/// Decodes a text packet (a WebSocket text frame or one packet of a payload).
pub fn decode_text(text: &str) -> Result<ClientPacket, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError)?;
    let data = chars.as_str();
    match kind {
        '1' => Ok(ClientPacket::Close),
        '2' => Ok(ClientPacket::Ping(data.to_string())),
        '3' => Ok(ClientPacket::Pong),
        '4' => Ok(ClientPacket::Message(Message::Text(data.to_string()))),
        '5' => Ok(ClientPacket::Upgrade),
        '6' => Ok(ClientPacket::Noop),
        _ => Err(PacketError),
    }
}

/// Decodes a long-polling payload into its packets.
pub fn decode_payload(payload: &[u8]) -> Result<Vec<ClientPacket>, PacketError> {
    let text = std::str::from_utf8(payload).map_err(|_| PacketError)?;
    text.split(char::from(SEPARATOR))
        .map(|packet| match packet.strip_prefix('b') {
            Some(encoded) => BASE64
                .decode(encoded)
                .map(|bytes| ClientPacket::Message(Message::Binary(Bytes::from(bytes))))
                .map_err(|_| PacketError),
            None => decode_text(packet),
        })
        .collect()
}

/// A packet the server sends: the whole text of a text packet (type digit
/// included), or the bytes of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text packet, e.g. `2` (ping) or `42["event",1]` (a Socket.IO EVENT).
    Text(Bytes),
    /// A binary message packet.
    Binary(Bytes),
}

impl Outgoing {
    /// A text packet from static text (`2`, `6`, `1`, `3probe`).
    pub const fn control(text: &'static str) -> Self {
        Self::Text(Bytes::from_static(text.as_bytes()))
    }

    /// The bytes it takes in a polling payload (without the separator).
    pub fn polling_len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(bytes) => 1 + bytes.len().div_ceil(3) * 4,
        }
    }
}

/// The ping packet.
pub const PING: Outgoing = Outgoing::control("2");
/// The close packet.
pub const CLOSE: Outgoing = Outgoing::control("1");
/// The noop packet.
pub const NOOP: Outgoing = Outgoing::control("6");

/// Joins packets into one long-polling payload.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Outgoing>) -> Vec<u8> {
    let mut payload = Vec::new();
    for (index, packet) in packets.into_iter().enumerate() {
        if index > 0 {
            payload.push(SEPARATOR);
        }
        match packet {
            Outgoing::Text(text) => payload.extend_from_slice(text),
            Outgoing::Binary(bytes) => {
                payload.push(b'b');
                payload.extend_from_slice(BASE64.encode(bytes).as_bytes());
            }
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_on_the_separator_with_base64_binary() {
        let packets = decode_payload(b"4hello\x1ebAQIDBA==\x1e3\x1e1").unwrap();
        assert_eq!(
            packets,
            vec![
                ClientPacket::Message(Message::Text("hello".into())),
                ClientPacket::Message(Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                ClientPacket::Pong,
                ClientPacket::Close,
            ]
        );
        assert_eq!(
            encode_payload(&[
                Outgoing::control("4hi"),
                Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                PING
            ]),
            b"4hi\x1ebAQIDBA==\x1e2".to_vec()
        );
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for bad in [&b""[..], b"abc", b"0{}", b"4ok\x1e", b"b!!", b"7", b"\xff"] {
            assert_eq!(decode_payload(bad), Err(PacketError), "{bad:?}");
        }
        assert_eq!(
            decode_text("2probe"),
            Ok(ClientPacket::Ping("probe".into()))
        );
    }

    #[test]
    fn polling_length_counts_base64() {
        assert_eq!(
            Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4])).polling_len(),
            9
        );
        assert_eq!(
            encode_payload(&[Outgoing::Binary(Bytes::from_static(&[1, 2, 3, 4]))]).len(),
            9
        );
    }
}
