//! The pod's API credentials: a service-account token from the TokenRequest API, bound to
//! the pod, in a token file referenced by a kubeconfig the container gets as KUBECONFIG.
//! The token is refreshed before it expires, as a kubelet refreshes projected tokens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::PostParams;
use kube::config::Kubeconfig;
use kube::{Api, Client, ResourceExt};

use crate::error::{Context, Error};

/// Lifetime asked for each token; refreshed at 80 % of it.
const TOKEN_LIFETIME_SECONDS: i64 = 3600;

/// Where the API server is and how to trust it, copied from the kubelet's own kubeconfig.
#[derive(Debug, Clone)]
pub struct ApiEndpoint {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<String>,
}

impl ApiEndpoint {
    /// Reads the cluster of the current context of `kubeconfig`.
    pub fn from_kubeconfig(kubeconfig: &Path) -> Result<Self, Error> {
        let config = Kubeconfig::read_from(kubeconfig).map_err(|source| Error::Kubeconfig {
            path: kubeconfig.to_owned(),
            source,
        })?;
        let context_name = config.current_context.clone().unwrap_or_default();
        let cluster_name = config
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.as_ref())
            .map(|c| c.cluster.clone())
            .unwrap_or_default();
        let cluster = config
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.clone())
            .unwrap_or_default();
        let server = cluster.server.ok_or_else(|| {
            Error::ContainerConfig(format!(
                "kubeconfig {} names no server",
                kubeconfig.display()
            ))
        })?;
        Ok(ApiEndpoint {
            server,
            certificate_authority_data: cluster.certificate_authority_data,
            certificate_authority: cluster.certificate_authority,
        })
    }
}

/// The credentials of one pod: the kubeconfig to hand to its containers.
#[derive(Debug, Clone)]
pub struct PodCredentials {
    pub kubeconfig: PathBuf,
    token_file: PathBuf,
    /// When the token should be replaced.
    pub refresh_at: Instant,
}

/// Requests a token for the pod's service account and writes the pod's kubeconfig into `dir`.
pub async fn issue(
    client: &Client,
    endpoint: &ApiEndpoint,
    pod: &Pod,
    dir: &Path,
) -> Result<PodCredentials, Error> {
    let token_file = dir.join("token");
    let refresh_at = write_token(client, pod, &token_file).await?;
    let account = service_account(pod);
    let namespace = pod.namespace().unwrap_or_default();
    let mut cluster = serde_json::json!({ "server": endpoint.server });
    if let Some(data) = &endpoint.certificate_authority_data {
        cluster["certificate-authority-data"] = data.clone().into();
    }
    if let Some(file) = &endpoint.certificate_authority {
        cluster["certificate-authority"] = file.clone().into();
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "local", "cluster": cluster }],
        "users": [{ "name": account, "user": { "tokenFile": token_file } }],
        "contexts": [{ "name": "pod", "context": { "cluster": "local", "user": account, "namespace": namespace } }],
        "current-context": "pod",
    });
    let path = dir.join("kubeconfig");
    let text = serde_yaml::to_string(&kubeconfig)
        .map_err(|e| Error::ContainerConfig(format!("encode pod kubeconfig: {e}")))?;
    write_atomically(&path, text.as_bytes())?;
    Ok(PodCredentials {
        kubeconfig: path,
        token_file,
        refresh_at,
    })
}

/// Replaces the token of `credentials` with a fresh one.
pub async fn refresh(
    client: &Client,
    pod: &Pod,
    credentials: &mut PodCredentials,
) -> Result<(), Error> {
    credentials.refresh_at = write_token(client, pod, &credentials.token_file).await?;
    Ok(())
}

/// The service account a pod runs as.
pub fn service_account(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

/// True unless the pod (or nothing: its service account is not consulted) opts out of
/// API credentials with `automountServiceAccountToken: false`.
pub fn wanted(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
        != Some(false)
}

async fn write_token(client: &Client, pod: &Pod, path: &Path) -> Result<Instant, Error> {
    let account = service_account(pod);
    let namespace = pod.namespace().unwrap_or_default();
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: None, // the API server's own audience
            expiration_seconds: Some(TOKEN_LIFETIME_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        }),
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let issued = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .context(format!(
            "request a token for service account {namespace}/{account}"
        ))?;
    let Some(token) = issued
        .status
        .and_then(|s| s.token)
        .filter(|t| !t.is_empty())
    else {
        return Err(Error::ContainerConfig(format!(
            "the API server issued no token for service account {namespace}/{account}"
        )));
    };
    write_atomically(path, token.as_bytes())?;
    let lifetime = Duration::from_secs(TOKEN_LIFETIME_SECONDS as u64);
    Ok(Instant::now() + lifetime.mul_f64(0.8))
}

/// Writes a file only its owner can read, replacing `path` in one step.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes))
        .context(format!("write {}", temporary.display()))?;
    std::fs::rename(&temporary, path).context(format!("rename to {}", path.display()))
}
