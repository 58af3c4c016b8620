//! Event frames written from the events' shared bytes, past tungstenite
//! (which would clone, validate and copy each message).

use super::socket::WsSocket;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Outgoing frames collected before a write (see [`super::WsSettings`] and [`FrameBatch`]).
pub(super) const WRITE_BUFFER_BYTES: usize = 32 * 1024;

/// Server text frames collected from borrowed payloads and written straight
/// to the socket: no per-message allocation, reference count or UTF-8 check,
/// one write per [`WRITE_BUFFER_BYTES`].
///
/// Invariant: only whole frames reach the socket, and only after everything
/// tungstenite had buffered was flushed, so the two writers never interleave
/// inside a frame.
pub struct FrameBatch {
    bytes: Vec<u8>,
}

impl FrameBatch {
    /// An empty batch (allocates on the first frame).
    pub fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    /// Adds an unmasked, final text frame carrying `text`, which must be UTF-8
    /// (it is: event JSON and notices are built by serde_json).
    pub fn push_text(&mut self, text: &[u8]) {
        self.push_frame(0x81, text);
    }

    /// Adds an unmasked, final binary frame carrying `data`.
    pub fn push_binary(&mut self, data: &[u8]) {
        self.push_frame(0x82, data);
    }

    /// Adds an unmasked, final frame: `head` is FIN plus the opcode.
    fn push_frame(&mut self, head: u8, text: &[u8]) {
        if self.bytes.capacity() == 0 {
            self.bytes
                .reserve(WRITE_BUFFER_BYTES.min(text.len() * 8 + 16));
        }
        self.bytes.push(head);
        match text.len() {
            len @ 0..=125 => self.bytes.push(len as u8),
            len @ 126..=0xFFFF => {
                self.bytes.push(126);
                self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                self.bytes.push(127);
                self.bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.bytes.extend_from_slice(text);
    }

    /// Whether the batch has reached the write size.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= WRITE_BUFFER_BYTES
    }

    /// Writes the collected frames (after tungstenite's pending output) and empties the batch.
    pub async fn write_to(&mut self, socket: &mut WsSocket) -> std::io::Result<()> {
        use futures_util::SinkExt;
        use tokio::io::AsyncWriteExt;
        if self.bytes.is_empty() {
            return Ok(());
        }
        socket.flush().await.map_err(|err| match err {
            WsError::Io(io) => io,
            other => std::io::Error::other(other),
        })?;
        socket.get_mut().write_all(&self.bytes).await?;
        self.bytes.clear();
        Ok(())
    }
}

impl Default for FrameBatch {
    fn default() -> Self {
        Self::new()
    }
}
