//! `Executable`: a credential helper run without a shell, with a timeout; its JSON token,
//! and every way it can fail.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tower_bearer::source::workload::{CredentialProvider, Executable};
use tower_bearer::{ErrorKind, TokenSource};

use crate::support::{chain, temp_dir};

/// Write an executable script (run by its `#!` line, not by a shell of ours).
fn script(name: &str, body: &str) -> PathBuf {
    let path = temp_dir(name).join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_helper_prints_a_token_and_gets_its_arguments_verbatim() {
    let helper = script(
        "helper",
        r#"printf '{"access_token":"from-helper-%s","expires_in":120,"arg":"%s"}' "$TB_SUFFIX" "$1""#,
    );
    let source = Executable::builder(&helper)
        .arg("a b; $HOME `id`")
        .env("TB_SUFFIX", "42")
        .build()
        .unwrap();
    assert_eq!(source.fetch().await.unwrap().secret(), "from-helper-42");
    // The argument reached the program as one argument, unexpanded: no shell ran it.
    let echo = script("echo-arg", r#"printf '{"token":"%s"}' "$1""#);
    let echo = Executable::builder(&echo)
        .arg("a b; $HOME `id`")
        .build()
        .unwrap();
    assert_eq!(echo.credential().await.unwrap().secret(), "a b; $HOME `id`");
}

#[tokio::test]
async fn a_helper_that_fails_is_a_typed_error_without_its_output() {
    let exits = script("exits", r#"echo '{"token":"leaked-secret"}'; exit 3"#);
    let err = Executable::builder(&exits)
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("exited with status 3"), "{err}");
    assert!(!chain(&err).contains("leaked-secret"));

    let garbage = script("garbage", "echo 'token=leaked-secret'");
    let err = Executable::builder(&garbage)
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidResponse);
    assert!(err.to_string().contains("garbage"), "{err}");
    assert!(!format!("{} {err:?}", chain(&err)).contains("leaked-secret"));

    let refused = script(
        "refused",
        r#"echo '{"version":1,"success":false,"code":"401","message":"no"}'"#,
    );
    let err = Executable::builder(&refused)
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);

    let missing = temp_dir("missing").join("no-such-helper");
    let err = Executable::builder(&missing)
        .build()
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn a_helper_that_hangs_is_killed_at_the_timeout() {
    let dir = temp_dir("hang");
    let pid_file = dir.join("pid");
    let helper = script(
        "hangs",
        &format!("echo $$ > '{}'; exec sleep 30", pid_file.display()),
    );
    let source = Executable::builder(&helper)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = source.fetch().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(err.to_string().contains("killed"), "{err}");
    // Killed and reaped: the process is gone.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(!proc_dir.exists(), "the helper {pid} is still there");
}
