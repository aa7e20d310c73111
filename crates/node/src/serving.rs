//! The request path: the data listener's requests routed by `Host` to their app (in
//! the node, or forwarded to its worker process), and the worker's side of forwarded
//! requests.

use crate::routing::host_name;
use crate::{AppEntry, Inner, worker};
use futures::future::BoxFuture;
use http_body_util::BodyExt as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmtime_wasi_http::WasiBody;
use wisp_trigger_http::{HoldingBody, Peer, RequestHandler};

/// Routes requests on the data listener by `Host` to their app (the node), or takes the
/// requests the node forwards (its worker).
pub(crate) struct Router(pub(crate) Arc<Inner>);

impl RequestHandler for Router {
    fn handle_request(
        self: Arc<Self>,
        request: http::Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> BoxFuture<'static, http::Response<WasiBody>> {
        let inner = self.0.clone();
        let own_listener = *inner.listen.lock().unwrap_or_else(|e| e.into_inner());
        match &inner.worker_token {
            // A worker: its own port takes the node's forwarded requests; connections the
            // node handed over keep the node's listening address and are routed as there.
            Some(_) if own_listener == Some(peer.local) => Box::pin(inner.serve_forwarded(request)),
            _ => Box::pin(inner.route(request, peer)),
        }
    }
}

/// Counts a request in its app's in-flight requests while it lives.
struct InFlight(Arc<AppEntry>);

impl InFlight {
    fn enter(entry: &Arc<AppEntry>) -> Self {
        entry.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(entry.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Inner {
    async fn route(
        self: Arc<Self>,
        mut request: http::Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> http::Response<WasiBody> {
        let authority = match wisp_trigger_http::request_authority(&request, peer.local) {
            Ok(authority) => authority,
            Err(reason) => {
                tracing::debug!("refused a request from {} with 400: {reason}", peer.client);
                return wisp_trigger_http::text_response(
                    http::StatusCode::BAD_REQUEST,
                    "Bad Request\n",
                );
            }
        };
        let host = host_name(&authority);
        let entry = self.table().route(&host).cloned();
        let Some(entry) = entry else {
            tracing::debug!("no app answers host `{host}`; answered 404");
            return wisp_trigger_http::text_response(
                http::StatusCode::NOT_FOUND,
                "Not Found: no app is deployed at this host\n",
            );
        };
        entry.requests.fetch_add(1, Ordering::Relaxed);
        entry.touch(self.started);
        let _in_flight = InFlight::enter(&entry);
        // Only the node sets these, for its worker: an app never sees a client's.
        worker::remove_forwarding_headers(request.headers_mut());
        if let Some(worker) = &self.worker {
            // An app running more instances than there are CPUs, while another app is
            // being served, goes to the worker process (see `worker`). Requests past the
            // app's cap only queue: an app capped at the CPU count or below is never busy.
            let cap = (entry.record.limits.max_instances).unwrap_or(self.config.app_max_instances);
            let running = entry.in_flight.load(Ordering::Relaxed).min(cap);
            let busy = running > self.busy_above;
            let app = Arc::as_ptr(&entry) as usize;
            // Once the worker holds one of the app's connections, all its requests go
            // there: its instances are then in one process, under its cap.
            let held = worker.holds_connections_of(&entry.name);
            if (self.fair_share.starts_slow(app, busy) || held)
                && let Some(address) = worker.address()
            {
                wisp_engine::send_connection_to_slow_lane();
                // The worker's instances of the app count against the app's cap (and
                // `--max-instances`) here, so the two processes together keep within it:
                // the slot is held until the worker's response body ends.
                let slot = match self.clone().ensure_loaded(&entry).await {
                    Ok(loaded) => loaded.app.reserve_instance_slot().await.ok(),
                    Err(_) => None,
                };
                // A keep-alive HTTP/1.1 connection can follow its request to the worker.
                let keeps_alive = request.version() == http::Version::HTTP_11
                    && !request
                        .headers()
                        .get_all(http::header::CONNECTION)
                        .iter()
                        .any(|value| {
                            value
                                .to_str()
                                .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
                        });
                match worker
                    .forward(
                        address,
                        request,
                        &peer,
                        &authority,
                        &entry.name,
                        &entry.deploy_id,
                    )
                    .await
                {
                    Ok(response) => {
                        // The connection follows: once this response is sent, the worker
                        // serves it directly (a TLS or HTTP/2 one stays and is proxied).
                        if keeps_alive && !peer.secure {
                            worker.hand_off_after_this_request(&entry.name);
                        }
                        return response.map(|body| HoldingBody::new(body, slot).boxed_unsync());
                    }
                    // Served here after all, in a slot of its own.
                    Err(unsent) => request = unsent,
                }
            }
        }
        self.serve_here(&entry, request, peer).await
    }

    /// A worker's answer to a request the node forwarded.
    async fn serve_forwarded(
        self: Arc<Self>,
        mut request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<WasiBody> {
        let Some(token) = &self.worker_token else {
            unreachable!("only a worker serves forwarded requests")
        };
        if worker::asks_for_metrics(token, &request) {
            return wisp_metrics::metrics_response(self.runtime.engine().metrics(), &request)
                .map(crate::admin::body);
        }
        if worker::asks_for_served(token, &request) {
            let served = serde_json::to_vec(&self.served_on_held_connections()).unwrap_or_default();
            return http::Response::new(crate::admin::body(served));
        }
        let forwarded = match worker::accept_forwarded(token, &mut request) {
            Ok(forwarded) => forwarded,
            Err(refused) => {
                tracing::debug!("the worker refused a request: {refused:?}");
                return refused.response();
            }
        };
        let entry = match self.worker_entry(&forwarded.app, &forwarded.deploy) {
            Ok(entry) => entry,
            Err(err) => {
                tracing::warn!(app = %forwarded.app, "the worker cannot serve app `{}`: {err}", forwarded.app);
                return wisp_trigger_http::text_response(
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable\n",
                );
            }
        };
        // Not counted here: the node counted it (a worker counts what it serves on the
        // connections it holds, for the node's `ls`). In flight it is: the connections
        // the worker holds stay while their app is busy.
        entry.touch(self.started);
        let _in_flight = InFlight::enter(&entry);
        self.serve_here(&entry, request, forwarded.peer).await
    }

    /// Serves `request` with the app of `entry` in this process.
    async fn serve_here(
        self: Arc<Self>,
        entry: &Arc<AppEntry>,
        request: http::Request<hyper::body::Incoming>,
        peer: Peer,
    ) -> http::Response<WasiBody> {
        match self.ensure_loaded(entry).await {
            Ok(loaded) => match &loaded.http {
                Some(http) => http.handle_incoming(request, peer).await,
                None => wisp_trigger_http::text_response(
                    http::StatusCode::NOT_FOUND,
                    "Not Found: this app has no HTTP routes\n",
                ),
            },
            Err(_) => wisp_trigger_http::text_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable\n",
            ),
        }
    }
}
