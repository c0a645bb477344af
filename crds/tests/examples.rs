//! Every example manifest (crds/examples and the YAML blocks of docs/api.md) parses into the
//! Rust types and passes the generated schema; every invalid example is refused by the
//! schema's OpenAPI bounds or CEL rules with the message it names. The same invalid examples
//! go to a real API server in the control-plane integration tests.

#![allow(clippy::unwrap_used, reason = "test code: a panic fails the test")]

use std::path::{Path, PathBuf};

use conclave_crds::examples::{Example, kind, parse_example};
use conclave_crds::{Conference, MediaNode, MediaPool};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::Validator;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn schema_of(kind: &str) -> Value {
    let crd: CustomResourceDefinition = conclave_crds::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

/// Applies schema defaults the way the API server does, by a round trip through the types.
fn with_defaults(object: &Value) -> Result<Value, String> {
    fn round<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: &Value,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(typed).unwrap())
    }
    match kind(object) {
        Some("MediaPool") => round::<MediaPool>(object),
        Some("MediaNode") => round::<MediaNode>(object),
        Some("Conference") => round::<Conference>(object),
        other => Err(format!("unknown kind {other:?}")),
    }
}

/// Every refusal of `example`, as "field.path: message" lines; empty when accepted.
fn refusals(example: &Example) -> Vec<String> {
    let kind = kind(&example.object).expect("example has a kind");
    let schema = schema_of(kind);
    let structural = jsonschema::options()
        .should_validate_formats(false)
        .build(&schema)
        .expect("CRD schema compiles as JSON schema");
    let mut errors: Vec<String> = structural
        .iter_errors(&example.object)
        .map(|e| {
            let path = e
                .instance_path()
                .to_string()
                .trim_start_matches('/')
                .replace('/', ".");
            format!("{path}: {e}")
        })
        .collect();
    if !errors.is_empty() {
        return errors;
    }
    let object = match with_defaults(&example.object) {
        Ok(o) => o,
        Err(e) => return vec![e],
    };
    let old = example
        .old
        .as_ref()
        .map(|o| with_defaults(o).expect("stored object is valid"));
    if let Err(cel) = Validator::new().validate(&schema, &object, old.as_ref()) {
        errors.extend(
            cel.iter()
                .map(|e| format!("{}: {}", e.field_path, e.message)),
        );
    }
    errors
}

fn load(path: &Path) -> Example {
    parse_example(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn valid_examples_parse_and_pass_the_schema() {
    let files = yaml_files(&examples_dir());
    assert!(
        files.len() >= 4,
        "expected example manifests in {}",
        examples_dir().display()
    );
    for path in files {
        let example = load(&path);
        with_defaults(&example.object).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            refusals(&example),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
    }
}

#[test]
fn invalid_examples_are_refused_with_their_message() {
    let files = yaml_files(&examples_dir().join("invalid"));
    assert!(files.len() >= 10, "expected invalid examples");
    for path in files {
        let example = load(&path);
        let expect = example
            .expect
            .clone()
            .unwrap_or_else(|| panic!("{}: no # expect line", path.display()));
        let errors = refusals(&example);
        assert!(
            errors.iter().any(|e| e.contains(&expect)),
            "{}: expected a refusal containing {expect:?}, got {errors:?}",
            path.display()
        );
    }
}

#[test]
fn update_examples_are_accepted_when_nothing_immutable_changes() {
    for path in yaml_files(&examples_dir().join("invalid")) {
        let example = load(&path);
        if let Some(old) = &example.old {
            let same = Example {
                expect: None,
                old: Some(old.clone()),
                object: old.clone(),
            };
            assert_eq!(refusals(&same), Vec::<String>::new(), "{}", path.display());
        }
    }
}

#[test]
fn api_reference_examples_parse_and_pass_the_schema() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let blocks: Vec<&str> = text
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let kinds: Vec<String> = blocks
        .iter()
        .filter_map(|b| {
            let example = parse_example(b).unwrap();
            assert_eq!(
                refusals(&example),
                Vec::<String>::new(),
                "docs/api.md block:\n{b}"
            );
            kind(&example.object).map(str::to_owned)
        })
        .collect();
    for k in ["MediaPool", "MediaNode", "Conference"] {
        assert!(
            kinds.iter().any(|x| x == k),
            "docs/api.md has no {k} example"
        );
    }
}
