//! Running more than one node: one writer that stays the system of record and
//! edges that hold client connections, joined by a NATS JetStream stream (the
//! design A of the scale-out notes).
//!
//! # How a batch travels
//!
//! * The writer (`serve --nats URL…`) numbers every batch it makes durable
//!   (1, 2, 3 … with no hole) and writes, in that same sled batch, an outbox
//!   row (`o <number>`, [`crate::core::store::layout::outbox`]) holding the
//!   batch's operations as a [`record::BatchRecord`]. A 201 therefore still
//!   means durable in sled, and no acknowledged write lacks its outbox row.
//! * A publisher task sends the outbox rows in number order to one stream on
//!   one subject ([`record::SUBJECT`]), each message carrying its number
//!   ([`record::BATCH_HEADER`]), a message id that is the number plus a
//!   digest of the record (JetStream drops a resend of the same record), and
//!   the expected last stream sequence (a second writer's publish fails, and
//!   that writer turns read-only). A row is deleted once acknowledged.
//! * An edge (`serve --role edge`) keeps a replica of the writer's store: it
//!   starts from the writer's consistent backup, then applies the stream's
//!   records in number order, each with its applied number in one sled batch,
//!   and publishes the events a record appended to its own hub. Since record
//!   n + 1 is applied only after record n, the numbers prove that an edge has
//!   every batch (and so every topic) without a gap; every read, replay and
//!   resume on an edge is today's code on a store equal to the writer's
//!   as of some batch.
//!
//! Invariants: only the writer assigns batch numbers and event ids; a record
//! is never applied twice nor out of order; the outbox holds exactly the
//! durable batches not yet acknowledged by the stream.

pub mod edge;
pub mod outbox;
pub mod publisher;
pub mod record;
pub mod stream;
