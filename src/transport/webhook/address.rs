//! Which addresses deliveries may connect to.
//!
//! By default any address is allowed (a self-hoster's receiver often runs on
//! the same machine). With `--webhook-block-private`, an endpoint that is or
//! resolves to a loopback, private, link-local, shared (CGNAT), unspecified
//! or otherwise non-public address is refused at connect time, so tenant
//! admins cannot reach the host's internal services through webhooks.
//!
//! Invariant: the check runs on the addresses actually connected to (after
//! DNS resolution, for every attempt), not on the URL's text alone, so a name
//! re-pointed at an internal address is refused too.

use hyper_util::client::legacy::connect::dns::Name;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The resolver of the delivery client: the system resolver, filtered.
#[derive(Debug, Clone, Copy)]
pub struct AddressPolicy {
    /// Refuse non-public addresses.
    pub block_private: bool,
}

impl AddressPolicy {
    /// Refuses `ip` when private addresses are blocked and it is one.
    pub fn check(self, ip: IpAddr) -> Result<(), io::Error> {
        if self.block_private && !is_public(ip) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{ip} is not a public address (--webhook-block-private)"),
            ));
        }
        Ok(())
    }
}

type Resolving = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for AddressPolicy {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        let policy = *self;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| policy.check(addr.ip()).is_ok())
                .collect();
            if allowed.is_empty() && !resolved.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to non-public addresses (--webhook-block-private)"
                    ),
                ));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// True for globally routable unicast addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || shared
                || a == 0)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_unique_local()
                    || v6.is_unicast_link_local()
                    || v6.is_multicast())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        let open = AddressPolicy {
            block_private: false,
        };
        assert!(open.check("127.0.0.1".parse().unwrap()).is_ok());
        let closed = AddressPolicy {
            block_private: true,
        };
        assert!(closed.check("127.0.0.1".parse().unwrap()).is_err());
    }
}
