//! Incremental decoder of HTTP/1.1 `Transfer-Encoding: chunked` bodies.
//!
//! The SSE subscriber reads raw socket bytes onto the end of its frame buffer
//! and [`ChunkDecoder::decode_in_place`] strips the chunk framing there, so
//! a body byte is copied at most once (a `copy_within` over the chunk header)
//! and no second buffer is needed. Chunk sizes, extensions and trailers may
//! be split anywhere between reads; the state carries over.

/// Largest chunk size accepted (1 TiB): anything bigger is not a real stream.
const MAX_CHUNK: u64 = 1 << 40;

/// The body is not valid chunked encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed chunked body: {}", self.0)
    }
}

/// Where the decoder is in the chunk grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` seen so far.
    Size { value: u64, digits: u32 },
    /// After the size: whitespace or an extension up to the end of the line.
    SizeTail { value: u64 },
    /// `remaining` data bytes of the current chunk are still to come.
    Data { remaining: u64 },
    /// The CRLF after a chunk's data; `cr` once its CR was seen.
    DataEnd { cr: bool },
    /// After the last chunk: trailer lines until an empty one.
    Trailer { at_line_start: bool },
    /// The body is complete.
    Done,
}

/// Decoder state kept between reads.
#[derive(Debug, Clone)]
pub struct ChunkDecoder {
    state: State,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// Whether the terminating chunk (and its trailer) has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `buf[from..]` (raw bytes just read) in place: on return `buf`
    /// holds its old body bytes `..from` followed by the newly decoded ones.
    pub fn decode_in_place(&mut self, buf: &mut Vec<u8>, from: usize) -> Result<(), ChunkError> {
        let mut read = from;
        let mut write = from;
        while read < buf.len() {
            if let State::Data { remaining } = self.state {
                let take = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len() - read);
                buf.copy_within(read..read + take, write);
                read += take;
                write += take;
                self.state = match remaining - take as u64 {
                    0 => State::DataEnd { cr: false },
                    left => State::Data { remaining: left },
                };
                continue;
            }
            self.state = self.step(buf[read])?;
            read += 1;
        }
        buf.truncate(write);
        Ok(())
    }

    /// Advances over one framing byte.
    fn step(&self, byte: u8) -> Result<State, ChunkError> {
        match self.state {
            State::Size { value, digits } => size_byte(value, digits, byte),
            State::SizeTail { value } => Ok(match byte {
                b'\n' => after_size_line(value),
                _ => State::SizeTail { value },
            }),
            State::DataEnd { cr: false } if byte == b'\r' => Ok(State::DataEnd { cr: true }),
            State::DataEnd { .. } if byte == b'\n' => Ok(State::Size {
                value: 0,
                digits: 0,
            }),
            State::DataEnd { .. } => Err(ChunkError("chunk data is not followed by CRLF")),
            State::Trailer { at_line_start } => Ok(match byte {
                b'\n' if at_line_start => State::Done,
                b'\n' => State::Trailer {
                    at_line_start: true,
                },
                b'\r' => State::Trailer { at_line_start },
                _ => State::Trailer {
                    at_line_start: false,
                },
            }),
            State::Done => Err(ChunkError("bytes after the last chunk")),
            State::Data { .. } => Err(ChunkError("internal: data byte stepped")),
        }
    }
}

/// One byte of a chunk-size line while reading hex digits.
fn size_byte(value: u64, digits: u32, byte: u8) -> Result<State, ChunkError> {
    if let Some(digit) = char::from(byte).to_digit(16) {
        let value = value * 16 + u64::from(digit);
        if value > MAX_CHUNK {
            return Err(ChunkError("chunk size too large"));
        }
        return Ok(State::Size {
            value,
            digits: digits + 1,
        });
    }
    if digits == 0 {
        return Err(ChunkError("chunk size is not a hex number"));
    }
    match byte {
        b'\n' => Ok(after_size_line(value)),
        b'\r' | b';' | b' ' | b'\t' => Ok(State::SizeTail { value }),
        _ => Err(ChunkError("unexpected byte after the chunk size")),
    }
}

/// The state after a complete size line announcing `value` bytes.
fn after_size_line(value: u64) -> State {
    if value == 0 {
        State::Trailer {
            at_line_start: true,
        }
    } else {
        State::Data { remaining: value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n3 \r\n\r\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n";
    const DECODED: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz\r\n\n";

    fn decode_chunks(chunks: &[&[u8]]) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut decoder = ChunkDecoder::new();
        let mut buf = Vec::new();
        for chunk in chunks {
            let from = buf.len();
            buf.extend_from_slice(chunk);
            decoder.decode_in_place(&mut buf, from)?;
        }
        Ok((buf, decoder.is_done()))
    }

    #[test]
    fn a_whole_body_decodes() {
        assert_eq!(decode_chunks(&[BODY]), Ok((DECODED.to_vec(), true)));
    }

    #[test]
    fn every_split_decodes_the_same() {
        for split in 0..=BODY.len() {
            let (a, b) = BODY.split_at(split);
            assert_eq!(
                decode_chunks(&[a, b]),
                Ok((DECODED.to_vec(), true)),
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = BODY.chunks(1).collect();
        assert_eq!(decode_chunks(&bytes), Ok((DECODED.to_vec(), true)));
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        let (decoded, done) = decode_chunks(&[b"5\r\nhel"]).expect("valid so far");
        assert_eq!(decoded, b"hel");
        assert!(!done);
        let (_, done) = decode_chunks(&[b"0\r\n"]).expect("valid so far");
        assert!(!done, "the empty trailer line is still missing");
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        for bad in [
            &b"g\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"FFFFFFFFFFFFFFFFFFFF\r\n",
            b"0\r\n\r\nmore",
            b"5x\r\n",
        ] {
            assert!(decode_chunks(&[bad]).is_err(), "{bad:?}");
        }
    }
}
