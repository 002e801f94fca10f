//! GnuPG, as the holder of the private keys that delivered files are encrypted to: keys made
//! by `gpg` in a keyring of the test's own, and `gpg --decrypt`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The kinds of key a test can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An RSA 2048 primary key with an RSA 2048 encryption subkey.
    Rsa,
    /// GnuPG's default: an Ed25519 primary key with a Curve25519 encryption subkey.
    Curve25519,
    /// An Ed25519 primary key alone, which cannot receive encrypted files.
    PrimaryOnly,
}

/// A GnuPG home directory of its own, removed on drop.
#[derive(Debug)]
pub struct Gpg {
    home: PathBuf,
}

impl Default for Gpg {
    fn default() -> Self {
        Self::new()
    }
}

impl Gpg {
    /// An empty keyring in a new temporary directory.
    pub fn new() -> Self {
        let home = std::env::temp_dir().join(format!("filedrop-gpg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Self { home }
    }

    /// The home directory (`GNUPGHOME`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn run(&self, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
        let mut child = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(["--batch", "--yes", "--quiet", "--pinentry-mode", "loopback"])
            .args(["--passphrase", ""])
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("running gpg (install it: deploy/local/services.sh install): {e}")
            });
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            let input = input.to_vec();
            std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input).unwrap());
        }
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Makes a key for `email` and returns its ASCII-armored public key.
    pub fn generate(&self, email: &str, kind: KeyKind) -> String {
        let uid = format!("filedrop test <{email}>");
        match kind {
            KeyKind::Curve25519 => {
                self.run(
                    &[
                        "--quick-generate-key",
                        &uid,
                        "future-default",
                        "default",
                        "never",
                    ],
                    None,
                );
            }
            KeyKind::Rsa => {
                self.run(
                    &["--quick-generate-key", &uid, "rsa2048", "sign", "never"],
                    None,
                );
                let fingerprint = self.fingerprint(email);
                self.run(
                    &["--quick-add-key", &fingerprint, "rsa2048", "encr", "never"],
                    None,
                );
            }
            KeyKind::PrimaryOnly => {
                self.run(
                    &["--quick-generate-key", &uid, "ed25519", "sign", "never"],
                    None,
                );
            }
        }
        String::from_utf8(self.run(&["--armor", "--export", email], None)).unwrap()
    }

    fn fingerprint(&self, email: &str) -> String {
        let listing =
            String::from_utf8(self.run(&["--with-colons", "--list-keys", email], None)).unwrap();
        listing
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|field| field.len() == 40))
            .expect("a fingerprint")
            .to_owned()
    }

    /// `gpg --decrypt` of an encrypted file, with this keyring's private keys.
    pub fn decrypt(&self, encrypted: &[u8]) -> Vec<u8> {
        self.run(&["--decrypt"], Some(encrypted))
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // The agent gpg started for this home would outlive the test otherwise.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}
