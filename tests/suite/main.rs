//! The integration suite: every test starts the real `tidings` executable
//! (see [`harness`]) and talks to it as a client would.

mod harness;

mod cli;
mod errors;
mod ops;
mod protocols;
mod shutdown;
