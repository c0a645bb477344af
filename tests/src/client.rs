//! Kubernetes clients built from a kubeconfig file (the admin one written by the control
//! plane, or the one given by KUBECONFIG).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::error::Error;

/// A client for the current context of the kubeconfig at `path`. Create one per tokio
/// runtime: a client's connection tasks live on the runtime it was created on.
pub async fn from_kubeconfig(path: &Path) -> Result<Client, Error> {
    let kubeconfig_error = |source| Error::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let kubeconfig = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig_error)?;
    Client::try_from(config).map_err(|source| Error::Kube {
        context: format!("build a client from {}", path.display()),
        source,
    })
}
