//! The integration suite: every test starts the real `tidings` executable
//! (see [`harness`]) and talks to it as a client would.

mod chromium;
mod clients;
mod eventsource;
mod harness;

mod auth;
mod bench;
mod browser;
mod channels_rest;
mod channels_socket;
mod chat_api;
mod chat_browser;
mod chat_events;
mod chat_rest;
mod chat_stream;
mod claims;
mod cli;
mod coalescing;
mod conformance;
mod discussions;
mod durability;
mod errors;
mod full_disk;
mod hostile;
mod idempotency;
mod lean;
mod live;
mod live_bounds;
mod live_browser;
mod ops;
mod protocols;
mod resume;
mod revocation;
mod shutdown;
mod slow;
mod socketio;
mod streams;
mod tickets;
mod timers;
mod tls_streams;
mod token_cache;
mod topics;
mod webhooks;
mod writer;
mod ws_runner;
