//! The environment of a container process: `envFrom`, `env` with literal values (expanded
//! against earlier variables), downward-API `fieldRef`s, `secretKeyRef` and
//! `configMapKeyRef`, resolved the way a kubelet does it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};
use kube::{Api, Client, ResourceExt};

use super::expand::expand;
use crate::error::{Context, Error};

/// Variable name → value for one container.
pub type Environment = BTreeMap<String, String>;

/// Resolves the environment of `container` of `pod`, which runs on a Node with `address`.
pub async fn resolve(
    client: &Client,
    pod: &Pod,
    container: &Container,
    address: Ipv4Addr,
) -> Result<Environment, Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut sources = Sources::new(client, &namespace);
    let mut env = Environment::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            sources
                .config_map(&r.name, r.optional.unwrap_or(false))
                .await?
        } else if let Some(r) = &from.secret_ref {
            sources.secret(&r.name, r.optional.unwrap_or(false)).await?
        } else {
            None
        };
        for (key, value) in data.into_iter().flatten() {
            env.insert(format!("{prefix}{key}"), value);
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            Some(source) => value_from(&mut sources, pod, source, address).await?,
            None => Some(expand(var.value.as_deref().unwrap_or_default(), |name| {
                env.get(name).map(String::as_str)
            })),
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

async fn value_from(
    sources: &mut Sources<'_>,
    pod: &Pod,
    source: &EnvVarSource,
    address: Ipv4Addr,
) -> Result<Option<String>, Error> {
    if let Some(field) = &source.field_ref {
        return field_value(pod, &field.field_path, address)
            .map(Some)
            .map_err(Error::ContainerConfig);
    }
    if let Some(key) = &source.secret_key_ref {
        let optional = key.optional.unwrap_or(false);
        let data = sources.secret(&key.name, optional).await?;
        return pick(data, &key.key, "Secret", &key.name, optional);
    }
    if let Some(key) = &source.config_map_key_ref {
        let optional = key.optional.unwrap_or(false);
        let data = sources.config_map(&key.name, optional).await?;
        return pick(data, &key.key, "ConfigMap", &key.name, optional);
    }
    Err(Error::ContainerConfig(
        "env valueFrom: only fieldRef, secretKeyRef and configMapKeyRef are supported by the harness kubelet".into(),
    ))
}

fn pick(
    data: Option<BTreeMap<String, String>>,
    key: &str,
    kind: &str,
    name: &str,
    optional: bool,
) -> Result<Option<String>, Error> {
    match data.and_then(|mut d| d.remove(key)) {
        Some(value) => Ok(Some(value)),
        None if optional => Ok(None),
        None => Err(Error::ContainerConfig(format!(
            "couldn't find key {key} in {kind} {name}"
        ))),
    }
}

/// The value of a downward-API field path for a pod on a Node with `address` (the pod IP
/// and host IP, since the harness has no pod network).
pub fn field_value(pod: &Pod, path: &str, address: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let indexed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    if let Some(v) = indexed("metadata.labels['", meta.labels.as_ref()) {
        return Ok(v);
    }
    if let Some(v) = indexed("metadata.annotations['", meta.annotations.as_ref()) {
        return Ok(v);
    }
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.podIP" | "status.podIPs" | "status.hostIP" | "status.hostIPs" => {
            Some(address.to_string())
        }
        _ => {
            return Err(format!(
                "fieldRef {path} is not supported by the harness kubelet"
            ));
        }
    };
    Ok(value.unwrap_or_default())
}

/// Secrets and ConfigMaps of the pod's namespace, each fetched once per resolution.
struct Sources<'a> {
    client: &'a Client,
    namespace: &'a str,
    fetched: HashMap<(&'static str, String), Option<BTreeMap<String, String>>>,
}

impl<'a> Sources<'a> {
    fn new(client: &'a Client, namespace: &'a str) -> Self {
        Sources {
            client,
            namespace,
            fetched: HashMap::new(),
        }
    }

    async fn secret(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let key = ("Secret", name.to_owned());
        if !self.fetched.contains_key(&key) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.namespace);
            let secret = api
                .get_opt(name)
                .await
                .context(format!("get Secret {name}"))?;
            let data = secret.map(|s| {
                let text = |b: ByteString| String::from_utf8_lossy(&b.0).into_owned();
                let mut data: BTreeMap<String, String> = s
                    .data
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k, text(v)))
                    .collect();
                data.extend(s.string_data.into_iter().flatten());
                data
            });
            self.fetched.insert(key.clone(), data);
        }
        self.present(&key, optional)
    }

    async fn config_map(
        &mut self,
        name: &str,
        optional: bool,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        let key = ("ConfigMap", name.to_owned());
        if !self.fetched.contains_key(&key) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.namespace);
            let map = api
                .get_opt(name)
                .await
                .context(format!("get ConfigMap {name}"))?;
            self.fetched
                .insert(key.clone(), map.map(|m| m.data.unwrap_or_default()));
        }
        self.present(&key, optional)
    }

    fn present(
        &self,
        key: &(&'static str, String),
        optional: bool,
    ) -> Result<Option<BTreeMap<String, String>>, Error> {
        match self.fetched.get(key).cloned().flatten() {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(Error::ContainerConfig(format!(
                "{} \"{}\" not found",
                key.0, key.1
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mn-1", "namespace": "conclave", "uid": "u-1",
                         "labels": {"conclave.dev/pool": "default"}},
            "spec": {"nodeName": "local-2", "serviceAccountName": "conclave-media-node",
                     "containers": [{"name": "media-node"}]}
        }))
        .unwrap()
    }

    #[test]
    fn downward_api_fields() {
        let addr = Ipv4Addr::new(127, 0, 0, 3);
        let field = |path| field_value(&pod(), path, addr);
        assert_eq!(field("metadata.name").unwrap(), "mn-1");
        assert_eq!(field("metadata.namespace").unwrap(), "conclave");
        assert_eq!(field("metadata.uid").unwrap(), "u-1");
        assert_eq!(field("spec.nodeName").unwrap(), "local-2");
        assert_eq!(
            field("spec.serviceAccountName").unwrap(),
            "conclave-media-node"
        );
        assert_eq!(field("status.podIP").unwrap(), "127.0.0.3");
        assert_eq!(field("status.hostIP").unwrap(), "127.0.0.3");
        assert_eq!(
            field("metadata.labels['conclave.dev/pool']").unwrap(),
            "default"
        );
        assert_eq!(field("metadata.annotations['none']").unwrap(), "");
        assert!(field("status.phase").unwrap_err().contains("status.phase"));
    }

    #[test]
    fn missing_keys_are_config_errors_unless_optional() {
        let data = Some(BTreeMap::from([("a".to_owned(), "1".to_owned())]));
        assert_eq!(
            pick(data.clone(), "a", "Secret", "s", false).unwrap(),
            Some("1".into())
        );
        assert_eq!(pick(data.clone(), "b", "Secret", "s", true).unwrap(), None);
        let err = pick(data, "b", "Secret", "s", false)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "couldn't find key b in Secret s");
    }
}
