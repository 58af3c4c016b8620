//! RFC 6455 framing as far as a bench client needs it: reading the server's
//! (unmasked) frames in place and writing masked client frames.
//!
//! Invariants: [`parse_frame`] never reads past a complete frame and returns
//! `Ok(None)` while one is incomplete; a masked server frame, a reserved
//! opcode or bit, or a frame over the size limit is an error; every frame
//! [`encode_client`] writes is masked with a fresh random key.

/// Continuation of a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
/// A text message.
pub const OP_TEXT: u8 = 0x1;
/// A binary message.
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 16 << 20;

/// Where one complete frame lies in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// The final fragment of its message.
    pub fin: bool,
    /// The opcode.
    pub opcode: u8,
    /// Offset of the payload from the frame start.
    pub payload_start: usize,
    /// Length of the whole frame (header and payload).
    pub len: usize,
}

impl FrameSpan {
    /// The payload of this frame, which starts at `buf[0]`.
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.payload_start..self.len]
    }
}

/// Parses the frame at the start of `buf`; `Ok(None)` while it is incomplete.
pub fn parse_frame(buf: &[u8]) -> Result<Option<FrameSpan>, String> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err("reserved bits set in a server frame".into());
    }
    if second & 0x80 != 0 {
        return Err("the server masked a frame".into());
    }
    let opcode = first & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(format!("reserved opcode {opcode:#x}"));
    }
    let (payload_start, payload_len) = match second & 0x7F {
        126 if buf.len() >= 4 => (4, u64::from(u16::from_be_bytes([buf[2], buf[3]]))),
        127 if buf.len() >= 10 => {
            let mut length = [0u8; 8];
            length.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(length))
        }
        126 | 127 => return Ok(None),
        short => (2, u64::from(short)),
    };
    let payload_len = usize::try_from(payload_len)
        .ok()
        .filter(|len| *len <= MAX_FRAME)
        .ok_or_else(|| format!("a server frame of {payload_len} bytes is over the limit"))?;
    let len = payload_start + payload_len;
    Ok((buf.len() >= len).then_some(FrameSpan {
        fin: first & 0x80 != 0,
        opcode,
        payload_start,
        len,
    }))
}

/// Appends a final, masked client frame carrying `payload` to `out`.
pub fn encode_client(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let mut key = [0u8; 4];
    // A failed random source only makes the mask predictable, which a bench can live with.
    let _ = getrandom::fill(&mut key);
    out.extend_from_slice(&key);
    out.extend(
        payload
            .iter()
            .zip(key.iter().cycle())
            .map(|(byte, mask)| byte ^ mask),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unmask(frame: &[u8], header: usize) -> Vec<u8> {
        let key = &frame[header - 4..header];
        frame[header..]
            .iter()
            .zip(key.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect()
    }

    #[test]
    fn server_frames_parse_only_when_complete() {
        let frame = [0x81, 3, b'a', b'b', b'c', 0x89];
        assert_eq!(parse_frame(&frame[..4]), Ok(None));
        let span = parse_frame(&frame).unwrap().unwrap();
        assert_eq!((span.fin, span.opcode, span.len), (true, OP_TEXT, 5));
        assert_eq!(span.payload(&frame), b"abc");
        let mut long = vec![0x01, 126, 0x01, 0x00];
        long.resize(4 + 256, b'x');
        let span = parse_frame(&long).unwrap().unwrap();
        assert_eq!((span.fin, span.payload_start, span.len), (false, 4, 260));
        assert_eq!(parse_frame(&long[..100]), Ok(None));
        assert_eq!(parse_frame(&[0x82, 127, 0, 0]), Ok(None));
    }

    #[test]
    fn protocol_violations_are_errors() {
        assert!(parse_frame(&[0x81, 0x81, 0, 0, 0, 0, 0]).is_err());
        assert!(parse_frame(&[0xC1, 0]).is_err());
        assert!(parse_frame(&[0x83, 0]).is_err());
        assert!(parse_frame(&[0x82, 127, 0xFF, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn client_frames_are_masked() {
        let mut out = Vec::new();
        encode_client(OP_TEXT, b"hello", &mut out);
        assert_eq!(&out[..2], &[0x81, 0x85]);
        assert_eq!(unmask(&out, 6), b"hello");
        let payload = vec![7u8; 300];
        out.clear();
        encode_client(OP_PONG, &payload, &mut out);
        assert_eq!(&out[..4], &[0x8A, 0x80 | 126, 0x01, 0x2C]);
        assert_eq!(unmask(&out, 8), payload);
    }
}
