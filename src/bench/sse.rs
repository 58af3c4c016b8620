//! Incremental, zero-copy Server-Sent Events scanner (the WHATWG event-stream format).
//!
//! The subscriber appends decoded body bytes to the scanner's own buffer
//! ([`SseScanner::buffer`]); [`SseScanner::next_frame`] then returns each
//! complete frame (dispatched at a blank line) as a [`Frame`] that borrows
//! its fields from that buffer, so a delivery costs no allocation. Lines end
//! with LF, CR or CRLF, even when the CR and the LF arrive in different reads.
//! Comment lines (`: heartbeat`) are skipped, as a browser does. Unlike a
//! browser, a frame that has an `event:` or `id:` but no `data:` is reported
//! too, because the benchmark wants to see every frame the server sends.

use memchr::memchr2;
use std::ops::Range;

/// Longest frame accepted; a longer one means the stream is not SSE.
pub const MAX_FRAME: usize = 4 << 20;

/// One dispatched frame, borrowed from the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The `id:` field of this frame, if it had one.
    pub id: Option<&'a [u8]>,
    /// The `event:` field, if it had one (a browser would say `message`).
    pub event: Option<&'a [u8]>,
    /// All `data:` lines joined with `\n`.
    pub data: &'a [u8],
    /// The `retry:` field in milliseconds, if it had a valid one.
    pub retry: Option<u64>,
}

/// An owned copy of a frame (text decoded lossily), for frames kept for later.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseFrame {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The joined `data:` lines.
    pub data: String,
    /// The `retry:` field.
    pub retry: Option<u64>,
}

impl Frame<'_> {
    /// An owned copy.
    pub fn to_owned_frame(&self) -> SseFrame {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        SseFrame {
            id: self.id.map(text),
            event: self.event.map(text),
            data: text(self.data),
            retry: self.retry,
        }
    }

    /// The frame as it would be borrowed from a scanner.
    pub fn of(frame: &SseFrame) -> Frame<'_> {
        Frame {
            id: frame.id.as_deref().map(str::as_bytes),
            event: frame.event.as_deref().map(str::as_bytes),
            data: frame.data.as_bytes(),
            retry: frame.retry,
        }
    }
}

/// The stream broke the format (only an overlong frame does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseError(pub String);

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the fields of one frame are, as ranges of the buffer.
#[derive(Debug, Default)]
struct Fields {
    id: Option<Range<usize>>,
    event: Option<Range<usize>>,
    /// The only data line, or `None` when there were several (joined in the scratch buffer).
    data: Option<Range<usize>>,
    data_lines: usize,
    retry: Option<u64>,
    has_field: bool,
}

/// Scanner state kept between reads.
#[derive(Debug, Default)]
pub struct SseScanner {
    /// Body bytes; `start..` are not yet returned.
    buf: Vec<u8>,
    /// First byte of the frame being assembled.
    start: usize,
    /// Where the search for the next line end continues.
    scan: usize,
    /// First byte of the current line.
    line_start: usize,
    /// The last line ended with a CR at the end of the buffer: a leading LF belongs to it.
    pending_cr: bool,
    /// Data of a frame with several `data:` lines, joined.
    joined: Vec<u8>,
}

impl SseScanner {
    /// A scanner at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A scanner whose buffer starts with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Moves unreturned bytes to the front and makes room for `want` more.
    pub fn reserve(&mut self, want: usize) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.rebase(self.start);
        } else if self.buf.capacity() - self.buf.len() < want && self.start > 0 {
            self.buf.drain(..self.start);
            self.rebase(self.start);
        }
        self.buf.reserve(want);
    }

    /// Shifts the positions after `shift` bytes were removed from the front.
    fn rebase(&mut self, shift: usize) {
        self.start -= shift;
        self.scan -= shift;
        self.line_start -= shift;
    }

    /// The buffer to append body bytes to (only appending keeps the scanner consistent).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends body bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, SseError> {
        let fields = loop {
            let Some(block) = self.next_block() else {
                return self.check_length().map(|()| None);
            };
            let fields = parse_fields(&self.buf, block, &mut self.joined);
            if fields.has_field {
                break fields;
            }
        };
        Ok(Some(self.frame(fields)))
    }

    /// Fails when the unfinished frame has grown beyond [`MAX_FRAME`].
    fn check_length(&self) -> Result<(), SseError> {
        if self.buf.len() - self.start > MAX_FRAME {
            return Err(SseError(format!(
                "an SSE frame is longer than {MAX_FRAME} bytes; this is not an event stream"
            )));
        }
        Ok(())
    }

    /// The borrowed frame of parsed fields.
    fn frame(&self, fields: Fields) -> Frame<'_> {
        let slice = |range: Option<Range<usize>>| range.map(|r| &self.buf[r]);
        let data = match (fields.data_lines, fields.data) {
            (0, _) => &[][..],
            (1, Some(range)) => &self.buf[range],
            _ => &self.joined[..],
        };
        Frame {
            id: slice(fields.id),
            event: slice(fields.event),
            data,
            retry: fields.retry,
        }
    }

    /// The range of the next complete frame's lines (without its blank line).
    fn next_block(&mut self) -> Option<Range<usize>> {
        loop {
            if self.pending_cr {
                let next = *self.buf.get(self.scan)?;
                self.pending_cr = false;
                if next == b'\n' {
                    self.scan += 1;
                    self.line_start = self.scan;
                }
            }
            let end = self.scan + memchr2(b'\n', b'\r', &self.buf[self.scan..])?;
            let blank = end == self.line_start;
            self.scan = end + 1;
            if self.buf[end] == b'\r' {
                match self.buf.get(self.scan) {
                    Some(b'\n') => self.scan += 1,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            self.line_start = self.scan;
            if blank {
                let block = self.start..end;
                self.start = self.scan;
                return Some(block);
            }
        }
    }
}

/// Splits a block into lines and records its fields.
fn parse_fields(buf: &[u8], block: Range<usize>, joined: &mut Vec<u8>) -> Fields {
    let mut fields = Fields::default();
    let mut at = block.start;
    while at < block.end {
        let end = memchr2(b'\n', b'\r', &buf[at..block.end]).map_or(block.end, |i| at + i);
        apply_line(buf, at..end, &mut fields, joined);
        at = end + 1;
        if buf.get(end) == Some(&b'\r') && buf.get(at) == Some(&b'\n') && at < block.end {
            at += 1;
        }
    }
    fields
}

/// Applies one line (`name: value`, a comment, or an empty leftover of a CRLF).
fn apply_line(buf: &[u8], line: Range<usize>, fields: &mut Fields, joined: &mut Vec<u8>) {
    let text = &buf[line.clone()];
    if text.is_empty() || text[0] == b':' {
        return;
    }
    let (name, value) = match memchr::memchr(b':', text) {
        Some(colon) => {
            let skip = usize::from(text.get(colon + 1) == Some(&b' '));
            (&text[..colon], line.start + colon + 1 + skip..line.end)
        }
        None => (text, line.end..line.end),
    };
    let bytes = &buf[value.clone()];
    match name {
        b"data" => add_data(buf, value, fields, joined),
        b"event" => fields.event = Some(value),
        b"id" if !bytes.contains(&0) => fields.id = Some(value),
        b"retry" if !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) => {
            fields.retry = std::str::from_utf8(bytes).ok().and_then(|t| t.parse().ok());
        }
        _ => return,
    }
    fields.has_field = true;
}

/// Adds one data line: kept as a range while it is the only one, else joined.
fn add_data(buf: &[u8], value: Range<usize>, fields: &mut Fields, joined: &mut Vec<u8>) {
    fields.data_lines += 1;
    match fields.data_lines {
        1 => fields.data = Some(value),
        2 => {
            joined.clear();
            if let Some(first) = fields.data.take() {
                joined.extend_from_slice(&buf[first]);
            }
            joined.push(b'\n');
            joined.extend_from_slice(&buf[value]);
        }
        _ => {
            joined.push(b'\n');
            joined.extend_from_slice(&buf[value]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "retry: 5000\n\nevent: connected\ndata: {\"topic\":\"t\"}\n\n: heartbeat\n\
id: 01J0000000000000000000000A\r\nevent: bench\r\ndata: {\"a\":1}\r\n\r\n\
id:01J0000000000000000000000B\revent:bench\rdata:line one\rdata:line two\r\r\
data\n\n";

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut scanner = SseScanner::new();
        let mut out = Vec::new();
        for chunk in chunks {
            scanner.reserve(chunk.len());
            scanner.extend(chunk);
            while let Some(frame) = scanner.next_frame().expect("valid stream") {
                out.push(frame.to_owned_frame());
            }
        }
        out
    }

    fn frame(id: Option<&str>, event: Option<&str>, data: &str) -> SseFrame {
        SseFrame {
            id: id.map(str::to_string),
            event: event.map(str::to_string),
            data: data.to_string(),
            retry: None,
        }
    }

    fn expected() -> Vec<SseFrame> {
        vec![
            SseFrame {
                retry: Some(5000),
                ..SseFrame::default()
            },
            frame(None, Some("connected"), "{\"topic\":\"t\"}"),
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
    fn every_two_way_split_gives_the_same_frames() {
        let bytes = STREAM.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(parse_chunks(&[a, b]), expected(), "split at {split}");
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), expected());
    }

    #[test]
    fn empty_chunks_keep_a_pending_cr() {
        let frames = parse_chunks(&[b"data: x\r", b"", b"\n", b"\n"]);
        assert_eq!(frames, vec![frame(None, None, "x")]);
    }

    #[test]
    fn a_frame_ended_by_a_lone_cr_is_dispatched_at_once() {
        let mut scanner = SseScanner::new();
        scanner.extend(b"data: x\r\r");
        let first = scanner
            .next_frame()
            .expect("valid")
            .map(|f| f.to_owned_frame());
        assert_eq!(first, Some(frame(None, None, "x")));
        scanner.extend(b"\ndata: y\n\n");
        let second = scanner
            .next_frame()
            .expect("valid")
            .map(|f| f.to_owned_frame());
        assert_eq!(second, Some(frame(None, None, "y")));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_ignored() {
        let frames = parse_chunks(&[b"foo: bar\nretry: soon\nid: a\0b\n\ndata: ok\n\n"]);
        assert_eq!(frames, vec![frame(None, None, "ok")]);
    }

    #[test]
    fn comment_only_blocks_and_extra_blank_lines_yield_nothing() {
        assert!(parse_chunks(&[b": heartbeat\n\n\n\n: more\r\n\r\n"]).is_empty());
    }

    #[test]
    fn unfinished_frame_is_not_dispatched() {
        assert!(parse_chunks(&[b"data: half"]).is_empty());
        assert!(parse_chunks(&[b"data: half\n"]).is_empty());
    }

    #[test]
    fn invalid_utf8_is_kept_as_bytes_and_replaced_when_owned() {
        let mut scanner = SseScanner::new();
        scanner.extend(b"data: a\xffb\n\n");
        let found = scanner.next_frame().expect("valid").expect("a frame");
        assert_eq!(found.data, b"a\xffb");
        assert_eq!(found.to_owned_frame(), frame(None, None, "a\u{fffd}b"));
    }

    #[test]
    fn consumed_bytes_are_dropped_when_room_is_needed() {
        let mut scanner = SseScanner::with_capacity(16);
        for round in 0..100 {
            scanner.reserve(64);
            scanner.extend(format!("data: {round}\n\ndata: par").as_bytes());
            let got = scanner
                .next_frame()
                .expect("valid")
                .map(|f| f.to_owned_frame());
            assert_eq!(got, Some(frame(None, None, &round.to_string())));
            scanner.extend(b"t\n\n");
            let got = scanner
                .next_frame()
                .expect("valid")
                .map(|f| f.to_owned_frame());
            assert_eq!(got, Some(frame(None, None, "part")));
        }
        assert!(scanner.buf.capacity() < 1024, "the buffer does not grow");
    }

    #[test]
    fn overlong_frame_is_an_error() {
        let mut scanner = SseScanner::new();
        scanner.extend(&vec![b'x'; MAX_FRAME + 1]);
        assert!(scanner.next_frame().is_err());
    }
}
