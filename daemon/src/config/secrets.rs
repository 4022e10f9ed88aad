//! Secrets in the config: values that never print, and API key files (systemd credentials
//! expanded, files others can read refused).

use std::path::{Path, PathBuf};

/// A secret (API key, web token) that never prints: `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Whether secrets the daemon needs must be at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// `evald serve`: a `web.token_env` that is not set, or an `api_key_file` under a
    /// `$CREDENTIALS_DIRECTORY` that is not set, is an error.
    Required,
    /// The other commands: they run from an operator's shell, where systemd's credentials and
    /// the service's environment are absent; those secrets are left out with a warning.
    Optional,
}

/// Why an API key file could not be read.
pub(super) enum KeyFileError {
    /// It is under `$CREDENTIALS_DIRECTORY`, which is not set: only the service has it.
    NoCredentialsDirectory,
    /// Missing, unreadable, readable by others, or empty.
    Bad(String),
}

impl From<String> for KeyFileError {
    fn from(s: String) -> Self {
        KeyFileError::Bad(s)
    }
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyFileError::NoCredentialsDirectory => f.write_str(
                "$CREDENTIALS_DIRECTORY is not set (is the unit's LoadCredential= in place?)",
            ),
            KeyFileError::Bad(s) => f.write_str(s),
        }
    }
}

/// Reads an API key file. `$CREDENTIALS_DIRECTORY` (systemd's `LoadCredential=`) is expanded; a
/// file that group or others can read is refused, since the key would not be secret.
pub(super) fn read_key_file(dir: &Path, raw: &str) -> Result<Secret, KeyFileError> {
    let expanded = if let Some(rest) = raw
        .strip_prefix("$CREDENTIALS_DIRECTORY/")
        .or_else(|| raw.strip_prefix("${CREDENTIALS_DIRECTORY}/"))
    {
        let creds = std::env::var("CREDENTIALS_DIRECTORY")
            .map_err(|_| KeyFileError::NoCredentialsDirectory)?;
        PathBuf::from(creds).join(rest)
    } else {
        let p = PathBuf::from(raw);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    let meta = std::fs::metadata(&expanded)
        .map_err(|e| format!("cannot read {}: {e}", expanded.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Bad(format!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                expanded.display(),
                mode & 0o777
            )));
        }
    }
    let text = std::fs::read_to_string(&expanded)
        .map_err(|e| format!("cannot read {}: {e}", expanded.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(KeyFileError::Bad(format!(
            "{} is empty",
            expanded.display()
        )));
    }
    Ok(Secret::new(key))
}

/// The secret in the environment variable a `*_env` key names (`key`: the key's full name).
/// Unset or empty, it is a problem at the key, `hint` saying how to go without — except where
/// secrets are optional (a command run beside the service, which has them).
pub(super) fn from_env(
    src: &crate::diag::Source<'_>,
    var: &toml::Spanned<String>,
    secrets: Secrets,
    key: &str,
    hint: &str,
    errs: &mut Vec<crate::diag::Diagnostic>,
) -> Option<Secret> {
    match std::env::var(var.get_ref()) {
        Ok(v) if !v.is_empty() => Some(Secret::new(v)),
        _ if secrets == Secrets::Optional => {
            errs.push(src.warn(
                Some(var.span()),
                format!(
                    "{key}: environment variable `{}` is not set here; `evald serve` refuses to start without it ({hint})",
                    var.get_ref()
                ),
            ));
            None
        }
        _ => {
            errs.push(src.at(
                Some(var.span()),
                format!(
                    "{key}: environment variable `{}` is not set; {hint}",
                    var.get_ref()
                ),
            ));
            None
        }
    }
}
