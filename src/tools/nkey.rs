//! Writes a fresh NATS user NKey seed for a local or development NATS user;
//! `nkey` on the command line.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// `routing-engine nkey --out FILE`.
#[derive(Debug, clap::Args)]
pub struct NkeyArgs {
    /// Where to write the seed; an existing file is never replaced.
    #[arg(long)]
    pub out: PathBuf,
}

impl NkeyArgs {
    /// Writes the seed and returns the public key to admit in the NATS
    /// server's configuration.
    pub fn run(&self) -> anyhow::Result<String> {
        write_user_seed(&self.out)
    }
}

/// Generates a user key pair, writes its seed to `path` readable by the owner
/// only, and returns its public key. Refuses to replace an existing file: it
/// could be a credential in use.
pub fn write_user_seed(path: &Path) -> anyhow::Result<String> {
    let pair = nkeys::KeyPair::new_user();
    let seed = pair.seed().context("encode the new seed")?;

    let mut file = create_owner_only(path)
        .with_context(|| format!("create {} (an existing file is kept)", path.display()))?;
    file.write_all(seed.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(pair.public_key())
}

#[cfg(unix)]
fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_owner_only(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_a_user_seed_for_the_printed_key_and_owner_only() {
        // The file holds a seed the service's credentials check accepts, for
        // the public key returned; only its owner may read it, and a second
        // run never replaces it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nkey.seed");
        let public = write_user_seed(&path).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let pair = nkeys::KeyPair::from_seed(text.trim()).unwrap();
        assert_eq!(pair.public_key(), public);
        assert!(public.starts_with('U'), "{public}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        assert!(write_user_seed(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
