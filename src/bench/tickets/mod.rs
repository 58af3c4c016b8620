//! The tickets module (spec 004) as `tidings bench tickets` drives it:
//! users with JWTs of a realm (no API key), an agent changing tickets
//! through `/api/v2/ticketing`, and every user reading its notification
//! stream or its inbox.
//!
//! * [`args`]: the command line; [`identity`]: the tenant, realm and users.
//! * [`api`]: the REST calls (concurrent over HTTP/2, or one reader's
//!   keep-alive connection).
//! * [`stream`]: one user's notification SSE stream; [`notice`]: a
//!   notification read back; [`listeners`]: every user's stream of a run.
//! * [`changes`]: the paced ticket changes and what each owes;
//!   [`ledger`]: matching receipts against what was owed.
//! * [`sla`]: the SLA mode's tickets, state file and verdict.
//! * [`readers`]: the inbox mode's readers.

pub mod api;
pub mod args;
pub mod changes;
pub mod identity;
pub mod ledger;
pub mod listeners;
pub mod notice;
pub mod readers;
pub mod sla;
pub mod stream;
