//! [`Executable`]: a token from a credential helper program.

use std::ffi::OsString;
use std::fmt;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::io::AsyncReadExt as _;
use zeroize::Zeroizing;

use super::{CredentialFuture, CredentialProvider};
use crate::secret::IdentityToken;
use crate::{Error, Token, TokenSource};

/// The largest output read from a helper.
const MAX_OUTPUT: u64 = 64 * 1024;

/// A token printed by a credential helper program: a command run (never through a shell)
/// for every token request, with a timeout, that prints a JSON object on its standard output.
///
/// The object holds the token in `access_token`, `id_token`, `token` or `saml_response`, and
/// optionally its lifetime, `expires_in` (seconds) or `expiration_time` (epoch seconds); the
/// format of Google's executable-sourced credentials (`"version": 1, "success": true`) is
/// one such object, and `"success": false` with a `code` is a refusal. Without a lifetime, a
/// JWT's `exp` is used, and an opaque token is used for 5 minutes.
///
/// Failures are typed errors that name the program, never its output:
/// a program that cannot be started is a [`Config`](crate::ErrorKind::Config) error; one
/// that exits non-zero, or does not finish within the timeout (it is then killed), a
/// [`Transient`](crate::ErrorKind::Transient) one; output that is not such a JSON object an
/// [`InvalidResponse`](crate::ErrorKind::InvalidResponse) one. Its standard input is empty;
/// its standard error is the program's own.
///
/// Needs the `executable` feature (tokio's `process`).
///
/// ```no_run
/// use std::time::Duration;
/// use tower_bearer::{BearerAuthLayer, source::workload::Executable};
///
/// # fn main() -> Result<(), tower_bearer::Error> {
/// let helper = Executable::builder("/usr/local/bin/corp-credential-helper")
///     .arg("get-token")
///     .arg("--audience=orders")
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let layer = BearerAuthLayer::new(helper);
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Executable {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// What a helper printed: the token and its lifetime, if it said.
struct Output {
    token: IdentityToken,
    expires: Option<Expiry>,
}

enum Expiry {
    In(Duration),
    At(SystemTime),
}

impl Executable {
    /// Start configuring the helper at `program` (a path, or a name looked up in `PATH`).
    pub fn builder(program: impl Into<OsString>) -> ExecutableBuilder {
        ExecutableBuilder {
            inner: Executable {
                program: program.into(),
                args: Vec::new(),
                envs: Vec::new(),
                timeout: Duration::from_secs(30),
            },
        }
    }

    fn name(&self) -> String {
        std::path::Path::new(&self.program)
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// Run the helper once and read its token.
    async fn run(&self) -> Result<Output, Error> {
        let name = self.name();
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                Error::config(format!("could not start the credential helper `{name}`"))
                    .with_source(e)
            })?;
        let Some(stdout) = child.stdout.take() else {
            return Err(Error::transient("the credential helper has no output pipe"));
        };
        let mut output = Zeroizing::new(Vec::with_capacity(4096));
        let finished = tokio::time::timeout(self.timeout, async {
            stdout.take(MAX_OUTPUT + 1).read_to_end(&mut output).await?;
            child.wait().await
        })
        .await;
        let status = match finished {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                let _ = child.kill().await;
                return Err(Error::transient(format!(
                    "could not read the output of the credential helper `{name}`"
                ))
                .with_source(e));
            }
            Err(_elapsed) => {
                // Killed and reaped, not left running.
                let _ = child.kill().await;
                return Err(Error::transient(format!(
                    "the credential helper `{name}` did not finish within {:?} and was killed",
                    self.timeout
                )));
            }
        };
        if !status.success() {
            let how = match status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            };
            return Err(Error::transient(format!(
                "the credential helper `{name}` {how}"
            )));
        }
        if output.len() as u64 > MAX_OUTPUT {
            return Err(Error::invalid_response(format!(
                "the credential helper `{name}` printed more than {MAX_OUTPUT} bytes"
            )));
        }
        parse(&output).map_err(|e| {
            Error::new(
                e.kind(),
                format!("the credential helper `{name}`: {}", e.message()),
            )
        })
    }
}

/// Read a helper's JSON object.
fn parse(output: &[u8]) -> Result<Output, Error> {
    let mut object: Map<String, Value> = serde_json::from_slice(output)
        .map_err(|_| Error::invalid_response("its output is not a JSON object"))?;
    if object.get("success") == Some(&Value::Bool(false)) {
        let code = match object.get("code") {
            Some(Value::String(code))
                if code.len() <= 64
                    && code
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                code.clone()
            }
            _ => "no code".to_owned(),
        };
        return Err(Error::rejected(format!("it reported a failure ({code})")));
    }
    let token = ["access_token", "id_token", "token", "saml_response"]
        .iter()
        .find_map(|name| match object.remove(*name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(Zeroizing::new(s)),
            _ => None,
        })
        .ok_or_else(|| {
            Error::invalid_response(
                "its output has no `access_token`, `id_token`, `token` or `saml_response`",
            )
        })?;
    let number = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| Error::invalid_response(format!("`{name}` is not a number of seconds"))),
        Some(_) => Err(Error::invalid_response(format!(
            "`{name}` is not a number of seconds"
        ))),
    };
    let expires = match (number("expires_in")?, number("expiration_time")?) {
        (Some(secs), _) => Some(Expiry::In(Duration::from_secs(secs))),
        (None, Some(at)) => Some(Expiry::At(
            UNIX_EPOCH + Duration::from_secs(at.min(1 << 40)),
        )),
        (None, None) => None,
    };
    Ok(Output {
        token: IdentityToken::new(token.trim()),
        expires,
    })
}

impl CredentialProvider for Executable {
    fn credential(&self) -> CredentialFuture<'_> {
        Box::pin(async move { Ok(self.run().await?.token) })
    }
}

impl TokenSource for Executable {
    async fn fetch(&self) -> Result<Token, Error> {
        let output = self.run().await?;
        match output.expires {
            Some(Expiry::In(expires_in)) => {
                Ok(Token::new(output.token.secret()).with_expires_in(expires_in))
            }
            Some(Expiry::At(at)) => Ok(Token::new(output.token.secret()).with_expires_at(at)),
            None => super::token_file::identity_to_token(&output.token, Duration::from_secs(300)),
        }
    }
}

/// Configures an [`Executable`].
pub struct ExecutableBuilder {
    inner: Executable,
}

impl ExecutableBuilder {
    /// One more argument, passed as it is (no shell: no quoting, globbing or expansion).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.inner.args.push(arg.into());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the helper (it inherits the rest of the environment).
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.inner.envs.push((name.into(), value.into()));
        self
    }

    /// How long the helper may run before it is killed (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.inner.timeout = timeout;
        self
    }

    /// Build the source. Does not run the helper.
    pub fn build(self) -> Result<Executable, Error> {
        if self.inner.program.is_empty() {
            return Err(Error::config("the credential helper has no program"));
        }
        if self.inner.timeout.is_zero() {
            return Err(Error::config("the credential helper's timeout is zero"));
        }
        Ok(self.inner)
    }
}

impl fmt::Debug for Executable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the arguments or environment: either may carry a secret.
        f.debug_struct("Executable")
            .field("program", &self.name())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ExecutableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExecutableBuilder")
            .field(&self.inner)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_output_formats() {
        let out = parse(br#"{"access_token":"a","expires_in":60}"#).unwrap();
        assert_eq!(out.token.secret(), "a");
        assert!(matches!(out.expires, Some(Expiry::In(d)) if d.as_secs() == 60));
        let google = br#"{"version":1,"success":true,"token_type":"urn:ietf:params:oauth:token-type:id_token","id_token":"eyJ","expiration_time":4102444800}"#;
        let out = parse(google).unwrap();
        assert_eq!(out.token.secret(), "eyJ");
        assert!(matches!(out.expires, Some(Expiry::At(_))));
        let failed = parse(br#"{"version":1,"success":false,"code":"401","message":"x"}"#);
        assert_eq!(failed.err().unwrap().kind(), crate::ErrorKind::Rejected);
        for bad in [
            &b"token"[..],
            b"[]",
            br#"{"token":""}"#,
            br#"{"token":"a","expires_in":"x"}"#,
        ] {
            assert_eq!(
                parse(bad).err().unwrap().kind(),
                crate::ErrorKind::InvalidResponse
            );
        }
    }
}
