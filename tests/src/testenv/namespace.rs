//! A namespace per test: created with a random suffix so tests run in parallel, deleted
//! when the test ends (best effort); when the test panics, the logs of its pods are printed.

use std::path::{Path, PathBuf};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, Resource};
use rand::Rng;
use serde_json::json;

use crate::error::{Context, Error};
use crate::logs;

/// Label on every namespace a test creates.
pub const TEST_LABEL: &str = "testenv.conclave.dev/test";

/// A namespace owned by one test.
pub struct TestNamespace {
    name: String,
    client: Client,
    kubeconfig: PathBuf,
    log_dir: Option<PathBuf>,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>`.
    pub(crate) async fn create(
        client: Client,
        kubeconfig: PathBuf,
        log_dir: Option<PathBuf>,
        prefix: &str,
    ) -> Result<Self, Error> {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::rng();
        let suffix: String = (0..6)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        let name = format!("{prefix}-{suffix}");
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { TEST_LABEL: prefix } }
        }))
        .context("build Namespace")?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .context(format!("create namespace {name}"))?;
        Ok(TestNamespace {
            name,
            client,
            kubeconfig,
            log_dir,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A client (of this test's runtime).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Waits until pod `name` is gone from the API (its containers stopped), at most `within`.
    pub async fn pod_gone(&self, name: &str, within: std::time::Duration) -> Result<(), Error> {
        let pods = self.api::<Pod>();
        crate::wait::until(&format!("pod {name} gone"), within, || async {
            matches!(pods.get_opt(name).await, Ok(None)).then_some(())
        })
        .await
    }

    /// The last lines of every container log of this namespace's pods, as the nodes keep
    /// them (`<node>/var-log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`).
    pub fn container_logs(&self) -> String {
        let Some(dir) = &self.log_dir else {
            return "(container logs are on the cluster's nodes: kubectl logs)".into();
        };
        let prefix = format!("{}_", self.name);
        let children = |dir: &Path| -> Vec<PathBuf> {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            paths.sort();
            paths
        };
        let mut files = Vec::new();
        for node in children(dir) {
            for pod in children(&node.join("var-log/pods")) {
                if !pod
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                {
                    continue;
                }
                for container in children(&pod) {
                    files.extend(children(&container));
                }
            }
        }
        files
            .iter()
            .map(|f| format!("--- {}\n{}\n", f.display(), logs::tail(f, 40)))
            .collect()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed; container logs of namespace {}:\n{}",
                self.name,
                self.container_logs()
            );
        }
        // The test's runtime is ending: delete from a thread with a runtime of its own.
        let (name, kubeconfig) = (self.name.clone(), self.kubeconfig.clone());
        let deletion = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = crate::client::from_kubeconfig(&kubeconfig).await.ok()?;
                let result = Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await;
                if let Err(e) = result {
                    eprintln!("could not delete test namespace {name}: {e}");
                }
                Some(())
            })
        });
        let _ = deletion.join();
    }
}
