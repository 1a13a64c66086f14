//! Records the compiler version for the `runtime` field of the result line.

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "rustc".into());
    println!("cargo:rustc-env=GUARD_BENCH_RUSTC={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
