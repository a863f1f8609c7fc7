//! The listeners: the API on `http.listen` (HTTPS when a certificate is configured),
//! and, when `http.ops_listen` is set, /healthz, /readyz and /metrics on a plain
//! listener of their own. Both stop gracefully when asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use tokio_util::sync::CancellationToken;

use super::state::ApiState;
use crate::config::HttpSettings;

/// Bound sockets, not yet serving.
pub struct Listeners {
    api: std::net::TcpListener,
    tls: Option<RustlsConfig>,
    ops: Option<std::net::TcpListener>,
}

fn bind(addr: &str, key: &str) -> anyhow::Result<std::net::TcpListener> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| anyhow::anyhow!("configuration key `{key}`: {e}"))?;
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({key}): {e}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl Listeners {
    /// Binds the API (and ops) ports and loads the TLS certificate and key.
    pub async fn bind(settings: &HttpSettings) -> anyhow::Result<Self> {
        let tls = match settings.tls() {
            Some((cert, key)) => {
                crate::config::check_private_file("http.tls_key_file", key)?;
                // One provider for the whole process: rustls is built with ring only.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let config = RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
                    anyhow::anyhow!("configuration key `http.tls_cert_file`/`http.tls_key_file`: cannot load {} and {}: {e}", cert.display(), key.display())
                })?;
                Some(config)
            }
            None => None,
        };
        let api = bind(&settings.listen, "http.listen")?;
        let ops = settings
            .ops_listen
            .as_deref()
            .map(|a| bind(a, "http.ops_listen"))
            .transpose()?;
        Ok(Listeners { api, tls, ops })
    }

    pub fn api_addr(&self) -> std::io::Result<SocketAddr> {
        self.api.local_addr()
    }

    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `stop`; requests in flight get a few seconds to finish.
    pub async fn serve(self, state: Arc<ApiState>, stop: CancellationToken) -> anyhow::Result<()> {
        let with_ops = self.ops.is_none();
        let api = super::routes::router(state.clone(), with_ops)
            .into_make_service_with_connect_info::<SocketAddr>();
        let handle = axum_server::Handle::new();
        let ops_task = self.ops.map(|listener| {
            let router: Router = super::routes::ops_router(state);
            let stop = stop.clone();
            tokio::spawn(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            })
        });
        let stopper = {
            let handle = handle.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                handle.graceful_shutdown(Some(Duration::from_secs(5)));
            })
        };
        let served = match self.tls {
            Some(tls) => {
                axum_server::from_tcp_rustls(self.api, tls)
                    .handle(handle)
                    .serve(api)
                    .await
            }
            None => {
                axum_server::from_tcp(self.api)
                    .handle(handle)
                    .serve(api)
                    .await
            }
        };
        stopper.abort();
        if let Some(task) = ops_task {
            task.await??;
        }
        Ok(served?)
    }
}
