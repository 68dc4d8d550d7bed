//! The approval listener guard: agents cannot connect to the daemon's HTTP listener, which
//! serves the review page and Slack's interactivity endpoint. An agent that learns a review
//! link (from its own logs, a chat message, the environment) must not be able to open it.
//!
//! The kernel side is `listener_connect4` / `listener_connect6` (cgroup sock_addr programs on
//! the cgroup v2 root, both backends): an agent's connect() to an endpoint in
//! `GUARDED_ENDPOINTS` fails with EPERM and is reported as a [`ConnectEvent`]. This module
//! fills that map from the listener's address and turns the events into audit rows.
//!
//! Which endpoints are guarded, from the address the listener is bound to:
//! - unspecified (`0.0.0.0`, `[::]`) or loopback (`127.0.0.1`, `[::1]`): the port on every
//!   address, IPv4 and IPv6. A wildcard listener is reached through every local address, and
//!   guarding a loopback listener's port everywhere also covers `127.0.0.2` and the other
//!   loopback aliases, at the price of agents not reaching that port on other hosts either;
//! - any other address: that address and port exactly (the kernel also matches its
//!   IPv4-mapped IPv6 form).
//!
//! Limits: only connections made by agents themselves are refused. A proxy in front of the
//! listener on another port, or a non-agent deputy that connects for an agent, is not
//! covered unless its port is guarded too.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd as _,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use interceptor_common::{AF_INET, AF_INET6, ConnectEvent, EndpointKey};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::{
    audit::{AuditEvent, GuardAudit, ProcessInfo},
    loader::LoadError,
};

/// The name guard rows carry in their `rule` column.
pub const GUARD_RULE: &str = "builtin:approval-listener";

/// The `GUARDED_ENDPOINTS` keys that guard a listener bound to `addr` (see the module docs).
pub fn endpoint_keys(addr: SocketAddr) -> Vec<EndpointKey> {
    let port = u32::from(addr.port());
    let ip = addr.ip().to_canonical();
    if ip.is_unspecified() || ip.is_loopback() {
        return [AF_INET, AF_INET6]
            .into_iter()
            .map(|family| EndpointKey {
                family,
                port,
                addr: [0; 4],
            })
            .collect();
    }
    let (family, addr) = match ip {
        IpAddr::V4(v4) => (AF_INET, [u32::from_ne_bytes(v4.octets()), 0, 0, 0]),
        IpAddr::V6(v6) => (AF_INET6, words(v6.octets())),
    };
    vec![EndpointKey { family, port, addr }]
}

/// Sixteen address bytes as the kernel's four network-order words.
fn words(octets: [u8; 16]) -> [u32; 4] {
    let word = |i: usize| u32::from_ne_bytes(octets[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    [word(0), word(1), word(2), word(3)]
}

/// The destination of a refused connect, as the agent gave it.
pub fn destination(ev: &ConnectEvent) -> SocketAddr {
    let port = ev.port as u16;
    if ev.family == AF_INET6 {
        let mut octets = [0u8; 16];
        for (chunk, word) in octets.chunks_exact_mut(4).zip(ev.addr) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        SocketAddr::new(Ipv6Addr::from(octets).into(), port)
    } else {
        SocketAddr::new(Ipv4Addr::from(ev.addr[0].to_ne_bytes()).into(), port)
    }
}

/// Makes `GUARDED_ENDPOINTS` guard exactly `listener` (nothing without one), then closes
/// every connection that reached the listener before the guard was in place: one made in
/// that moment may be an agent's. Call it after [`crate::loader::load`], before serving.
///
/// On a daemon restart with the same address the old entries are still in the pinned map,
/// so the listener is never unguarded; stale entries (an earlier listener's) are removed.
pub fn guard(ebpf: &mut Ebpf, listener: Option<&TcpListener>) -> Result<(), LoadError> {
    let addr = match listener.map(TcpListener::local_addr).transpose() {
        Ok(addr) => addr,
        Err(e) => return Err(LoadError::Map(format!("the HTTP listener's address: {e}"))),
    };
    let keys = addr.map(endpoint_keys).unwrap_or_default();
    let map_err = |e: aya::maps::MapError| LoadError::Map(format!("GUARDED_ENDPOINTS: {e}"));
    let map = ebpf
        .map_mut("GUARDED_ENDPOINTS")
        .ok_or_else(|| LoadError::MissingProgram("map GUARDED_ENDPOINTS".into()))?;
    let mut endpoints: BpfHashMap<&mut MapData, EndpointKey, u32> =
        BpfHashMap::try_from(map).map_err(map_err)?;
    // New entries first, then the stale ones go: an endpoint that stays is never unguarded.
    for key in &keys {
        endpoints.insert(key, 1, 0).map_err(map_err)?;
    }
    let stale: Vec<EndpointKey> = endpoints
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keys.contains(k))
        .collect();
    for key in &stale {
        endpoints.remove(key).map_err(map_err)?;
    }
    let (Some(listener), Some(addr)) = (listener, addr) else {
        return Ok(());
    };
    let closed = close_queued(listener);
    if closed > 0 {
        warn!(
            closed,
            "closed connections made to the HTTP listener before agents were kept from it"
        );
    }
    info!(%addr, endpoints = keys.len(), "agents cannot connect to the HTTP listener (approval listener guard)");
    Ok(())
}

/// Accepts and closes every connection already waiting in `listener`'s queue. A raw
/// accept: tokio's may not have learnt yet that the socket is readable.
fn close_queued(listener: &TcpListener) -> usize {
    let fd = listener.as_raw_fd();
    let mut closed = 0;
    loop {
        // SAFETY: accept4 on a listening socket we own, without an address buffer; the
        // socket is non-blocking (tokio made it so), so an empty queue returns EAGAIN.
        let conn = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if conn < 0 {
            match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted => {
                    continue;
                }
                _ => return closed,
            }
        }
        // SAFETY: a descriptor accept4 just returned to us.
        unsafe { libc::close(conn) };
        closed += 1;
    }
}

/// The audit row of a refused connect. `process` is the agent as far as it is known.
pub fn refused_row(ev: &ConnectEvent, process: ProcessInfo) -> AuditEvent {
    let target = destination(ev);
    AuditEvent::Guard(GuardAudit {
        rule: GUARD_RULE.into(),
        process,
        target: target.to_string(),
        detail: format!("connect to the approval listener {target} refused (EPERM)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(family: u32, port: u32, addr: [u32; 4]) -> EndpointKey {
        EndpointKey { family, port, addr }
    }

    #[test]
    fn loopback_and_wildcard_listeners_guard_their_port_everywhere() {
        let any = vec![key(AF_INET, 9477, [0; 4]), key(AF_INET6, 9477, [0; 4])];
        for addr in [
            "127.0.0.1:9477",
            "127.0.0.2:9477",
            "0.0.0.0:9477",
            "[::]:9477",
            "[::1]:9477",
            "[::ffff:127.0.0.1]:9477",
        ] {
            assert_eq!(endpoint_keys(addr.parse().unwrap()), any, "{addr}");
        }
    }

    #[test]
    fn other_addresses_are_guarded_exactly_in_network_byte_order() {
        // 192.0.2.7 is c0 00 02 07 on the wire; the kernel's user_ip4 holds those bytes.
        let v4 = endpoint_keys("192.0.2.7:8080".parse().unwrap());
        assert_eq!(v4.len(), 1);
        assert_eq!(v4[0].family, AF_INET);
        assert_eq!(v4[0].port, 8080);
        assert_eq!(v4[0].addr[0].to_ne_bytes(), [0xc0, 0, 2, 7]);
        assert_eq!(&v4[0].addr[1..], &[0, 0, 0]);
        // A mapped listener address is its IPv4 address (the kernel looks those up as IPv4).
        assert_eq!(
            endpoint_keys("[::ffff:192.0.2.7]:8080".parse().unwrap()),
            v4
        );

        let v6 = endpoint_keys("[2001:db8::1]:443".parse().unwrap());
        assert_eq!(v6.len(), 1);
        assert_eq!((v6[0].family, v6[0].port), (AF_INET6, 443));
        assert_eq!(v6[0].addr[0].to_ne_bytes(), [0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!(v6[0].addr[3].to_ne_bytes(), [0, 0, 0, 1]);
    }

    #[test]
    fn destinations_decode_as_the_agent_gave_them() {
        let event = |family, addr, port| ConnectEvent {
            kind: interceptor_common::EventKind::ConnectRefused as u32,
            tgid: 1,
            pid: 1,
            uid: 0,
            agent_id: 1,
            family,
            port,
            _pad: 0,
            addr,
        };
        let v4 = endpoint_keys("192.0.2.7:1".parse().unwrap())[0].addr;
        assert_eq!(
            destination(&event(AF_INET, v4, 9477)).to_string(),
            "192.0.2.7:9477"
        );
        let mapped = words(Ipv4Addr::LOCALHOST.to_ipv6_mapped().octets());
        assert_eq!(
            destination(&event(AF_INET6, mapped, 9477)).to_string(),
            "[::ffff:127.0.0.1]:9477"
        );
        let row = refused_row(&event(AF_INET6, mapped, 9477), ProcessInfo::default());
        let AuditEvent::Guard(g) = &row else {
            panic!("{row:?}")
        };
        assert_eq!(g.target, "[::ffff:127.0.0.1]:9477");
        assert!(g.detail.contains("approval listener"), "{}", g.detail);
        let columns = row.columns();
        assert_eq!(columns.kind, "guard");
        assert_eq!(columns.outcome.as_deref(), Some("denied"));
        assert_eq!(columns.rule.as_deref(), Some(GUARD_RULE));
    }

    #[tokio::test]
    async fn connections_made_before_the_guard_are_closed() {
        use tokio::io::AsyncReadExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut early = Vec::new();
        for _ in 0..3 {
            early.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        assert_eq!(close_queued(&listener), 3);
        for mut stream in early {
            // Closed by the listener's side: end of stream (or a reset), never a request served.
            let mut buf = [0u8; 1];
            assert!(matches!(stream.read(&mut buf).await, Ok(0) | Err(_)));
        }
        assert_eq!(close_queued(&listener), 0, "an empty queue ends the drain");
        // The listener still accepts what comes after.
        let _late = tokio::net::TcpStream::connect(addr).await.unwrap();
        listener.accept().await.unwrap();
    }

    #[test]
    fn the_mapped_prefix_word_matches_the_kernel_constant() {
        // The kernel program compares user_ip6[2] with the bytes 00 00 ff ff.
        let mapped = words(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets());
        assert_eq!(mapped[..2], [0, 0]);
        assert_eq!(mapped[2], u32::from_ne_bytes([0, 0, 0xff, 0xff]));
        assert_eq!(mapped[3].to_ne_bytes(), [127, 0, 0, 1]);
    }
}
