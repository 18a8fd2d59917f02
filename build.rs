//! Build script: records the git revision for `alertmanager_wechat_build_info{revision}`.
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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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
