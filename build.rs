//! Build information for `sse-bridge --version`: the commit (from git, or
//! `SSE_BRIDGE_COMMIT` when building outside a checkout, e.g. in a container), the
//! compiler and the profile.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SSE_BRIDGE_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("SSE_BRIDGE_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    println!(
        "cargo:rustc-env=SSE_BRIDGE_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    println!(
        "cargo:rustc-env=SSE_BRIDGE_RUSTC={}",
        rustc.unwrap_or_else(|| "rustc (unknown)".into())
    );
    println!(
        "cargo:rustc-env=SSE_BRIDGE_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=SSE_BRIDGE_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
