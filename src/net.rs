//! Accepting plaintext connections: every socket the public API, the HTTP
//! gateway and the dispatch port accept gets `TCP_NODELAY`. A streamed gRPC
//! answer (a lookup, a peer's read) is written as several small frames;
//! with Nagle's algorithm on, each frame after the first waits for the
//! client's delayed ACK, which costs up to 40 ms per response on loopback.
//! (The TLS acceptor in `tls` sets the same option.)

use std::io;

use futures::{Stream, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The connections `listener` accepts, each with `TCP_NODELAY` set.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = io::Result<TcpStream>> + Send {
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        accepted.inspect(|tcp| {
            // A socket that refuses the option still works, only slower.
            let _ = tcp.set_nodelay(true);
        })
    })
}
