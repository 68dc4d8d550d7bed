//! The approval listener guard (both backends): agents cannot connect to the endpoints in
//! `GUARDED_ENDPOINTS` (the daemon's HTTP listener, which serves the review page), so an
//! agent that learns a review link cannot open it, let alone approve itself.
//!
//! cgroup sock_addr programs attached to the cgroup v2 root run in the context of the task
//! that calls connect(), for every process on the host. They look up the destination first
//! (two hash lookups; almost every connect misses and is allowed at once), and only for a
//! guarded destination ask whether the caller is an agent. Returning 0 makes connect() fail
//! with EPERM; 1 leaves it to the kernel.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use interceptor_common::{AF_INET, AF_INET6, ConnectEvent, EndpointKey, EventKind, counters};

use crate::{
    kernel::current_agent,
    maps::{EVENTS, GUARDED_ENDPOINTS, count, submit_flags},
};

const ALLOW: i32 = 1;
const REFUSE: i32 = 0;
/// The third word of an IPv4-mapped IPv6 address (`::ffff:0:0/96`) as it sits in memory:
/// bytes 00 00 ff ff.
const V4_MAPPED_WORD: u32 = u32::from_ne_bytes([0, 0, 0xff, 0xff]);

/// `connect()` on an AF_INET socket (TCP, UDP, and TCP Fast Open's sendto), before the
/// kernel routes it. Fails closed for agents only: a guarded destination is refused even
/// when its event cannot be recorded (counted as `event_dropped`).
#[cgroup_sock_addr(connect4)]
pub fn listener_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the context is the kernel's `bpf_sock_addr` for this connect; 4-byte reads
    // of these fields are allowed in connect4 programs.
    let (ip4, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let addr = [ip4, 0, 0, 0];
    check(&ctx, AF_INET, addr, AF_INET, addr, port)
}

/// `connect()` on an AF_INET6 socket. A destination in `::ffff:0:0/96` reaches the IPv4
/// endpoint of that address (the kernel skips connect4 for it), so it is looked up as IPv4.
#[cgroup_sock_addr(connect6)]
pub fn listener_connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in connect4; connect6 programs may read `user_ip6` word by word.
    let (ip6, port) = unsafe {
        let sa = ctx.sock_addr;
        (
            [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ],
            (*sa).user_port,
        )
    };
    if ip6[0] == 0 && ip6[1] == 0 && ip6[2] == V4_MAPPED_WORD {
        check(&ctx, AF_INET, [ip6[3], 0, 0, 0], AF_INET6, ip6, port)
    } else {
        check(&ctx, AF_INET6, ip6, AF_INET6, ip6, port)
    }
}

/// The verdict on a connect to `addr`:`port` of `family` (what the kernel will reach);
/// `asked_family` and `asked` are what the agent gave, for the event.
#[inline(always)]
fn check(
    ctx: &SockAddrContext,
    family: u32,
    addr: [u32; 4],
    asked_family: u32,
    asked: [u32; 4],
    user_port: u32,
) -> i32 {
    // `user_port` holds the port in network byte order in its first two bytes.
    let port = u16::from_be(user_port as u16) as u32;
    if !guarded(family, port, addr) {
        return ALLOW;
    }
    let Some(agent_id) = current_agent(ctx) else {
        return ALLOW;
    };
    count(counters::CONNECT_REFUSED);
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count(counters::EVENT_DROPPED);
        return REFUSE;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    entry.write(ConnectEvent {
        kind: EventKind::ConnectRefused as u32,
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
        agent_id,
        family: asked_family,
        port,
        _pad: 0,
        addr: asked,
    });
    entry.submit(submit_flags(false));
    REFUSE
}

/// Whether `GUARDED_ENDPOINTS` has this exact endpoint, or this port on any address.
#[inline(always)]
fn guarded(family: u32, port: u32, addr: [u32; 4]) -> bool {
    let mut key = EndpointKey { family, port, addr };
    // SAFETY: only the presence of the entries is used.
    if unsafe { GUARDED_ENDPOINTS.get(&key) }.is_some() {
        return true;
    }
    key.addr = [0; 4];
    // SAFETY: as above.
    unsafe { GUARDED_ENDPOINTS.get(&key) }.is_some()
}
