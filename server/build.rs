//! Embeds the web console: every file under `console/`, and the audit
//! verifier compiled to WebAssembly (audit/wasm), so `cloister serve` needs
//! no asset directory and no build step at run time.
//!
//! The verifier is built by a nested cargo into its own target directory
//! (the outer build holds its own directory's lock). Without the
//! wasm32-unknown-unknown target the server still builds: the console then
//! says that verification in the browser is unavailable in this build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let console = manifest.join("console");
    println!("cargo:rerun-if-changed={}", console.display());

    let mut files = Vec::new();
    collect(&console, &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for file in &files {
        let name = file
            .strip_prefix(&console)
            .expect("under console/")
            .to_str()
            .expect("asset names are UTF-8");
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?}) as &[u8]),\n",
            file.display().to_string()
        ));
    }
    table.push_str("]\n");
    std::fs::write(out.join("console_assets.rs"), table).expect("OUT_DIR is writable");

    let wasm = out.join("audit_verify.wasm");
    let built = build_verifier(&manifest, &out).unwrap_or_else(|why| {
        println!("cargo:warning=the console's in-browser audit verifier is left out: {why}");
        Vec::new()
    });
    std::fs::write(wasm, built).expect("OUT_DIR is writable");
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn build_verifier(manifest: &Path, out: &Path) -> Result<Vec<u8>, String> {
    let workspace = manifest.parent().expect("server/ is in the workspace");
    for watched in [
        "audit/src",
        "audit/Cargo.toml",
        "audit/wasm/src",
        "audit/wasm/Cargo.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CLOISTER_NO_CONSOLE_WASM");
    if std::env::var_os("CLOISTER_NO_CONSOLE_WASM").is_some() {
        return Err("CLOISTER_NO_CONSOLE_WASM is set".into());
    }
    let target_dir = out.join("wasm-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--locked",
            "--release",
            "--package",
            "cloister-audit-wasm",
            "--target",
            "wasm32-unknown-unknown",
            "--target-dir",
        ])
        .arg(&target_dir);
    // The outer build's settings are for the host, and clippy's wrapper
    // must not lint the nested build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        command.env_remove(var);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "building audit/wasm for wasm32-unknown-unknown failed ({first}); add the target with `rustup target add wasm32-unknown-unknown`"
        ));
    }
    let path = target_dir.join("wasm32-unknown-unknown/release/cloister_audit_wasm.wasm");
    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
}
