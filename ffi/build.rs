//! Link the shared library `-z nodelete` (ELF): once loaded it stays loaded for the life of
//! the process, even when the loader closes it. PHP's FFI closes a library loaded by a
//! request (`FFI::cdef`) at the end of that request; without this, every request of a
//! PHP-FPM worker would lose the process-wide persistent clients (and their connections).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    if family == "unix" && os != "macos" && os != "ios" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
