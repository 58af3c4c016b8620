//! Which connections the server takes, and how many.
//!
//! A connection holds one of `--max-connections` regular slots. When they
//! are all taken, one of `--probe-connections` probe slots lets the server
//! keep answering health checks: such a connection is served one HTTP/1.1
//! request, to a probe route only (see [`super::service`]), then closed
//! (see `server`: it gets a short deadline and no HTTP/2). When both are
//! taken, new connections wait in the kernel's backlog. A client address
//! holding `--max-connections-per-ip` connections has further ones closed at
//! once (loopback is exempt unless `--per-ip-limit-loopback`). An IPv6
//! client counts by its /64 network, the block one subscriber (or one cloud
//! instance) gets: a single client cannot escape the cap by rotating through
//! the addresses of its own network.
//!
//! The default of `--max-connections` comes from the open-file limit (see
//! [`default_max_connections`]), so accepting never fails with "too many open
//! files" while the store, webhooks and probes still have descriptors.
//!
//! Invariants: every accepted connection holds exactly one slot and, when
//! capped, one count of its address until its task ends; counts never leak
//! (released on drop) and an address with no connection has no entry.

use crate::http::HttpLimits;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept back from the connections at most (the store's files,
/// logs, certificates, outbound webhook connections and the probe slots).
const FD_RESERVE: u64 = 256;

/// Raises the soft open-file limit to the hard one and returns the
/// connection budget: the limit minus `min(256, limit / 2)`.
pub fn default_max_connections() -> usize {
    let limit = raise_fd_limit();
    let budget = limit - FD_RESERVE.min(limit / 2);
    usize::try_from(budget).unwrap_or(usize::MAX).max(1)
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit; returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; failure leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Anything.
    Regular,
    /// One HTTP/1.1 request to a probe route, then closed.
    Probe,
}

/// A free slot, taken before accepting.
pub struct Slot {
    class: Class,
    permit: OwnedSemaphorePermit,
}

/// The right of one accepted connection to be served; releases everything on drop.
pub struct Ticket {
    /// What the connection may do.
    pub class: Class,
    _permit: OwnedSemaphorePermit,
    _address: Option<AddressCount>,
}

/// The connection budget of the server.
pub struct Admission {
    regular: Arc<Semaphore>,
    probes: Arc<Semaphore>,
    per_address: Option<Arc<PerAddress>>,
}

impl Admission {
    /// The budget `limits` describe.
    pub fn new(limits: &HttpLimits) -> Self {
        let per_address = (limits.max_connections_per_ip > 0).then(|| {
            Arc::new(PerAddress {
                cap: limits.max_connections_per_ip,
                include_loopback: limits.per_ip_limit_loopback,
                counts: Mutex::new(HashMap::new()),
            })
        });
        Self {
            regular: Arc::new(Semaphore::new(limits.max_connections)),
            probes: Arc::new(Semaphore::new(limits.probe_connections)),
            per_address,
        }
    }

    /// Waits for a regular slot or, while none is free, a probe slot.
    pub async fn slot(&self) -> Slot {
        let (class, permit) = tokio::select! {
            biased;
            permit = self.regular.clone().acquire_owned() => (Class::Regular, permit),
            permit = self.probes.clone().acquire_owned() => (Class::Probe, permit),
        };
        Slot {
            class,
            permit: permit.expect("the connection semaphores are never closed"),
        }
    }

    /// Admits a connection from `address` into `slot`; `None` when its address is at its cap.
    pub fn admit(&self, slot: Slot, address: IpAddr) -> Option<Ticket> {
        let counted = match &self.per_address {
            Some(per_address) => per_address.clone().enter(address)?,
            None => None,
        };
        Some(Ticket {
            class: slot.class,
            _permit: slot.permit,
            _address: counted,
        })
    }
}

/// Open connections per client address.
struct PerAddress {
    cap: usize,
    include_loopback: bool,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// Counts a connection: `Some(None)` when the address is exempt, `None` when it is at its cap.
    fn enter(self: Arc<Self>, address: IpAddr) -> Option<Option<AddressCount>> {
        let address = canonical(address);
        if address.is_loopback() && !self.include_loopback {
            return Some(None);
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(address).or_insert(0);
        if *count >= self.cap {
            if *count == 0 {
                counts.remove(&address);
            }
            return None;
        }
        *count += 1;
        drop(counts);
        Some(Some(AddressCount {
            per_address: self,
            address,
        }))
    }
}

/// The address a connection counts against: an IPv4 client seen through an
/// IPv6 socket as its IPv4 address, an IPv6 client as its /64 network
/// (loopback `::1` stays itself).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) if v6.is_loopback() => address,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(
            || IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            IpAddr::V4,
        ),
        v4 => v4,
    }
}

/// One connection counted against its address; uncounted on drop.
struct AddressCount {
    per_address: Arc<PerAddress>,
    address: IpAddr,
}

impl Drop for AddressCount {
    fn drop(&mut self) {
        let mut counts = self
            .per_address
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::time::Duration;

    fn limits(max: usize, probes: usize, per_ip: usize, loopback: bool) -> HttpLimits {
        HttpLimits {
            max_body_bytes: 1,
            header_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
            max_connections: max,
            probe_connections: probes,
            max_connections_per_ip: per_ip,
            per_ip_limit_loopback: loopback,
            max_head_bytes: 8192,
            idle_timeout: Duration::from_secs(1),
            h2_max_streams: 8,
            access_log: crate::http::AccessLog::All,
        }
    }

    #[tokio::test]
    async fn regular_slots_first_then_probe_slots() {
        let admission = Admission::new(&limits(1, 1, 0, false));
        let address: IpAddr = "10.0.0.1".parse().unwrap();
        let first = admission.admit(admission.slot().await, address).unwrap();
        assert_eq!(first.class, Class::Regular);
        let second = admission.admit(admission.slot().await, address).unwrap();
        assert_eq!(second.class, Class::Probe);
        let third = tokio::time::timeout(Duration::from_millis(50), admission.slot()).await;
        assert!(third.is_err(), "both kinds taken: wait");
        drop(first);
        let slot = admission.slot().await;
        assert_eq!(slot.class, Class::Regular);
    }

    #[tokio::test]
    async fn ipv6_clients_count_by_their_64_network() {
        let admission = Admission::new(&limits(10, 0, 2, false));
        let first: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        let _one = admission.admit(admission.slot().await, first).unwrap();
        let _two = admission.admit(admission.slot().await, second).unwrap();
        let third: IpAddr = "2001:db8:1:2:1234:5678:9abc:def0".parse().unwrap();
        assert!(
            admission.admit(admission.slot().await, third).is_none(),
            "a third address of the same /64 is over the cap"
        );
        let elsewhere: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        assert!(admission.admit(admission.slot().await, elsewhere).is_some());
        assert!(canonical("::1".parse().unwrap()).is_loopback());
    }

    #[tokio::test]
    async fn addresses_are_capped_and_released() {
        let admission = Admission::new(&limits(10, 0, 2, false));
        let address: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let same: IpAddr = "10.0.0.1".parse().unwrap();
        let one = admission.admit(admission.slot().await, address).unwrap();
        let _two = admission.admit(admission.slot().await, same).unwrap();
        assert!(admission.admit(admission.slot().await, same).is_none());
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(admission.admit(admission.slot().await, other).is_some());
        drop(one);
        assert!(admission.admit(admission.slot().await, same).is_some());
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| {
                let slot = admission.slot().now_or_never().expect("a free slot");
                admission.admit(slot, loopback)
            })
            .collect();
        assert!(held.iter().all(Option::is_some), "loopback is exempt");
        let counts = admission
            .per_address
            .as_ref()
            .unwrap()
            .counts
            .lock()
            .unwrap();
        assert!(!counts.contains_key(&loopback));
    }
}
