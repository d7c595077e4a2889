//! A minimal Lambda Runtime API emulator (the HTTP interface a `provided.al2023` bootstrap polls), so the
//! real `okta-hook` binary can run locally: `make demo` replays `events/` through it and `make bench`
//! measures cold start and warm latency through it.
//!
//! Implements `GET /2018-06-01/runtime/invocation/next`, `POST …/invocation/{id}/response`,
//! `POST …/invocation/{id}/error` and `POST …/init/error`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, oneshot};

type Reply = Result<Bytes, String>;

struct Shared {
    queue: Mutex<mpsc::UnboundedReceiver<(String, Bytes)>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    init_error: Mutex<Option<String>>,
}

/// The emulator; one function process polls it.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    sender: mpsc::UnboundedSender<(String, Bytes)>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RuntimeApi {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(receiver),
            waiting: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        crate::http::serve(listener, shared.clone(), route);
        Ok(Self {
            addr,
            sender,
            shared,
            next_id: AtomicU64::new(1),
        })
    }

    /// Invoke the function with `event` and wait for its response payload.
    pub async fn invoke(&self, event: Bytes, timeout: Duration) -> Reply {
        let id = format!("inv-{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), tx);
        self.sender
            .send((id, event))
            .map_err(|_| "emulator stopped".to_owned())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err("function did not answer".into()),
            Err(_) => {
                let init = self.shared.init_error.lock().await.clone();
                Err(init.map_or_else(|| "timed out".into(), |e| format!("init error: {e}")))
            }
        }
    }

    /// Start a function binary polling this emulator, with Lambda's environment.
    pub fn spawn_function(
        &self,
        binary: &Path,
        env: &[(&str, String)],
        log: Option<&Path>,
    ) -> std::io::Result<Child> {
        let mut cmd = Command::new(binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", self.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "okta-hook")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/okta-hook")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        match log {
            Some(path) => {
                let file = std::fs::File::create(path)?;
                cmd.stdout(file.try_clone()?).stderr(file);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        cmd.spawn()
    }
}

async fn route(
    shared: Arc<Shared>,
    req: Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri.path().to_owned();
    let method = req.method.clone();
    let parts: Vec<&str> = path
        .trim_start_matches("/2018-06-01/runtime/")
        .split('/')
        .collect();
    let accepted = crate::http::response(
        StatusCode::ACCEPTED,
        Bytes::from_static(b"{\"status\":\"OK\"}"),
        &[],
    );
    Ok(match (method, parts.as_slice()) {
        (Method::GET, ["invocation", "next"]) => {
            let next = shared.queue.lock().await.recv().await;
            match next {
                Some((id, event)) => {
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() + 30_000)
                        .unwrap_or_default();
                    crate::http::response(
                        StatusCode::OK,
                        event,
                        &[
                            ("lambda-runtime-aws-request-id", id),
                            ("lambda-runtime-deadline-ms", deadline.to_string()),
                            (
                                "lambda-runtime-invoked-function-arn",
                                "arn:aws:lambda:us-east-1:000000000000:function:okta-hook".into(),
                            ),
                            (
                                "lambda-runtime-trace-id",
                                "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                            ),
                            ("content-type", "application/json".into()),
                        ],
                    )
                }
                None => crate::http::response(StatusCode::GONE, Bytes::new(), &[]),
            }
        }
        (Method::POST, ["invocation", id, outcome @ ("response" | "error")]) => {
            if let Some(tx) = shared.waiting.lock().await.remove(*id) {
                let _ = tx.send(if *outcome == "response" {
                    Ok(body)
                } else {
                    Err(String::from_utf8_lossy(&body).into_owned())
                });
            }
            accepted
        }
        (Method::POST, ["init", "error"]) => {
            *shared.init_error.lock().await = Some(String::from_utf8_lossy(&body).into_owned());
            accepted
        }
        _ => crate::http::response(StatusCode::NOT_FOUND, Bytes::new(), &[]),
    })
}
