//! Replicas of one stage and the choice among them: fewest calls in flight wins, replicas that
//! recently failed to connect are avoided for a back-off period, `dns://` names are resolved
//! again periodically.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};
use turbine_rpc::server::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};

/// One entry of `--text-encoder` / `--denoiser` / `--vae`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointSpec {
    /// `http://host:port`: one replica; tonic resolves the host when it connects.
    Static(String),
    /// `dns://host:port` (or `dns:///host:port`): one replica per resolved address.
    Dns { host: String, port: u16 },
}

impl FromStr for EndpointSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("dns://") {
            // gRPC's naming doc writes `dns:///host:port` (empty authority); accept both.
            let rest = rest.trim_start_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("`{s}`: expected dns://host:port"))?;
            let port = port
                .parse()
                .map_err(|_| format!("`{s}`: `{port}` is not a port"))?;
            if host.is_empty() {
                return Err(format!("`{s}`: empty host"));
            }
            return Ok(EndpointSpec::Dns {
                host: host.to_string(),
                port,
            });
        }
        if s.starts_with("http://") {
            Endpoint::from_shared(s.to_string()).map_err(|e| format!("`{s}`: {e}"))?;
            return Ok(EndpointSpec::Static(s.to_string()));
        }
        Err(format!(
            "`{s}`: expected http://host:port or dns://host:port (TLS is not built in)"
        ))
    }
}

/// How replica channels are set up.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    pub connect_timeout: Duration,
    pub backoff: Duration,
    pub dns_refresh: Duration,
}

/// One stage server.
#[derive(Debug)]
pub struct Replica {
    uri: String,
    channel: Channel,
    in_flight: AtomicUsize,
    /// Milliseconds since the pool's epoch until which the replica is avoided (0: healthy).
    down_until_ms: AtomicU64,
}

impl Replica {
    fn new(uri: String, options: &ChannelOptions) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("`{uri}`: {e}"))?
            .connect_timeout(options.connect_timeout)
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            // A worker that vanishes without closing its socket (a killed node) is noticed by
            // the missing ping answers instead of after the stage deadline.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        Ok(Self {
            uri,
            channel: endpoint.connect_lazy(),
            in_flight: AtomicUsize::new(0),
            down_until_ms: AtomicU64::new(0),
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }
}

/// A replica taken for one call; the in-flight count drops with it.
#[derive(Debug)]
pub struct Lease {
    replica: Arc<Replica>,
}

impl Lease {
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.replica.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The replicas of one stage.
#[derive(Debug, Clone)]
pub struct Pool {
    stage: &'static str,
    replicas: watch::Receiver<Arc<[Arc<Replica>]>>,
    epoch: Instant,
    backoff: Duration,
    /// Rotates the starting point among equally loaded replicas so idle ones share the work.
    rotation: Arc<AtomicUsize>,
}

impl Pool {
    /// Builds the pool, resolving `dns://` entries once now and then every
    /// `options.dns_refresh` on a background task that ends with the last clone of the pool.
    pub async fn new(
        stage: &'static str,
        specs: &[EndpointSpec],
        options: ChannelOptions,
    ) -> Result<Self, String> {
        let mut current = Vec::new();
        let mut dns = Vec::new();
        for spec in specs {
            match spec {
                EndpointSpec::Static(uri) => {
                    current.push(Arc::new(Replica::new(uri.clone(), &options)?))
                }
                EndpointSpec::Dns { host, port } => dns.push((host.clone(), *port)),
            }
        }
        let statics = current.clone();
        for (host, port) in &dns {
            current.extend(resolve(stage, host, *port, &[], &options).await);
        }
        let (tx, rx) = watch::channel(Arc::<[Arc<Replica>]>::from(current));
        if !dns.is_empty() {
            tokio::spawn(refresh(stage, tx, statics, dns, options));
        }
        Ok(Self {
            stage,
            replicas: rx,
            epoch: Instant::now(),
            backoff: options.backoff,
            rotation: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn stage(&self) -> &'static str {
        self.stage
    }

    pub fn replicas(&self) -> Arc<[Arc<Replica>]> {
        self.replicas.borrow().clone()
    }

    /// The replica for the next call: untried before tried (a retry goes elsewhere when it can),
    /// healthy before backing off, then fewest calls in flight.
    pub fn pick(&self, tried: &[Arc<Replica>]) -> Option<Lease> {
        let replicas = self.replicas();
        let n = replicas.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let replica = (0..n)
            .map(|i| &replicas[(start + i) % n])
            .min_by_key(|r| {
                let was_tried = tried.iter().any(|t| Arc::ptr_eq(t, r));
                let down = r.down_until_ms.load(Ordering::Relaxed) > now;
                (was_tried, down, r.in_flight.load(Ordering::Relaxed))
            })?
            .clone();
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease { replica })
    }

    /// Avoid `replica` for the back-off period (it refused a connection or is not serving).
    pub fn mark_down(&self, replica: &Replica) {
        let until = self.now_ms() + self.backoff.as_millis() as u64;
        if replica.down_until_ms.swap(until, Ordering::Relaxed) == 0 {
            warn!(
                stage = self.stage,
                replica = %replica.uri,
                backoff = ?self.backoff,
                "replica unhealthy"
            );
        }
    }

    pub fn mark_up(&self, replica: &Replica) {
        if replica.down_until_ms.swap(0, Ordering::Relaxed) != 0 {
            info!(stage = self.stage, replica = %replica.uri, "replica healthy again");
        }
    }

    pub fn is_down(&self, replica: &Replica) -> bool {
        replica.down_until_ms.load(Ordering::Relaxed) > self.now_ms()
    }

    fn now_ms(&self) -> u64 {
        // +1 keeps "down until the epoch" distinct from the healthy marker 0.
        self.epoch.elapsed().as_millis() as u64 + 1
    }
}

/// Replicas for every address `host:port` resolves to, reusing `known` ones (their connections
/// and counters) for addresses seen before.
async fn resolve(
    stage: &'static str,
    host: &str,
    port: u16,
    known: &[Arc<Replica>],
    options: &ChannelOptions,
) -> Vec<Arc<Replica>> {
    let addrs = match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs,
        Err(e) => {
            warn!(stage, host, error = %e, "DNS resolution failed");
            return Vec::new();
        }
    };
    let mut out: Vec<Arc<Replica>> = Vec::new();
    for uri in ordered_uris(addrs) {
        match known.iter().find(|r| r.uri == uri) {
            Some(r) => out.push(r.clone()),
            None => match Replica::new(uri, options) {
                Ok(r) => out.push(Arc::new(r)),
                Err(e) => warn!(stage, error = %e, "unusable resolved address"),
            },
        }
    }
    out
}

/// The distinct `http://` URIs of `addrs`, sorted: DNS servers rotate their answers (Docker's
/// does, on every query), and a replica list reordered by a refresh would break [`Pool::pick`]'s
/// rotation among idle replicas (two jobs in a row could land on the same one).
fn ordered_uris(addrs: impl IntoIterator<Item = std::net::SocketAddr>) -> Vec<String> {
    let mut uris: Vec<String> = addrs.into_iter().map(|a| format!("http://{a}")).collect();
    uris.sort();
    uris.dedup();
    uris
}

async fn refresh(
    stage: &'static str,
    tx: watch::Sender<Arc<[Arc<Replica>]>>,
    statics: Vec<Arc<Replica>>,
    dns: Vec<(String, u16)>,
    options: ChannelOptions,
) {
    loop {
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(options.dns_refresh) => {}
        }
        let known = tx.borrow().clone();
        let mut next = statics.clone();
        for (host, port) in &dns {
            let mut found = resolve(stage, host, *port, &known, &options).await;
            if found.is_empty() {
                // A failed or empty lookup keeps the last known addresses: a DNS hiccup should
                // not take every replica away.
                found = known
                    .iter()
                    .filter(|r| !statics.iter().any(|s| Arc::ptr_eq(s, r)))
                    .cloned()
                    .collect();
            }
            next.extend(found);
        }
        let changed = next.len() != known.len()
            || next
                .iter()
                .zip(known.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            let uris: Vec<&str> = next.iter().map(|r| r.uri.as_str()).collect();
            debug!(stage, replicas = ?uris, "replica set changed");
            tx.send_replace(next.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ChannelOptions {
        ChannelOptions {
            connect_timeout: Duration::from_secs(1),
            backoff: Duration::from_secs(60),
            dns_refresh: Duration::from_secs(60),
        }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(
            "http://a:1".parse(),
            Ok(EndpointSpec::Static("http://a:1".into()))
        );
        let dns = EndpointSpec::Dns {
            host: "svc".into(),
            port: 9,
        };
        assert_eq!("dns://svc:9".parse(), Ok(dns.clone()));
        assert_eq!("dns:///svc:9".parse(), Ok(dns));
        assert!("dns://svc".parse::<EndpointSpec>().is_err());
        assert!("https://a:1".parse::<EndpointSpec>().is_err());
    }

    #[test]
    fn resolved_addresses_keep_one_order_whatever_the_dns_answer() {
        let a: std::net::SocketAddr = "10.0.0.2:9".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.3:9".parse().unwrap();
        let want = vec![
            "http://10.0.0.2:9".to_string(),
            "http://10.0.0.3:9".to_string(),
        ];
        assert_eq!(ordered_uris([a, b]), want);
        assert_eq!(ordered_uris([b, a, b]), want);
    }

    #[tokio::test]
    async fn picks_the_least_loaded_healthy_untried_replica() {
        let specs: Vec<EndpointSpec> = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let pool = Pool::new("test", &specs, options()).await.unwrap();
        let a = pool.pick(&[]).unwrap();
        let b = pool.pick(&[]).unwrap();
        assert!(
            !Arc::ptr_eq(a.replica(), b.replica()),
            "spread over idle replicas"
        );
        let busy = a.replica().clone();
        drop(b);
        for _ in 0..4 {
            let next = pool.pick(&[]).unwrap();
            assert!(!Arc::ptr_eq(next.replica(), &busy), "fewest in flight wins");
        }
        drop(a);
        let other = pool
            .replicas()
            .iter()
            .find(|r| !Arc::ptr_eq(r, &busy))
            .unwrap()
            .clone();
        pool.mark_down(&other);
        for _ in 0..4 {
            assert!(
                Arc::ptr_eq(pool.pick(&[]).unwrap().replica(), &busy),
                "down avoided"
            );
        }
        let retry = pool.pick(std::slice::from_ref(&busy)).unwrap();
        assert!(
            Arc::ptr_eq(retry.replica(), &other),
            "untried beats healthy"
        );
        pool.mark_up(&other);
        assert!(!pool.is_down(&other));
    }

    #[tokio::test]
    async fn dns_names_expand_to_every_address() {
        let spec: EndpointSpec = "dns://localhost:7".parse().unwrap();
        let pool = Pool::new("test", &[spec], options()).await.unwrap();
        let uris: Vec<String> = pool
            .replicas()
            .iter()
            .map(|r| r.uri().to_string())
            .collect();
        assert!(!uris.is_empty());
        assert!(uris.iter().all(|u| u.ends_with(":7")), "{uris:?}");
    }
}
