//! Store outages on demand: a TCP proxy in front of a server (Redis,
//! PostgreSQL) that a test stops, to take the store away from the app, and
//! starts again on the same port, to give it back.

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP proxy to `upstream` on a local port.
pub struct Proxy {
    pub port: u16,
    upstream: (String, u16),
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// A proxy to `upstream` on `port` (`0`: any free port).
    pub async fn start(upstream: (String, u16), port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let to = upstream.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let upstream = to.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            port,
            upstream,
            task: Some(task),
        }
    }

    /// The store goes away: closes the listener and every connection
    /// through it.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The store comes back, on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = Self::start(self.upstream.clone(), self.port).await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
