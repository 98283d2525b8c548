//! The Agent's secret handles: a setting written `ENC[handle]` is resolved by the Agent's
//! secret backend. Kubernetes users write `ENC[file@/etc/datadog-agent/secret/api_key]` with
//! `secret_backend_command: /readsecret_multiple_providers.sh` (the file of a mounted Secret),
//! or `ENC[api_key]` with `/readsecret.sh` and the Secret's directory as its argument. sidelog
//! resolves both to the file itself, and follows the file when the Secret is rotated; other
//! backends run programs or call the Kubernetes API, and are refused by name.

use std::path::{Path, PathBuf};

/// How `ENC[...]` handles are resolved: the Agent's `secret_backend_command` and its first
/// argument.
#[derive(Debug, Default, Clone)]
pub(super) struct Backend {
    pub command: Option<String>,
    pub argument: Option<String>,
}

/// The handle inside `ENC[...]`, when `value` is one.
pub(super) fn handle(value: &str) -> Option<&str> {
    value.trim().strip_prefix("ENC[")?.strip_suffix(']')
}

impl Backend {
    /// The file a handle names; the error says why a handle cannot be resolved.
    pub fn file_of(&self, handle: &str) -> Result<PathBuf, String> {
        let script = self.command.as_deref().map(|c| {
            Path::new(c)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(c)
        });
        if let Some(path) = handle.strip_prefix("file@") {
            return absolute(path, handle);
        }
        if let Some(rest) = handle.strip_prefix("k8s_secret@") {
            return Err(format!(
                "ENC[{handle}] reads the Secret {rest:?} through the Kubernetes API, which sidelog does not call: mount the Secret as a volume and write ENC[file@<path of the key in it>]"
            ));
        }
        match (script, &self.argument) {
            (Some("readsecret.sh"), Some(dir)) => absolute(&format!("{dir}/{handle}"), handle),
            (Some("readsecret.sh"), None) => Err(format!(
                "ENC[{handle}]: readsecret.sh needs the secrets' directory as secret_backend_arguments"
            )),
            (Some(other), _) => Err(format!(
                "ENC[{handle}]: sidelog does not run secret_backend_command {other:?}; it reads ENC[file@<path>] (readsecret_multiple_providers.sh) and readsecret.sh's files itself"
            )),
            (None, _) => Err(format!(
                "ENC[{handle}] needs a secret backend: write ENC[file@<path>] for a key in a file"
            )),
        }
    }
}

fn absolute(path: &str, handle: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("ENC[{handle}]: the file must be an absolute path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_resolve_to_files_or_are_refused_by_name() {
        assert_eq!(handle("ENC[file@/etc/k]"), Some("file@/etc/k"));
        assert_eq!(handle("plain-key"), None);
        let multi = Backend {
            command: Some("/readsecret_multiple_providers.sh".into()),
            argument: None,
        };
        assert_eq!(
            multi.file_of("file@/etc/datadog-agent/secret/api_key"),
            Ok(PathBuf::from("/etc/datadog-agent/secret/api_key"))
        );
        let err = multi.file_of("k8s_secret@ns/name/key").expect_err("API");
        assert!(
            err.contains("k8s_secret@ns/name/key") && err.contains("volume"),
            "{err}"
        );
        let old = Backend {
            command: Some("/readsecret.sh".into()),
            argument: Some("/etc/datadog-agent/secrets".into()),
        };
        assert_eq!(
            old.file_of("api_key"),
            Ok(PathBuf::from("/etc/datadog-agent/secrets/api_key"))
        );
        let custom = Backend {
            command: Some("/usr/bin/vault-get".into()),
            argument: None,
        };
        assert!(
            custom
                .file_of("api_key")
                .is_err_and(|e| e.contains("vault-get"))
        );
        assert!(Backend::default().file_of("file@relative").is_err());
    }
}
