//! The example manifests kept in `crds/examples/`: valid ones at the top, invalid ones under
//! `invalid/`, each invalid file naming in a `# expect:` line the text of the error the API
//! server gives for it. Unit tests check them against the schema; integration tests send
//! them to a real API server.

use serde_json::Value;

/// One example file.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Text every refusal of this example must contain (`# expect:` line), if any.
    pub expect: Option<String>,
    /// The stored object, when the example is an update (two YAML documents).
    pub old: Option<Value>,
    /// The object created, or the updated object.
    pub object: Value,
}

/// Parses an example file: an optional `# expect: TEXT` line, then one YAML document
/// (a create) or two (an update: the stored object, then the refused change).
pub fn parse_example(text: &str) -> Result<Example, String> {
    let expect = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect:"))
        .map(|e| e.trim().to_owned());
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| e.to_string())?;
        docs.push(serde_json::to_value(value).map_err(|e| e.to_string())?);
    }
    match docs.len() {
        1 => Ok(Example {
            expect,
            old: None,
            object: docs.remove(0),
        }),
        2 => {
            let object = docs.remove(1);
            Ok(Example {
                expect,
                old: Some(docs.remove(0)),
                object,
            })
        }
        n => Err(format!(
            "an example holds one document (create) or two (update), not {n}"
        )),
    }
}

use serde::Deserialize;

/// The kind named by an example object.
pub fn kind(object: &Value) -> Option<&str> {
    object.get("kind").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_expectation_and_update_documents() {
        let e = parse_example("# expect: nope\na: 1\n---\na: 2\n").unwrap();
        assert_eq!(e.expect.as_deref(), Some("nope"));
        assert_eq!(e.old, Some(serde_json::json!({"a": 1})));
        assert_eq!(e.object, serde_json::json!({"a": 2}));
        assert!(parse_example("a: 1\n---\na: 2\n---\na: 3\n").is_err());
    }
}
