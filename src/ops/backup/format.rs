//! The backup file, format 1: writing it ([`Encoder`]) and reading it back
//! with every check ([`read`]).
//!
//! ```text
//! "tidings backup\n"      magic line
//! "format 1\n"            format version line
//! record …                kind (1 byte) · body length (u32, big-endian) · body
//!   H   header: JSON {"createdAt","tidingsVersion","schemaVersion","source"}
//!   C   the data directory's config.json, byte for byte (admin key, secrets)
//!   S   scan chunk: pairs read from the store, keys strictly increasing
//!   J   journal: operations of batches made durable during the scan, in order
//!   T   trailer: JSON {"scanRecords","scanPairs","journalRecords","journalOps"}
//! SHA-256 (32 bytes) of every byte before it; nothing follows
//! ```
//!
//! An operation inside `S` and `J` is a tag (`P` put, `D` delete; `S` holds
//! puts only), the key's length (u32) and bytes, and for a put the value's
//! length (u32) and bytes. A backup that fails while it is written ends with
//! an `F` record (the reason, UTF-8) instead of a trailer: such a file is
//! refused with that reason. The counts are in the trailer because the file
//! is written as the store is read.
//!
//! Invariants: `H` then `C` come first, then `S` and `J` records in any
//! order, then `T` and the digest, and the file ends there; no record body
//! is larger than [`MAX_RECORD_BYTES`] (the writer splits journal batches
//! over several `J` records: restore applies them in order, so the split
//! changes nothing); a reader checks the structure of every record, the
//! counts and the digest, and reports a damaged, truncated or foreign file
//! as [`ReadError::Bad`] with the offset where it went wrong.

use crate::core::datadir::InstanceConfig;
use crate::core::store::Op;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;

/// The first line of every backup file.
pub const MAGIC: &[u8] = b"tidings backup\n";
/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest record body a reader accepts (and a writer produces).
pub const MAX_RECORD_BYTES: usize = 256 << 20;
/// Size a writer aims at for one scan or journal record.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Length of the digest that ends the file.
const DIGEST_BYTES: usize = 32;
/// Longest format version line a reader looks at.
const MAX_VERSION_LINE: usize = 32;

const HEADER: u8 = b'H';
const CONFIG: u8 = b'C';
const SCAN: u8 = b'S';
const JOURNAL: u8 = b'J';
const TRAILER: u8 = b'T';
const FAILED: u8 = b'F';
const PUT: u8 = b'P';
const DELETE: u8 = b'D';

/// How the backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// From a running server, while it took writes.
    Online,
    /// From a data directory no server held.
    Offline,
}

/// The `H` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    /// When the backup started (RFC 3339).
    pub created_at: String,
    /// The version of the tidings that wrote it.
    pub tidings_version: String,
    /// The store schema of the data.
    pub schema_version: u64,
    /// Online or offline.
    pub source: Source,
}

impl Header {
    /// A header for a backup starting now, of data in this build's schema.
    pub fn now(source: Source) -> Self {
        Self {
            created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            tidings_version: env!("CARGO_PKG_VERSION").to_string(),
            schema_version: crate::core::store::SCHEMA_VERSION,
            source,
        }
    }
}

/// The `T` record: what the file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Counts {
    /// `S` records.
    pub scan_records: u64,
    /// Pairs in them.
    pub scan_pairs: u64,
    /// `J` records.
    pub journal_records: u64,
    /// Operations in them.
    pub journal_ops: u64,
}

/// Writes a backup file into memory a piece at a time: each
/// [`Encoder::take`] hands out what was encoded since the last one.
pub struct Encoder {
    buffer: BytesMut,
    hasher: Sha256,
    counts: Counts,
}

impl Encoder {
    /// Starts a file: magic, version, the header and `config` (config.json).
    pub fn new(header: &Header, config: &[u8]) -> Result<Self, String> {
        let mut encoder = Self {
            buffer: BytesMut::new(),
            hasher: Sha256::new(),
            counts: Counts::default(),
        };
        encoder.buffer.put_slice(MAGIC);
        encoder
            .buffer
            .put_slice(format!("format {FORMAT_VERSION}\n").as_bytes());
        let header = serde_json::to_vec(header).map_err(|err| err.to_string())?;
        encoder.record(HEADER, &header)?;
        encoder.record(CONFIG, config)?;
        Ok(encoder)
    }

    /// Adds one `S` record of `pairs` (the next ones in key order).
    pub fn scan(&mut self, pairs: &[(sled::IVec, sled::IVec)]) -> Result<(), String> {
        let mut body = Vec::new();
        for (key, value) in pairs {
            encode_op(&mut body, key, Some(value));
        }
        self.record(SCAN, &body)?;
        self.counts.scan_records += 1;
        self.counts.scan_pairs += pairs.len() as u64;
        Ok(())
    }

    /// Adds the operations of one durable batch as `J` records of about
    /// [`CHUNK_BYTES`] each.
    pub fn journal(&mut self, ops: &[Op]) -> Result<(), String> {
        let mut body = Vec::new();
        let mut in_body = 0;
        for (key, value) in ops {
            encode_op(&mut body, key, value.as_deref());
            in_body += 1;
            if body.len() >= CHUNK_BYTES {
                self.journal_record(&body, in_body)?;
                body.clear();
                in_body = 0;
            }
        }
        if in_body > 0 {
            self.journal_record(&body, in_body)?;
        }
        Ok(())
    }

    fn journal_record(&mut self, body: &[u8], ops: u64) -> Result<(), String> {
        self.record(JOURNAL, body)?;
        self.counts.journal_records += 1;
        self.counts.journal_ops += ops;
        Ok(())
    }

    /// What the file holds so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The bytes encoded since the last take.
    pub fn take(&mut self) -> Bytes {
        let bytes = self.buffer.split().freeze();
        self.hasher.update(&bytes);
        bytes
    }

    /// Ends the file: the trailer and the digest (with what was not taken yet).
    pub fn finish(mut self) -> Result<Bytes, String> {
        let counts = serde_json::to_vec(&self.counts).map_err(|err| err.to_string())?;
        self.record(TRAILER, &counts)?;
        let rest = self.take();
        let mut tail = BytesMut::from(&rest[..]);
        tail.put_slice(&self.hasher.finalize());
        Ok(tail.freeze())
    }

    /// Ends the file as failed: an `F` record saying why (readers refuse it).
    pub fn failure(mut self, reason: &str) -> Bytes {
        // A reason is short; should it not fit, the file still ends unfinished.
        let _ = self.record(FAILED, reason.as_bytes());
        self.take()
    }

    fn record(&mut self, kind: u8, body: &[u8]) -> Result<(), String> {
        if body.len() > MAX_RECORD_BYTES {
            return Err(format!(
                "a stored value makes a backup record of {} bytes, more than the {MAX_RECORD_BYTES} a record may hold",
                body.len()
            ));
        }
        self.buffer.put_u8(kind);
        self.buffer.put_u32(body.len() as u32);
        self.buffer.put_slice(body);
        Ok(())
    }
}

fn encode_op(body: &mut Vec<u8>, key: &[u8], value: Option<&[u8]>) {
    body.push(if value.is_some() { PUT } else { DELETE });
    body.extend_from_slice(&(key.len() as u32).to_be_bytes());
    body.extend_from_slice(key);
    if let Some(value) = value {
        body.extend_from_slice(&(value.len() as u32).to_be_bytes());
        body.extend_from_slice(value);
    }
}

/// Why a backup file cannot be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file is not a complete, intact backup this build reads.
    Bad(String),
    /// Reading it failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bad(reason) => f.write_str(reason),
            Self::Io(err) => write!(f, "reading it failed: {err}"),
        }
    }
}

/// One record as read back.
pub enum Record {
    /// Scanned pairs (puts), keys increasing.
    Scan(Vec<Op>),
    /// Journaled operations, in order.
    Journal(Vec<Op>),
}

/// What a whole, intact file holds besides its records.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The header.
    pub header: Header,
    /// config.json as it was backed up.
    pub config: Vec<u8>,
    /// The trailer's counts (equal to what the records hold).
    pub counts: Counts,
    /// Size of the file.
    pub bytes: u64,
}

/// Reads a whole backup from `input`, checking everything, and hands each
/// `S` and `J` record to `visit` in file order; the summary once the
/// trailer, the counts and the digest are right and nothing follows.
/// `visit` may already have seen records of a file that turns out bad; its
/// error stops the reading.
pub fn read<E: From<ReadError>>(
    input: impl Read,
    mut visit: impl FnMut(Record) -> Result<(), E>,
) -> Result<Summary, E> {
    let mut reader = Reader::open(input)?;
    let header = reader.header()?;
    let config = reader.config()?;
    let mut seen = Counts::default();
    let mut last_scanned: Option<sled::IVec> = None;
    loop {
        let (kind, body) = reader.record()?;
        match kind {
            SCAN => {
                let ops = reader.ops(&body, true)?;
                reader.check_scan_order(&ops, &mut last_scanned)?;
                seen.scan_records += 1;
                seen.scan_pairs += ops.len() as u64;
                visit(Record::Scan(ops))?;
            }
            JOURNAL => {
                let ops = reader.ops(&body, false)?;
                seen.journal_records += 1;
                seen.journal_ops += ops.len() as u64;
                visit(Record::Journal(ops))?;
            }
            TRAILER => {
                let counts = reader.trailer(&body, seen)?;
                return Ok(Summary {
                    header,
                    config,
                    counts,
                    bytes: reader.offset,
                });
            }
            FAILED => {
                return Err(bad(format!(
                    "the backup failed while it was written ({}); the file is incomplete",
                    String::from_utf8_lossy(&body)
                ))
                .into());
            }
            other => {
                return Err(reader
                    .damaged(format!("unknown record kind 0x{other:02x}"))
                    .into());
            }
        }
    }
}

fn bad(reason: impl Into<String>) -> ReadError {
    ReadError::Bad(reason.into())
}

/// Reads records and keeps the running digest and offset.
struct Reader<R> {
    input: R,
    hasher: Sha256,
    offset: u64,
    /// Offset of the record being read (for messages).
    record_at: u64,
}

impl<R: Read> Reader<R> {
    fn open(input: R) -> Result<Self, ReadError> {
        let mut reader = Self {
            input,
            hasher: Sha256::new(),
            offset: 0,
            record_at: 0,
        };
        let mut magic = [0; MAGIC.len()];
        match reader.input.read_exact(&mut magic) {
            Ok(()) if magic == MAGIC => reader.hash(&magic),
            Ok(()) => return Err(not_a_backup()),
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(not_a_backup());
            }
            Err(err) => return Err(ReadError::Io(err)),
        }
        reader.version()?;
        Ok(reader)
    }

    fn hash(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
    }

    fn version(&mut self) -> Result<(), ReadError> {
        let mut line = Vec::new();
        let mut byte = [0; 1];
        while line.last() != Some(&b'\n') {
            if line.len() >= MAX_VERSION_LINE {
                return Err(bad("no format version line after the magic line"));
            }
            self.exact(&mut byte)?;
            line.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&line);
        let version = text
            .trim_end()
            .strip_prefix("format ")
            .and_then(|number| number.parse::<u32>().ok())
            .ok_or_else(|| {
                bad(format!(
                    "unreadable format version line {:?}",
                    text.trim_end()
                ))
            })?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "the file is in backup format {version}; this tidings reads format {FORMAT_VERSION}{}",
                if version > FORMAT_VERSION {
                    " (use the tidings that wrote it, or a newer one)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// Reads exactly `buffer`, hashing it; the end of the file here means truncated.
    fn exact(&mut self, buffer: &mut [u8]) -> Result<(), ReadError> {
        match self.input.read_exact(buffer) {
            Ok(()) => {
                self.hash(buffer);
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Err(bad(format!(
                "the file is truncated: it ends inside the record at offset {} (an incomplete copy or an interrupted backup)",
                self.record_at
            ))),
            Err(err) => Err(ReadError::Io(err)),
        }
    }

    fn damaged(&self, what: String) -> ReadError {
        bad(format!(
            "the file is damaged: {what} in the record at offset {}",
            self.record_at
        ))
    }

    fn record(&mut self) -> Result<(u8, Vec<u8>), ReadError> {
        self.record_at = self.offset;
        let mut head = [0; 5];
        self.exact(&mut head)?;
        let length = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if length > MAX_RECORD_BYTES {
            return Err(self.damaged(format!(
                "a length of {length} bytes (more than {MAX_RECORD_BYTES})"
            )));
        }
        let mut body = vec![0; length];
        self.exact(&mut body)?;
        Ok((head[0], body))
    }

    fn expect(&mut self, kind: u8, name: &str) -> Result<Vec<u8>, ReadError> {
        let (found, body) = self.record()?;
        if found != kind {
            return Err(self.damaged(format!(
                "a record of kind 0x{found:02x} where the {name} belongs"
            )));
        }
        Ok(body)
    }

    fn header(&mut self) -> Result<Header, ReadError> {
        let body = self.expect(HEADER, "header")?;
        serde_json::from_slice(&body)
            .map_err(|err| self.damaged(format!("an unreadable header ({err})")))
    }

    fn config(&mut self) -> Result<Vec<u8>, ReadError> {
        let body = self.expect(CONFIG, "config.json")?;
        serde_json::from_slice::<InstanceConfig>(&body)
            .map_err(|err| self.damaged(format!("an unreadable config.json ({err})")))?;
        Ok(body)
    }

    /// The operations of a record body (`puts_only` for scan records).
    fn ops(&self, body: &[u8], puts_only: bool) -> Result<Vec<Op>, ReadError> {
        let mut ops = Vec::new();
        let mut rest = body;
        while let Some((&tag, after_tag)) = rest.split_first() {
            let (key, after_key) = self.field(after_tag)?;
            rest = after_key;
            let value = match tag {
                PUT => {
                    let (value, after_value) = self.field(rest)?;
                    rest = after_value;
                    Some(value.into())
                }
                DELETE if !puts_only => None,
                other => {
                    return Err(self.damaged(format!("an operation tagged 0x{other:02x}")));
                }
            };
            ops.push((key.into(), value));
        }
        Ok(ops)
    }

    /// A length-prefixed field at the start of `bytes`, and what follows it.
    fn field<'a>(&self, bytes: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ReadError> {
        let overrun = || self.damaged("a field longer than its record".into());
        let (length, rest) = bytes.split_first_chunk::<4>().ok_or_else(overrun)?;
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(overrun());
        }
        Ok(rest.split_at(length))
    }

    fn check_scan_order(&self, ops: &[Op], last: &mut Option<sled::IVec>) -> Result<(), ReadError> {
        for (key, _) in ops {
            if last.as_ref().is_some_and(|last| key <= last) {
                return Err(self.damaged("scanned keys out of order".into()));
            }
            *last = Some(key.clone());
        }
        Ok(())
    }

    /// Checks the trailer's counts against what was read, the digest, and
    /// that the file ends there.
    fn trailer(&mut self, body: &[u8], seen: Counts) -> Result<Counts, ReadError> {
        let counts: Counts = serde_json::from_slice(body)
            .map_err(|err| self.damaged(format!("an unreadable trailer ({err})")))?;
        if counts != seen {
            return Err(self.damaged(format!(
                "a trailer counting {counts:?} where the file holds {seen:?}"
            )));
        }
        let expected = self.hasher.clone().finalize();
        self.record_at = self.offset;
        let mut digest = [0; DIGEST_BYTES];
        self.exact(&mut digest)?;
        if digest[..] != expected[..] {
            return Err(bad(
                "the file is damaged: its SHA-256 checksum does not match its contents",
            ));
        }
        let mut extra = [0; 1];
        match self.input.read(&mut extra) {
            Ok(0) => Ok(counts),
            Ok(_) => Err(bad("the file is damaged: bytes follow its checksum")),
            Err(err) => Err(ReadError::Io(err)),
        }
    }
}

fn not_a_backup() -> ReadError {
    bad("not a tidings backup file (it does not start with the `tidings backup` line)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG_JSON: &[u8] = br#"{"formatVersion":1,"createdAt":"2026-01-01T00:00:00Z","adminKey":"adm_x",
        "defaultTenant":{"id":"00000000-0000-0000-0000-000000000000","slug":"default"},"jwtRealms":[]}"#;

    fn pair(key: &[u8], value: &[u8]) -> (sled::IVec, sled::IVec) {
        (key.into(), value.into())
    }

    fn sample() -> Vec<u8> {
        let mut encoder = Encoder::new(&Header::now(Source::Online), CONFIG_JSON).unwrap();
        let mut file = encoder.take().to_vec();
        encoder.scan(&[pair(b"a", b"1"), pair(b"b", b"2")]).unwrap();
        encoder
            .journal(&[(b"c".into(), Some(b"3".into())), (b"a".into(), None)])
            .unwrap();
        encoder.scan(&[pair(b"c", b"")]).unwrap();
        file.extend_from_slice(&encoder.take());
        file.extend_from_slice(&encoder.finish().unwrap());
        file
    }

    fn read_all(file: &[u8]) -> Result<(Summary, Vec<String>), ReadError> {
        let mut seen = Vec::new();
        let summary = read(file, |record| -> Result<(), ReadError> {
            let (kind, ops) = match record {
                Record::Scan(ops) => ("S", ops),
                Record::Journal(ops) => ("J", ops),
            };
            for (key, value) in ops {
                let key = String::from_utf8_lossy(&key).into_owned();
                let value = value.map(|v| String::from_utf8_lossy(&v).into_owned());
                seen.push(format!("{kind} {key}={value:?}"));
            }
            Ok(())
        })?;
        Ok((summary, seen))
    }

    fn refusal(file: &[u8]) -> String {
        match read_all(file) {
            Err(ReadError::Bad(reason)) => reason,
            Err(ReadError::Io(err)) => panic!("an I/O error: {err}"),
            Ok(_) => panic!("a bad file was accepted"),
        }
    }

    #[test]
    fn a_file_reads_back_record_by_record_with_its_counts() {
        let file = sample();
        assert!(file.starts_with(b"tidings backup\nformat 1\nH"));
        let (summary, seen) = read_all(&file).unwrap();
        assert_eq!(
            seen,
            [
                "S a=Some(\"1\")",
                "S b=Some(\"2\")",
                "J c=Some(\"3\")",
                "J a=None",
                "S c=Some(\"\")"
            ]
        );
        assert_eq!(summary.header.source, Source::Online);
        assert_eq!(summary.config, CONFIG_JSON);
        assert_eq!(summary.bytes, file.len() as u64);
        assert_eq!(
            summary.counts,
            Counts {
                scan_records: 2,
                scan_pairs: 3,
                journal_records: 1,
                journal_ops: 2
            }
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let file = sample();
        for at in 0..file.len() {
            let mut damaged = file.clone();
            damaged[at] ^= 0x20;
            let reason = refusal(&damaged);
            assert!(
                reason.contains("damaged")
                    || reason.contains("truncated")
                    || reason.contains("not a tidings backup")
                    || reason.contains("format"),
                "byte {at}: {reason}"
            );
            let reason = refusal(&file[..at]);
            assert!(
                reason.contains("truncated") || reason.contains("not a tidings backup"),
                "cut at {at}: {reason}"
            );
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(refusal(&longer).contains("follow its checksum"));
    }

    #[test]
    fn other_formats_and_failed_backups_are_refused_with_their_reason() {
        let file = sample();
        assert!(refusal(b"PK\x03\x04 a zip file").contains("not a tidings backup"));
        let newer = [&b"tidings backup\nformat 2\n"[..], &file[24..]].concat();
        assert!(refusal(&newer).contains("format 2"), "{}", refusal(&newer));
        let mut encoder = Encoder::new(&Header::now(Source::Online), CONFIG_JSON).unwrap();
        let mut failed = encoder.take().to_vec();
        failed.extend_from_slice(&encoder.failure("the store failed"));
        let reason = refusal(&failed);
        assert!(
            reason.contains("the store failed") && reason.contains("incomplete"),
            "{reason}"
        );
    }

    #[test]
    fn a_large_batch_spans_journal_records_of_bounded_size() {
        let value = vec![7u8; CHUNK_BYTES / 3];
        let ops: Vec<Op> = (0..10u8)
            .map(|i| (vec![i].into(), Some(value.clone().into())))
            .collect();
        let mut encoder = Encoder::new(&Header::now(Source::Offline), CONFIG_JSON).unwrap();
        encoder.journal(&ops).unwrap();
        assert_eq!(encoder.counts().journal_records, 4);
        assert_eq!(encoder.counts().journal_ops, 10);
    }
}
