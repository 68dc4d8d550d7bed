//! interceptor's kernel programs. One module per hook family; programs are named
//! `<family>_<hook>` and the daemon derives the hook from that name, so each hook is
//! spelled once, in its attribute.
#![no_std]
#![no_main]

mod exec;
mod guard;
mod kernel;
mod listener;
mod maps;
mod open;
mod signal;
mod tracking;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic path, so this never runs.
    loop {}
}

// bpf_send_signal, bpf_probe_read_kernel and the LSM hooks are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
