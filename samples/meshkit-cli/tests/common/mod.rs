//! Running the `meshkit` binary as a user would, with AWS settings pointing nowhere
//! but the emulator.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `meshkit` with test credentials, region `us-east-1`, no profile files, no instance
/// metadata, its own rollout store in `dir`, and `--endpoint-url` when given.
pub fn meshkit(endpoint: Option<&str>, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshkit"));
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        // Each test's own rollout store, not the user's.
        .env(
            "MESHKIT_STORE",
            format!("sqlite:{}", dir.join("rollouts.db").display()),
        );
    if let Some(url) = endpoint {
        c.arg("--endpoint-url").arg(url);
    }
    c
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshkit-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
