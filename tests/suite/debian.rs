//! Debian programs a test needs (`chromium`, `nats-server`): used when they
//! run, else installed with apt-get (as root, never by hand), else the
//! reason, which the calling test prints when it skips.

use std::process::Command;

/// `program` once it runs (`--version`), installing `package` with apt-get
/// when it does not; the reason when it cannot be had.
pub fn program(program: &str, package: &str) -> Result<String, String> {
    let runs = || {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if runs() {
        return Ok(program.into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!(
            "{program} is missing and installing it (apt-get) needs root"
        ));
    }
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", package]] {
        let output = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .map_err(|err| format!("running apt-get: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "apt-get {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    if runs() {
        Ok(program.into())
    } else {
        Err(format!("{program} was installed but does not run"))
    }
}
