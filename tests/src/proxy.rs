//! A TCP proxy in front of a database server that counts round trips: each time a client speaks after the
//! server did (or first) is one. TLS passes through untouched, so what is counted is what the network sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub struct CountingProxy {
    pub port: u16,
    round_trips: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Listen on a free local port and forward every connection to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> Self {
        Self::start_on(0, target).await
    }

    /// The same on a given port (one a test first used as unreachable).
    pub async fn start_on(port: u16, target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await {
                        relay(client, server, counter).await;
                    }
                });
            }
        });
        Self { port, round_trips }
    }

    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

async fn relay(client: TcpStream, server: TcpStream, counter: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Whether the last bytes went from the server to the client (a client send then starts a round trip).
    let server_spoke = Arc::new(AtomicBool::new(true));
    let turn = server_spoke.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            if turn.swap(false, Ordering::SeqCst) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            server_spoke.store(true, Ordering::SeqCst);
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
