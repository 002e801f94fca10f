//! OpenPGP encryption of delivered files, the last stage (serialize → compress/archive →
//! encrypt), streamed: the file is never whole in memory.
//!
//! The recipient is the encryption subkey of an ASCII-armored public key, chosen as GnuPG does:
//! the newest subkey whose algorithm can encrypt and whose binding signature allows encryption.
//! A key without one (a primary key alone, or signing subkeys only) is refused when the export
//! is validated. Messages are SEIPD v1 (AES-256 with a modification detection code), the form
//! every OpenPGP implementation in use decrypts, GnuPG 2.2 included.

use crate::FormatError;
use pgp::composed::{Deserializable, MessageBuilder, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// How much of the file travels between the producing and the encrypting thread at once.
const PIPE_CHUNK: usize = 256 * 1024;
/// Chunks in flight between the two threads: memory stays at about `PIPE_CHUNK × (this + 2)`.
const PIPE_DEPTH: usize = 4;

/// The public key files are encrypted to, with its chosen encryption subkey.
#[derive(Clone)]
pub struct PgpRecipient {
    armored: Arc<str>,
    subkey: Arc<SignedPublicSubKey>,
    fingerprint: String,
}

impl std::fmt::Debug for PgpRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgpRecipient({})", self.fingerprint)
    }
}

impl PartialEq for PgpRecipient {
    fn eq(&self, other: &Self) -> bool {
        self.armored == other.armored
    }
}

impl Eq for PgpRecipient {}

impl PgpRecipient {
    /// Reads an ASCII-armored public key and chooses its encryption subkey. The error says what
    /// is wrong with the key, for the user.
    pub fn from_armored(armored: &str) -> Result<Self, String> {
        let (key, _headers) = SignedPublicKey::from_string(armored.trim()).map_err(|error| {
            format!(
                "not an ASCII-armored OpenPGP public key ({error}); export one with `gpg \
                 --armor --export <key id>`"
            )
        })?;
        let subkey = key
            .public_subkeys
            .iter()
            .filter(|subkey| may_encrypt(subkey))
            .max_by_key(|subkey| subkey.key.created_at())
            .ok_or_else(|| {
                "PGP public key has no encryption subkey: provide a key with an \
                 encryption-capable subkey (RSA or Curve25519), such as `gpg \
                 --quick-generate-key` makes, or add one with `gpg --quick-add-key <fingerprint> \
                 cv25519 encr`"
                    .to_owned()
            })?;
        // A subkey whose binding does not verify could be anyone's: refuse it.
        subkey.verify_bindings(&key.primary_key).map_err(|error| {
            format!("PGP public key's encryption subkey is not bound to the key: {error}")
        })?;
        Ok(Self {
            armored: Arc::from(armored),
            subkey: Arc::new(subkey.clone()),
            fingerprint: format!("{}", key.fingerprint()),
        })
    }

    /// The armored key, as given.
    pub fn armored(&self) -> &str {
        &self.armored
    }

    /// The fingerprint of the primary key, for logs.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Writes to `out` an OpenPGP message holding what `produce` writes, encrypted to this
    /// recipient; `file_name` goes in the literal data packet. `produce` runs on a thread of
    /// its own and its bytes reach the encryption through a bounded pipe. If `produce` fails,
    /// the encryption fails too — a file cut short is never encrypted as if it were whole.
    pub fn encrypt<W, P>(&self, file_name: &str, out: &mut W, produce: P) -> Result<(), FormatError>
    where
        W: Write,
        P: FnOnce(&mut PipeWriter) -> Result<(), FormatError> + Send,
    {
        let (sender, receiver) = sync_channel(PIPE_DEPTH);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                let mut pipe = PipeWriter {
                    buffer: Vec::with_capacity(PIPE_CHUNK),
                    sender,
                };
                produce(&mut pipe)?;
                pipe.finish()
            });
            let reader = PipeReader {
                receiver,
                current: Vec::new(),
                position: 0,
                ended: false,
            };
            let encrypted = self.encrypt_reader(file_name, reader, &mut *out);
            let produced = producer
                .join()
                .unwrap_or_else(|_| Err(FormatError::Inconsistent("the producer panicked".into())));
            // Each side's failure breaks the pipe for the other: report the one that says why.
            match (produced, encrypted) {
                (Ok(()), encrypted) => encrypted,
                (Err(FormatError::Io(error)), Err(encryption))
                    if error.kind() == io::ErrorKind::BrokenPipe =>
                {
                    Err(encryption)
                }
                (Err(produced), _) => Err(produced),
            }
        })
    }

    fn encrypt_reader<R: Read, W: Write>(
        &self,
        file_name: &str,
        reader: R,
        out: W,
    ) -> Result<(), FormatError> {
        let pgp_error = |error: pgp::errors::Error| FormatError::Io(io::Error::other(error));
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_reader(file_name.to_owned(), reader)
            .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        builder
            .encrypt_to_key(&mut rng, &*self.subkey)
            .map_err(pgp_error)?;
        builder.to_writer(&mut rng, out).map_err(pgp_error)
    }
}

/// True when a subkey's algorithm can encrypt and its newest binding allows encryption (or
/// says nothing of its use, as keys from before key flags do).
fn may_encrypt(subkey: &SignedPublicSubKey) -> bool {
    if !subkey.key.algorithm().can_encrypt() {
        return false;
    }
    let binding = subkey
        .signatures
        .iter()
        .filter(|signature| signature.created().is_some())
        .max_by_key(|signature| signature.created());
    match binding {
        None => false,
        Some(signature) => {
            let flags = signature.key_flags();
            flags.encrypt_comms() || flags.encrypt_storage() || !has_key_flags(signature)
        }
    }
}

fn has_key_flags(signature: &pgp::packet::Signature) -> bool {
    let flags = signature.key_flags();
    flags.certify()
        || flags.sign()
        || flags.encrypt_comms()
        || flags.encrypt_storage()
        || flags.authentication()
}

/// The producing end of the pipe: buffers writes into chunks. [`PipeWriter::finish`] marks the
/// end of the file; a writer dropped without it makes the reader fail.
pub struct PipeWriter {
    buffer: Vec<u8>,
    sender: SyncSender<Chunk>,
}

enum Chunk {
    Data(Vec<u8>),
    End,
}

impl PipeWriter {
    fn send(&self, chunk: Chunk) -> io::Result<()> {
        self.sender
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the encryption stopped"))
    }

    fn finish(mut self) -> Result<(), FormatError> {
        self.flush()?;
        Ok(self.send(Chunk::End)?)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PIPE_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(PIPE_CHUNK));
            self.send(Chunk::Data(chunk))?;
        }
        Ok(())
    }
}

struct PipeReader {
    receiver: Receiver<Chunk>,
    current: Vec<u8>,
    position: usize,
    ended: bool,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Chunk::Data(chunk)) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Ok(Chunk::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file ended before it was complete",
                    ));
                }
            }
        }
        let length = (self.current.len() - self.position).min(buf.len());
        buf[..length].copy_from_slice(&self.current[self.position..self.position + length]);
        self.position += length;
        Ok(length)
    }
}

/// Armored public keys for the crate's tests.
#[cfg(test)]
pub(crate) mod test_keys {
    /// A Curve25519 key with an encryption subkey.
    pub const CV25519: &str = include_str!("../testdata/cv25519-with-subkey.asc");
    /// An RSA key with an encryption subkey.
    pub const RSA: &str = include_str!("../testdata/rsa-with-subkey.asc");
    /// An Ed25519 key without any subkey.
    pub const PRIMARY_ONLY: &str = include_str!("../testdata/ed25519-primary-only.asc");
}

#[cfg(test)]
mod tests {
    use super::test_keys::{CV25519, PRIMARY_ONLY, RSA};
    use super::*;

    #[test]
    fn rsa_and_curve25519_keys_give_their_encryption_subkey() {
        for armored in [CV25519, RSA] {
            let recipient = PgpRecipient::from_armored(armored).unwrap();
            assert!(recipient.subkey.key.algorithm().can_encrypt());
            assert_eq!(recipient.fingerprint().len(), 40, "{recipient:?}");
        }
    }

    #[test]
    fn a_key_without_an_encryption_subkey_or_no_key_at_all_is_refused() {
        let error = PgpRecipient::from_armored(PRIMARY_ONLY).unwrap_err();
        assert!(
            error.starts_with("PGP public key has no encryption subkey"),
            "{error}"
        );
        let error = PgpRecipient::from_armored("not a key").unwrap_err();
        assert!(
            error.contains("not an ASCII-armored OpenPGP public key"),
            "{error}"
        );
    }

    #[test]
    fn the_message_is_written_only_when_the_producer_finishes() {
        let recipient = PgpRecipient::from_armored(CV25519).unwrap();
        let mut out = Vec::new();
        recipient
            .encrypt("f.csv", &mut out, |pipe| {
                pipe.write_all(&b"a,b\n".repeat(200_000))?;
                Ok(())
            })
            .unwrap();
        assert!(out.len() > 800_000, "{}", out.len());
        // An OpenPGP packet starts with a tag byte with its high bit set.
        assert!(out[0] & 0x80 != 0);

        let mut out = Vec::new();
        let error = recipient
            .encrypt("f.csv", &mut out, |pipe| {
                pipe.write_all(&b"a,b\n".repeat(200_000))?;
                Err(FormatError::Inconsistent("block 3 is gone".into()))
            })
            .unwrap_err();
        assert!(error.to_string().contains("block 3 is gone"), "{error}");
    }

    /// A destination that refuses every byte.
    struct Refusing;

    impl Write for Refusing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("the destination is full"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_destination_is_the_error_reported_not_the_broken_pipe() {
        let recipient = PgpRecipient::from_armored(RSA).unwrap();
        let error = recipient
            .encrypt("f.csv", &mut Refusing, |pipe| {
                for _ in 0..100 {
                    pipe.write_all(&[b'x'; 64 * 1024])?;
                }
                Ok(())
            })
            .unwrap_err();
        assert!(
            error.to_string().contains("the destination is full"),
            "{error}"
        );
    }
}
