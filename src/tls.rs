//! TLS for the ports Trellis serves (the public gRPC API, the dispatch peer
//! port, and any later listener): a certificate and key read from PEM files
//! and swapped in place, without a restart, when the files change or the
//! process gets SIGHUP. `TlsAcceptor::incoming` turns a `TcpListener` into a
//! stream of TLS connections a tonic (or hyper) server serves as it would
//! plain TCP. rustls with the ring provider; depends on nothing else here.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use futures::Stream;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// How often the files are looked at for a change (their modification time
/// and length), besides SIGHUP.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A client that has not finished its handshake by then is dropped, so a
/// silent connection cannot hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// A port's certificate and key files, and the flags that named them (for
/// error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The flags' common prefix, e.g. `grpc` for `--grpc-tls-cert-path`.
    pub flag: &'static str,
}

impl TlsFiles {
    /// Both paths, or neither (plaintext); one without the other is an
    /// error naming the missing flag.
    pub fn from_flags(
        flag: &'static str,
        cert: &Path,
        key: &Path,
    ) -> Result<Option<TlsFiles>, TlsError> {
        let files = TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            flag,
        };
        match (cert.as_os_str().is_empty(), key.as_os_str().is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Ok(Some(files)),
            (false, true) => Err(TlsError::Missing(files.key_flag())),
            (true, false) => Err(TlsError::Missing(files.cert_flag())),
        }
    }

    fn cert_flag(&self) -> String {
        format!("--{}-tls-cert-path", self.flag)
    }

    fn key_flag(&self) -> String {
        format!("--{}-tls-key-path", self.flag)
    }
}

/// Why a certificate could not be loaded; every variant names the flag.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0} must be set too: TLS needs both a certificate and a key")]
    Missing(String),
    #[error("{flag} {}: {error}", path.display())]
    Read {
        flag: String,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{flag} {}: {reason}", path.display())]
    Invalid {
        flag: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Config(String),
}

/// Reads and checks a certificate chain and its private key.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(&files.cert, files.cert_flag())?;
    let key_pem = read(&files.key, files.key_flag())?;
    let invalid_cert = |reason: String| TlsError::Invalid {
        flag: files.cert_flag(),
        path: files.cert.clone(),
        reason,
    };
    let invalid_key = |reason: String| TlsError::Invalid {
        flag: files.key_flag(),
        path: files.key.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_cert(format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(invalid_cert("no PEM certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid_key(format!("not a PEM private key: {e}")))?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| invalid_key(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| invalid_key(format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

fn read(path: &Path, flag: String) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        error,
    })
}

/// rustls' ring provider (no aws-lc: no cmake or C toolchain to build).
/// rustls 0.23.48 deprecates it because ring has no post-quantum key
/// exchange; classical X25519/P-256 is what this build offers until the
/// project takes on aws-lc.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Hands every handshake the certificate in force when it starts.
#[derive(Debug)]
struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    fn get(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What the files looked like when last loaded: a change of either is a
/// reason to reload.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(files: &TlsFiles) -> Stamp {
    let of = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())))
    };
    [of(&files.cert), of(&files.key)]
}

/// A TLS acceptor whose certificate reloads in place (see the module docs).
pub struct TlsAcceptor {
    files: TlsFiles,
    cert: Arc<SwappableCert>,
    acceptor: tokio_rustls::TlsAcceptor,
    last_stamp: Mutex<Stamp>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Loads the files (a bad one is an error naming its flag) and offers
    /// `alpn` (`[b"h2"]` for gRPC, which clients require).
    pub fn load(files: TlsFiles, alpn: &[&[u8]]) -> Result<Arc<Self>, TlsError> {
        let last_stamp = Mutex::new(stamp(&files));
        let cert = Arc::new(SwappableCert {
            current: RwLock::new(Arc::new(load_certified_key(&files)?)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(Self {
            files,
            cert,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            last_stamp,
        }))
    }

    /// Loads the files again; on failure the certificate in force stays
    /// and the reason is logged (and returned).
    pub fn reload(&self) -> Result<(), TlsError> {
        *self
            .last_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = stamp(&self.files);
        match load_certified_key(&self.files) {
            Ok(key) => {
                self.cert.set(key);
                tracing::info!(cert = %self.files.cert.display(), "reloaded the TLS certificate");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded: keeping the previous one");
                Err(e)
            }
        }
    }

    /// Reloads if either file changed since the last load.
    fn reload_if_changed(&self) {
        let now = stamp(&self.files);
        let changed = *self
            .last_stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            != now;
        if changed {
            let _ = self.reload();
        }
    }

    /// Reloads on SIGHUP and whenever the files change (looked at every
    /// `WATCH_INTERVAL`), until the acceptor is dropped.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let acceptor: Weak<Self> = Arc::downgrade(self);
        // Registered before returning: a SIGHUP that arrives once the
        // server runs must reload, never kill the process (its default).
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let signalled = tokio::select! {
                    _ = tick.tick() => false,
                    _ = next_hangup(&mut hangup) => true,
                };
                let Some(acceptor) = acceptor.upgrade() else {
                    return;
                };
                if signalled {
                    tracing::info!("SIGHUP: reloading the TLS certificate");
                    let _ = acceptor.reload();
                } else {
                    acceptor.reload_if_changed();
                }
            }
        })
    }

    /// The TLS connections made to `listener`: each handshake runs in its
    /// own task, so a slow client delays nobody; a failed one (a plaintext
    /// client, say) is logged at debug and dropped. Accepting stops when
    /// the stream is dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> impl Stream<Item = io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = sender.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: pause
                        // rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = self.acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(receiver)
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: certificates reload on file change only");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    match hangup {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}

/// Reads a CA bundle (PEM) a client trusts, checking it holds at least one
/// certificate; `flag` names the option in errors.
pub fn read_ca(path: &Path, flag: &str) -> Result<Vec<u8>, TlsError> {
    let pem = read(path, flag.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            flag: flag.to_string(),
            path: path.to_path_buf(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(pem)
}
