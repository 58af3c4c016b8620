//! The parts of `tidings bench poll` (live events-streams polling, issue 12):
//!
//! * [`clock`]: NTP-style offset to the server's clock and interval arithmetic.
//! * [`api`]: producer calls, viewer tokens and prepared viewer requests.
//! * [`bodies`]: the check that every answer for one interval is the same bytes.
//! * [`closed`]: `--mode closed`, keep-alive connections hammering closed intervals.
//! * [`viewers`]: `--mode live`, viewers polling every interval as it closes.
//! * [`ingest`]: `--ingest`, hearts, chats and answers written while viewers poll.
//!
//! The scenario itself (set-up, phases, report) is [`super::scenario::poll`];
//! the nginx peer is [`super::nginx`].

pub mod api;
pub mod bodies;
pub mod clock;
pub mod closed;
pub mod ingest;
pub mod viewers;
