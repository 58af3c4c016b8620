//! HTTP long-polling: the session side (a bounded queue of outgoing packets,
//! the one GET waiting for them, an upgrade probe in progress) and the
//! request side (`GET` polls, `POST` payloads), which talk to the session's
//! task through its inbound channel.
//!
//! Invariants: at most one GET waits; a second one while it waits ends the
//! session (the first gets the close packet `1`, the second 400); queued
//! packets leave in order, each exactly once, in a GET's answer or (after an
//! upgrade) over the WebSocket; the queue never holds more than
//! `--sio-max-buffer` bytes (the session ends instead); while an upgrade
//! probe is answered, polls get a noop and the queue waits for the
//! WebSocket; the registry entry is gone before the last GET is answered,
//! so a request that follows it finds no session (400).

use super::packet::{self, CLOSE, NOOP, Outgoing};
use super::registry::Registration;
use super::upgrade::{Probe, ProbeEvent};
use super::{EngineError, engine_error};
use crate::http::{Request, Response, response};
use crate::transport::ws::WsSocket;
use bytes::Bytes;
use http::StatusCode;
use std::collections::VecDeque;
use tokio::sync::{mpsc, oneshot};

/// Content type of polling answers.
const TEXT: &str = "text/plain; charset=UTF-8";

/// A client request handed to a long-polling session's task.
pub(crate) enum Inbound {
    /// A GET waiting for packets.
    Poll(oneshot::Sender<PollAnswer>),
    /// The body of a POST (a payload of packets).
    Payload(Bytes),
    /// A POST over `--sio-max-payload`: the session ends.
    TooLarge,
    /// A WebSocket opened with this session's sid (an upgrade probe).
    Probe(Box<WsSocket>),
}

/// The answer to a GET.
pub(crate) enum PollAnswer {
    /// 200 with this payload.
    Payload(Vec<u8>),
    /// 400: the poll overlapped another one.
    Refused,
}

/// What woke a long-polling session.
pub(super) enum PollingInput {
    /// A client request (`None`: nobody can reach the session any more).
    Inbound(Option<Inbound>),
    /// Something on the upgrade probe.
    Probe(ProbeEvent),
}

/// The packets queued beyond the bound.
#[derive(Debug)]
pub(super) struct QueueFull;

/// The long-polling side of a session.
pub(crate) struct Polling {
    inbound: mpsc::Receiver<Inbound>,
    registration: Option<Registration>,
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    max_buffer: usize,
    waiting: Option<oneshot::Sender<PollAnswer>>,
    probe: Option<Box<Probe>>,
}

impl Polling {
    /// A session reachable through `registration`, reading `inbound`.
    pub(super) fn new(
        inbound: mpsc::Receiver<Inbound>,
        registration: Registration,
        max_buffer: usize,
    ) -> Self {
        Self {
            inbound,
            registration: Some(registration),
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_buffer,
            waiting: None,
            probe: None,
        }
    }

    /// Waits for a client request or for the probe (cancel-safe).
    pub(super) async fn next_input(&mut self) -> PollingInput {
        match self.probe.as_mut() {
            None => PollingInput::Inbound(self.inbound.recv().await),
            Some(probe) => tokio::select! {
                inbound = self.inbound.recv() => PollingInput::Inbound(inbound),
                event = probe.next_event() => PollingInput::Probe(event),
            },
        }
    }

    /// Takes a GET: answers it at once (noop while upgrading, or what is
    /// queued) or keeps it waiting. A GET while another waits is an error.
    pub(super) fn on_poll(
        &mut self,
        poll: oneshot::Sender<PollAnswer>,
    ) -> Result<(), &'static str> {
        if self
            .waiting
            .as_ref()
            .is_some_and(|waiting| !waiting.is_closed())
        {
            let _ = poll.send(PollAnswer::Refused);
            return Err("overlapping polls");
        }
        self.waiting = Some(poll);
        self.flush();
        Ok(())
    }

    /// Queues a packet for the next GET.
    pub(super) fn push(&mut self, packet: Outgoing) -> Result<(), QueueFull> {
        self.queued_bytes += packet.polling_len() + 1;
        self.queue.push_back(packet);
        if self.queued_bytes > self.max_buffer {
            return Err(QueueFull);
        }
        Ok(())
    }

    /// Answers the waiting GET with everything queued (with a noop while an
    /// upgrade is probed).
    pub(super) fn flush(&mut self) {
        let probed = self.probe.as_ref().is_some_and(|probe| probe.probed());
        if probed {
            self.answer(PollAnswer::Payload(b"6".to_vec()));
            return;
        }
        if self.queue.is_empty()
            || self
                .waiting
                .as_ref()
                .is_none_or(|waiting| waiting.is_closed())
        {
            return;
        }
        let payload = packet::encode_payload(&self.queue);
        self.queue.clear();
        self.queued_bytes = 0;
        if self.queue.capacity() > 64 {
            self.queue = VecDeque::new();
        }
        self.answer(PollAnswer::Payload(payload));
    }

    fn answer(&mut self, answer: PollAnswer) {
        if let Some(waiting) = self.waiting.take() {
            let _ = waiting.send(answer);
        }
    }

    /// Takes a WebSocket opened with this session's sid as the upgrade
    /// probe (a second one is closed: one upgrade at a time).
    pub(super) fn start_probe(&mut self, socket: Box<WsSocket>) {
        if self.probe.is_none() {
            self.probe = Some(Box::new(Probe::new(socket)));
        }
    }

    /// Acts on the probe's event; returns the WebSocket once the client
    /// completed the upgrade.
    pub(super) async fn on_probe(&mut self, event: ProbeEvent) -> Option<Box<WsSocket>> {
        let probe = self.probe.as_mut()?;
        match probe.advance(event).await {
            Ok(false) => {
                self.flush();
                None
            }
            Ok(true) => self.probe.take().map(|probe| probe.into_socket()),
            Err(()) => {
                self.probe = None;
                None
            }
        }
    }

    /// Leaves long-polling for the upgraded WebSocket: the session becomes
    /// unreachable by sid, the waiting GET gets a noop, and what is left to
    /// do is returned: payloads posted before the switch, then the queue.
    pub(super) fn into_upgrade(mut self) -> (Vec<Bytes>, VecDeque<Outgoing>) {
        self.registration = None;
        self.inbound.close();
        let mut payloads = Vec::new();
        while let Ok(inbound) = self.inbound.try_recv() {
            if let Inbound::Payload(payload) = inbound {
                payloads.push(payload);
            }
        }
        self.answer(PollAnswer::Payload(b"6".to_vec()));
        (payloads, std::mem::take(&mut self.queue))
    }

    /// Ends the session: unreachable first, then the waiting GET gets a
    /// noop (the client closed) or what is queued and the close packet.
    pub(super) fn finish(&mut self, client_closed: bool) {
        self.registration = None;
        self.inbound.close();
        if client_closed {
            self.queue.clear();
        }
        self.queue
            .push_back(if client_closed { NOOP } else { CLOSE });
        let payload = packet::encode_payload(&self.queue);
        self.queue.clear();
        self.answer(PollAnswer::Payload(payload));
    }
}

/// `GET ?sid=…`: waits for the session's packets.
pub(super) async fn poll(session: mpsc::Sender<Inbound>) -> Response {
    let (answer, answered) = oneshot::channel();
    if session.send(Inbound::Poll(answer)).await.is_err() {
        return engine_error(EngineError::UnknownSid);
    }
    drop(session);
    match answered.await {
        Ok(PollAnswer::Payload(payload)) => {
            response::with_content_type(StatusCode::OK, TEXT, payload)
        }
        Ok(PollAnswer::Refused) => engine_error(EngineError::BadRequest),
        Err(_) => engine_error(EngineError::UnknownSid),
    }
}

/// `POST ?sid=…`: hands the payload to the session (`ok`); a payload over
/// `max_payload` ends the session (413).
pub(super) async fn post(
    session: mpsc::Sender<Inbound>,
    request: &mut Request,
    max_payload: usize,
) -> Response {
    let declared = request
        .header("content-length")
        .and_then(|length| length.parse::<usize>().ok());
    let body = match declared {
        Some(length) if length > max_payload => None,
        _ => match request.body_bytes().await {
            Ok(body) => Some(body).filter(|body| body.len() <= max_payload),
            Err(err) if err.status == StatusCode::PAYLOAD_TOO_LARGE => None,
            Err(err) => return response::error(&err),
        },
    };
    let Some(body) = body else {
        let _ = session.send(Inbound::TooLarge).await;
        return response::with_content_type(
            StatusCode::PAYLOAD_TOO_LARGE,
            TEXT,
            "payload too large",
        );
    };
    if session.send(Inbound::Payload(body)).await.is_err() {
        return engine_error(EngineError::UnknownSid);
    }
    response::with_content_type(StatusCode::OK, TEXT, "ok")
}
