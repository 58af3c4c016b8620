//! Incremental Server-Sent Events parser (the WHATWG event-stream format).
//!
//! Bytes arrive in arbitrary chunks; [`SseParser::feed`] turns them into
//! [`SseItem`]s: complete frames (dispatched at a blank line) and comment lines
//! (heartbeats). Lines end with LF, CR or CRLF, even when the CR and LF land in
//! different chunks. Unlike a browser, a frame that has an `event:` or `id:`
//! but no `data:` is reported too, because the benchmark wants to see every
//! frame the server sends.

use std::collections::VecDeque;

/// Longest line accepted; a longer one means the stream is not SSE.
pub const MAX_LINE: usize = 4 << 20;

/// One dispatched frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// The `id:` field of this frame, if it had one.
    pub id: Option<String>,
    /// The `event:` field, if it had one (a browser would say `message`).
    pub event: Option<String>,
    /// All `data:` lines joined with `\n`.
    pub data: String,
    /// The `retry:` field in milliseconds, if it had a valid one.
    pub retry: Option<u64>,
}

/// What the parser produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete frame.
    Frame(SseFrame),
    /// A comment line (`: …`), usually a heartbeat; the text after the colon.
    Comment(String),
}

/// The stream broke the format (only an overlong line does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError(pub String);

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parser state kept between chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The unfinished line carried over from earlier chunks.
    line: Vec<u8>,
    /// The previous chunk ended with CR: a leading LF belongs to it.
    skip_lf: bool,
    /// The frame being assembled.
    frame: SseFrame,
    /// Whether the frame being assembled has any field yet.
    has_field: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one chunk, appending every completed item to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut VecDeque<SseItem>) -> Result<(), SseError> {
        let mut rest = chunk;
        if self.skip_lf && !rest.is_empty() {
            self.skip_lf = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.finish_line(&rest[..end], out);
            let was_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(SseError(format!(
                "an SSE line is longer than {MAX_LINE} bytes; this is not an event stream"
            )));
        }
        Ok(())
    }

    /// Completes a line whose tail is `tail` (earlier parts may be buffered).
    fn finish_line(&mut self, tail: &[u8], out: &mut VecDeque<SseItem>) {
        if self.line.is_empty() {
            self.process_line(tail, out);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line, out);
            line.clear();
            self.line = line;
        }
    }

    /// Interprets one complete line.
    fn process_line(&mut self, line: &[u8], out: &mut VecDeque<SseItem>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            let text = String::from_utf8_lossy(&line[1..]);
            out.push_back(SseItem::Comment(text.trim_start().to_string()));
            return;
        }
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        self.apply_field(name, value);
    }

    /// Applies one `name: value` field to the frame being assembled.
    fn apply_field(&mut self, name: &[u8], value: &[u8]) {
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match name {
            b"data" => {
                self.frame.data.push_str(&value);
                self.frame.data.push('\n');
            }
            b"event" => self.frame.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.frame.id = Some(value.into_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.frame.retry = value.parse().ok();
            }
            _ => return,
        }
        self.has_field = true;
    }

    /// Emits the assembled frame, if it has any field.
    fn dispatch(&mut self, out: &mut VecDeque<SseItem>) {
        if !std::mem::take(&mut self.has_field) {
            return;
        }
        let mut frame = std::mem::take(&mut self.frame);
        if frame.data.ends_with('\n') {
            frame.data.pop();
        }
        out.push_back(SseItem::Frame(frame));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "retry: 5000\n\nevent: connected\ndata: {\"topic\":\"t\"}\n\n: heartbeat\n\
id: 01J0000000000000000000000A\r\nevent: bench\r\ndata: {\"a\":1}\r\n\r\n\
id:01J0000000000000000000000B\revent:bench\rdata:line one\rdata:line two\r\r\
data\n\n";

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::new();
        let mut out = VecDeque::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("valid stream");
        }
        out.into_iter().collect()
    }

    fn frame(id: Option<&str>, event: Option<&str>, data: &str) -> SseItem {
        SseItem::Frame(SseFrame {
            id: id.map(str::to_string),
            event: event.map(str::to_string),
            data: data.to_string(),
            retry: None,
        })
    }

    fn expected() -> Vec<SseItem> {
        vec![
            SseItem::Frame(SseFrame {
                retry: Some(5000),
                ..SseFrame::default()
            }),
            frame(None, Some("connected"), "{\"topic\":\"t\"}"),
            SseItem::Comment("heartbeat".into()),
            frame(
                Some("01J0000000000000000000000A"),
                Some("bench"),
                "{\"a\":1}",
            ),
            frame(
                Some("01J0000000000000000000000B"),
                Some("bench"),
                "line one\nline two",
            ),
            frame(None, None, ""),
        ]
    }

    #[test]
    fn whole_stream_in_one_chunk() {
        assert_eq!(parse_chunks(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_two_way_split_gives_the_same_items() {
        let bytes = STREAM.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(parse_chunks(&[a, b]), expected(), "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_items() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), expected());
    }

    #[test]
    fn empty_chunks_keep_a_pending_cr() {
        let items = parse_chunks(&[b"data: x\r", b"", b"\n", b"\n"]);
        assert_eq!(items, vec![frame(None, None, "x")]);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_ignored() {
        let items = parse_chunks(&[b"foo: bar\nretry: soon\nid: a\0b\n\ndata: ok\n\n"]);
        assert_eq!(items, vec![frame(None, None, "ok")]);
    }

    #[test]
    fn unfinished_frame_is_not_dispatched() {
        assert!(parse_chunks(&[b"data: half"]).is_empty());
        assert!(parse_chunks(&[b"data: half\n"]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let items = parse_chunks(&[b"data: a\xffb\n\n"]);
        assert_eq!(items, vec![frame(None, None, "a\u{fffd}b")]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut parser = SseParser::new();
        let mut out = VecDeque::new();
        let big = vec![b'x'; MAX_LINE + 1];
        assert!(parser.feed(&big, &mut out).is_err());
    }
}
