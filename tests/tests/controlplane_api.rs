//! The real API server is there: Conclave's CRDs are served with their schema
//! descriptions, the valid examples are accepted, and every invalid example is refused
//! with the message its `# expect:` line names (CEL and schema validation by upstream code).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers may unwrap: a panic fails the test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use conclave_crds::examples::{Example, parse_example};
use conclave_crds::{Conference, MediaNode, MediaPool};
use conclave_testenv::{TestEnv, TestNamespace, wait};
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::{Api, Resource};
use serde_json::Value;

fn examples(dir: &str) -> Vec<(PathBuf, Example)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crds/examples")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
        .into_iter()
        .map(|f| {
            let example = parse_example(&std::fs::read_to_string(&f).unwrap()).unwrap();
            (f, example)
        })
        .collect()
}

fn api_for(ns: &TestNamespace, object: &Value) -> Api<DynamicObject> {
    let resource = match conclave_crds::examples::kind(object) {
        Some("MediaPool") => ApiResource::erase::<MediaPool>(&()),
        Some("MediaNode") => ApiResource::erase::<MediaNode>(&()),
        Some("Conference") => ApiResource::erase::<Conference>(&()),
        other => panic!("example of unknown kind {other:?}"),
    };
    Api::namespaced_with(ns.client(), ns.name(), &resource)
}

/// The example object, moved into the test namespace and named after its file.
fn prepared(object: &Value, ns: &TestNamespace, file: &Path) -> DynamicObject {
    let mut object = object.clone();
    object["metadata"]["namespace"] = ns.name().into();
    object["metadata"]["name"] = file
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
        .into();
    serde_json::from_value(object).unwrap()
}

#[tokio::test]
async fn valid_examples_are_accepted() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("api-valid").await.unwrap();
    for (file, example) in examples("") {
        assert!(
            example.expect.is_none() && example.old.is_none(),
            "{} is not a plain create",
            file.display()
        );
        let object = prepared(&example.object, &ns, &file);
        let created = api_for(&ns, &example.object)
            .create(&PostParams::default(), &object)
            .await;
        let created = created.unwrap_or_else(|e| panic!("{} was refused: {e}", file.display()));
        assert!(created.metadata.uid.is_some());
    }
}

#[tokio::test]
async fn invalid_examples_are_refused_with_their_message() {
    let env = TestEnv::shared().await.unwrap();
    let ns = env.namespace("api-invalid").await.unwrap();
    let mut wrong = Vec::new();
    for (file, example) in examples("invalid") {
        let expect = example
            .expect
            .clone()
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let api = api_for(&ns, &example.object);
        let mut object = prepared(&example.object, &ns, &file);
        if let Some(old) = &example.old {
            let stored = api
                .create(&PostParams::default(), &prepared(old, &ns, &file))
                .await;
            let stored = stored.unwrap_or_else(|e| {
                panic!("{}: the stored object was refused: {e}", file.display())
            });
            object.metadata.resource_version = stored.meta().resource_version.clone();
        }
        let result = match example.old {
            Some(_) => {
                api.replace(
                    &object.metadata.name.clone().unwrap(),
                    &PostParams::default(),
                    &object,
                )
                .await
            }
            None => api.create(&PostParams::default(), &object).await,
        };
        match result {
            Err(kube::Error::Api(status))
                if status.code == 422 && status.message.contains(&expect) => {}
            Err(kube::Error::Api(status)) => wrong.push(format!(
                "{}: refused with {} {:?}, which does not contain {expect:?}",
                file.display(),
                status.code,
                status.message
            )),
            Err(e) => wrong.push(format!("{}: request failed: {e}", file.display())),
            Ok(_) => wrong.push(format!(
                "{}: accepted, expected refusal with {expect:?}",
                file.display()
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "invalid examples not refused as expected:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn served_schema_has_descriptions() {
    let env = TestEnv::shared().await.unwrap();
    let client = env.client().await.unwrap();
    // What `kubectl explain conference.spec.maxParticipants` reads: the OpenAPI v3 document.
    let description = wait::until("the Conference schema in OpenAPI v3", Duration::from_secs(60), || async {
        let request = http::Request::get("/openapi/v3/apis/conclave.dev/v1alpha1").body(Vec::new()).unwrap();
        let text = client.request_text(request).await.ok()?;
        let document: Value = serde_json::from_str(&text).ok()?;
        let spec = &document["components"]["schemas"]["dev.conclave.v1alpha1.Conference"]["properties"]["spec"];
        spec["properties"]["maxParticipants"]["description"].as_str().map(str::to_owned)
    })
    .await
    .unwrap();
    assert!(
        description.len() > 20,
        "maxParticipants is described: {description:?}"
    );
}
