#![no_std]
// The library target exists so the daemon's build.rs can depend on this crate (cargo then
// rebuilds the daemon when the kernel programs change); the programs are in the binary.
