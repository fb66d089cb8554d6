//! Links the `wxshop` binary with its start-up code first (`link/startup-order.txt`, made by
//! `scripts/startup-order.sh`).
//!
//! An idle instance keeps resident every code page it has run, and the kernel maps file pages around each fault in
//! 64 KiB windows: the ~3,300 functions start-up runs, spread over a 19 MB `.text`, kept ~15 MB of it resident.
//! Grouped at the front of `.text`, ~7 MB (bench/RESULTS.md, seventh pass: idle RSS). The order is only a layout: a
//! symbol the file names that the build does not have is ignored, so a stale file costs memory, never correctness.
//!
//! Only where rustc links with its own LLD by default (x86_64 Linux, GNU target, since Rust 1.90) and the build
//! does not choose another linker (`target.<triple>.linker`, or linker flags in RUSTFLAGS): other linkers do not
//! take `--symbol-ordering-file`.

use std::path::Path;
use std::process::Command;

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/startup-order.txt");
    println!("cargo:rerun-if-changed=link/startup-order.txt");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    // Cargo sets RUSTC_LINKER for a configured linker; any linker flag in RUSTFLAGS may also leave LLD out.
    let other_linker = std::env::var_os("RUSTC_LINKER").is_some()
        || std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default().contains("link");
    if target != "x86_64-unknown-linux-gnu" || other_linker || !rustc_links_with_lld() || !order.exists() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// rustc 1.90 and later link x86_64 Linux GNU binaries with its own LLD.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(out) = Command::new(rustc).arg("-V").output() else { return false };
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut parts = version.split_whitespace().nth(1).unwrap_or_default().split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major > 1 || (major == 1 && minor >= 90)
}
