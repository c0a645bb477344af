//! Looks up the hostnames load balancers give instead of an address (AWS's Network Load
//! Balancer gives only one), through the resolver of the operator's pod (`/etc/resolv.conf`)
//! or the DNS server `--dns-server` names. Answers are cached for their TTL, at most a
//! minute, so a load balancer that changes its addresses is followed within one; a name that
//! does not resolve yet is asked again after at most ten seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// What a name that resolves to no address says.
pub const NO_ADDRESS: &str = "no address record";

/// The operator's resolver, or why it has none (a pod without `/etc/resolv.conf`): the
/// operator runs without one, and a load balancer's hostname then says why it does not
/// resolve.
#[derive(Clone)]
pub struct Dns(Result<TokioResolver, String>);

impl Dns {
    /// Resolves through `server` alone when given, else through the system's configuration.
    pub fn new(server: Option<SocketAddr>) -> Self {
        let resolver = resolver(server).map_err(|e| format!("no DNS resolver: {e}"));
        if let Err(why) = &resolver {
            tracing::warn!(%why, "load balancers' hostnames will not resolve");
        }
        Self(resolver)
    }

    /// The addresses `host` (a fully qualified name, with or without its final dot) resolves
    /// to, IPv4 and IPv6; an error says why there are none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let resolver = self.0.as_ref().map_err(Clone::clone)?;
        let absolute = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let found = resolver.lookup_ip(absolute).await.map_err(|e| {
            if e.is_no_records_found() {
                NO_ADDRESS.to_owned()
            } else {
                e.to_string()
            }
        })?;
        Ok(found.iter().collect())
    }
}

fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, NetError> {
    let mut builder = match server {
        Some(server) => {
            let mut connection = ConnectionConfig::udp();
            connection.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![connection]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.positive_max_ttl = Some(Duration::from_secs(60));
    options.negative_max_ttl = Some(Duration::from_secs(10));
    if server.is_some() {
        options.use_hosts_file = ResolveHosts::Never;
    }
    builder.build()
}
