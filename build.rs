//! Build script: records the git revision for `alertmanager_wechat_build_info{revision}`, and
//! packs the binary's relocations where the C library reads packed ones.
//!
//! `AMW_GIT_REVISION` in the environment wins (image builds without `.git` pass it); otherwise
//! `git rev-parse` is asked, and without git or a repository the revision is `unknown`.
//! It never touches the network.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Packs the binary's relative relocations (`-z pack-relative-relocs`, DT_RELR) when it is built
/// for the machine that builds it and that machine's glibc reads them (2.36 and later; a
/// binary so linked does not start under an older one). The loader then reads 20 KB instead of
/// 1.2 MB of relocations at start, and that memory is not held for the process's life.
/// `AMW_PACK_RELOCATIONS=0` leaves them as they are.
fn pack_relocations() {
    println!("cargo:rerun-if-env-changed=AMW_PACK_RELOCATIONS");
    if std::env::var("AMW_PACK_RELOCATIONS").is_ok_and(|v| v.trim() == "0") {
        return;
    }
    let (Ok(target), Ok(host)) = (std::env::var("TARGET"), std::env::var("HOST")) else {
        return;
    };
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let Some(version) = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
    else {
        return;
    };
    // "glibc 2.36"
    let mut numbers = version
        .trim()
        .trim_start_matches("glibc")
        .trim()
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if (major, minor) >= (2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    pack_relocations();
    println!("cargo:rerun-if-env-changed=AMW_GIT_REVISION");
    let revision = match std::env::var("AMW_GIT_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself, the branch it points at, packed refs.
            let mut watched = Vec::new();
            if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
                watched.push(head);
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                watched.push(p);
            }
            if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
                watched.push(p);
            }
            for p in watched {
                // A path that does not exist would rerun this script on every build.
                if Path::new(&p).exists() {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=AMW_GIT_REVISION={revision}");
}
