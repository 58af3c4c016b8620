//! The replicated form of one durable batch: its number and its operations,
//! as the writer stores it in its outbox row and publishes it to the stream.
//!
//! ```text
//! version:1 (=1) number:8 count:4 { kind:1 key_len:4 key [value_len:4 value] }*count digest:32
//! ```
//!
//! Integers are big-endian; `kind` is 0 for a put (a value follows) and 1 for
//! a delete; `digest` is the SHA-256 of everything before it.
//!
//! Invariants: decoding accepts exactly what encoding produces (any other
//! byte string is refused with a reason, never a panic, and never allocates
//! beyond the input's length); the operations keep their order (a later
//! write of a key wins when applied); the message id of a record depends
//! only on its bytes, so a resend of the same record is recognised as one.

use crate::core::store::Op;
use sha2::{Digest, Sha256};

/// The subject every record is published on (one subject: records are
/// whole batches, which span tenants and topics).
pub const SUBJECT: &str = "tidings.batches";
/// Header carrying the record's batch number, in decimal.
pub const BATCH_HEADER: &str = "Tidings-Batch";

const VERSION: u8 = 1;
const DIGEST_LEN: usize = 32;
const PUT: u8 = 0;
const DELETE: u8 = 1;

/// One durable batch of the writer, as replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// The batch's number: 1 for the writer's first batch, then one more
    /// for each.
    pub number: u64,
    /// The batch's operations in apply order.
    pub ops: Vec<Op>,
}

impl BatchRecord {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_ops(self.number, &self.ops)
    }

    /// The bytes of the record of batch `number` made of `ops` (what
    /// [`BatchRecord::encode`] gives, without building the record).
    pub fn encode_ops(number: u64, ops: &[Op]) -> Vec<u8> {
        let mut out = Vec::with_capacity(encoded_len(ops));
        out.push(VERSION);
        out.extend_from_slice(&number.to_be_bytes());
        out.extend_from_slice(&u32_len(ops.len()).to_be_bytes());
        for (key, value) in ops {
            out.push(if value.is_some() { PUT } else { DELETE });
            push_bytes(&mut out, key);
            if let Some(value) = value {
                push_bytes(&mut out, value);
            }
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Parses bytes made by [`BatchRecord::encode`]; anything else is
    /// refused with the reason.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let body_len = bytes
            .len()
            .checked_sub(DIGEST_LEN)
            .ok_or("the record is shorter than its digest")?;
        let (body, digest) = bytes.split_at(body_len);
        if Sha256::digest(body).as_slice() != digest {
            return Err("the record's digest does not match its bytes".into());
        }
        let mut reader = Reader { rest: body };
        let version = reader.take(1)?[0];
        if version != VERSION {
            return Err(format!("unknown record version {version}"));
        }
        let number = u64::from_be_bytes(reader.array()?);
        let count = u32::from_be_bytes(reader.array()?);
        let mut ops = Vec::new();
        for _ in 0..count {
            ops.push(reader.op()?);
        }
        if !reader.rest.is_empty() {
            return Err("the record has bytes after its last operation".into());
        }
        Ok(Self { number, ops })
    }

    /// The JetStream message id of these bytes: the number, then the first
    /// 16 hex digits of their digest (two writers' batches with the same
    /// number differ, a resend of the same bytes does not).
    pub fn message_id(number: u64, encoded: &[u8]) -> String {
        let digest = &encoded[encoded.len().saturating_sub(DIGEST_LEN)..];
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("{number}-{hex}")
    }
}

/// The length of the record of `ops`.
fn encoded_len(ops: &[Op]) -> usize {
    let ops: usize = ops
        .iter()
        .map(|(key, value)| 5 + key.len() + value.as_ref().map_or(0, |v| 4 + v.len()))
        .sum();
    1 + 8 + 4 + ops + DIGEST_LEN
}

fn u32_len(len: usize) -> u32 {
    u32::try_from(len).expect("a batch, key or value is far below 4 GiB")
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32_len(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a record's body front to back.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < len {
            return Err("the record ends inside an operation".into());
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.array()?);
        self.take(usize::try_from(len).map_err(|_| "a length beyond memory")?)
    }

    fn op(&mut self) -> Result<Op, String> {
        let kind = self.take(1)?[0];
        let key = self.bytes()?.into();
        match kind {
            PUT => Ok((key, Some(self.bytes()?.into()))),
            DELETE => Ok((key, None)),
            other => Err(format!("unknown operation kind {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BatchRecord {
        BatchRecord {
            number: 42,
            ops: vec![
                (
                    b"e key".as_slice().into(),
                    Some(b"{\"a\":1}".as_slice().into()),
                ),
                (b"m gone".as_slice().into(), None),
                (b"e key".as_slice().into(), Some(b"".as_slice().into())),
            ],
        }
    }

    #[test]
    fn a_record_round_trips_with_its_operations_in_order() {
        let record = sample();
        let bytes = record.encode();
        assert_eq!(bytes.len(), encoded_len(&record.ops));
        assert_eq!(BatchRecord::decode(&bytes).unwrap(), record);
        let empty = BatchRecord {
            number: 1,
            ops: Vec::new(),
        };
        assert_eq!(BatchRecord::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(BatchRecord::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x01;
            assert!(BatchRecord::decode(&damaged).is_err(), "byte {at} flipped");
        }
    }

    #[test]
    fn a_huge_declared_length_is_refused_without_allocating_it() {
        let mut body = vec![VERSION];
        body.extend_from_slice(&7u64.to_be_bytes());
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        body.push(PUT);
        body.extend_from_slice(&u32::MAX.to_be_bytes());
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        assert!(BatchRecord::decode(&body).is_err());
    }

    #[test]
    fn message_ids_tell_resends_from_other_writers_batches() {
        let first = sample().encode();
        let mut other = sample();
        other.ops.pop();
        let second = other.encode();
        assert_eq!(
            BatchRecord::message_id(42, &first),
            BatchRecord::message_id(42, &first)
        );
        assert_ne!(
            BatchRecord::message_id(42, &first),
            BatchRecord::message_id(42, &second)
        );
        assert!(BatchRecord::message_id(42, &first).starts_with("42-"));
    }
}
