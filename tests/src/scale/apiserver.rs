//! Requests the API server served, by resource, subresource and verb, from the
//! `apiserver_request_total` counter of its /metrics (read with the admin client).

use std::collections::BTreeMap;

use kube::Client;

use crate::error::{Context, Error};

/// (resource, subresource, verb) → requests.
pub type Counts = BTreeMap<(String, String, String), f64>;

/// The API server's request counters now.
pub async fn request_counts(client: &Client) -> Result<Counts, Error> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a static request");
    let text = client
        .request_text(request)
        .await
        .context("read the API server's /metrics")?;
    Ok(parse(&text))
}

/// Sums `apiserver_request_total` samples by resource, subresource and verb.
pub fn parse(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix("=\""))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        *counts
            .entry((label("resource"), label("subresource"), label("verb")))
            .or_default() += value;
    }
    counts
}

/// `after - before`, without entries that did not change.
pub fn delta(after: &Counts, before: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0.0);
            (d > 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_by_resource_subresource_and_verb() {
        let text = r#"# HELP apiserver_request_total x
apiserver_request_total{code="201",component="apiserver",dry_run="",group="conclave.dev",resource="conferences",scope="resource",subresource="",verb="POST",version="v1alpha1"} 7
apiserver_request_total{code="409",component="apiserver",dry_run="",group="conclave.dev",resource="conferences",scope="resource",subresource="",verb="POST",version="v1alpha1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="conclave.dev",resource="medianodes",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 3
apiserver_request_duration_seconds_count{resource="x"} 9
"#;
        let c = parse(text);
        let key = |r: &str, s: &str, v: &str| (r.to_owned(), s.to_owned(), v.to_owned());
        assert_eq!(c[&key("conferences", "", "POST")], 9.0);
        assert_eq!(c[&key("medianodes", "status", "APPLY")], 3.0);
        assert_eq!(c.len(), 2);
        let mut before = c.clone();
        before.insert(key("conferences", "", "POST"), 4.0);
        let d = delta(&c, &before);
        assert_eq!(d.len(), 1);
        assert_eq!(d[&key("conferences", "", "POST")], 5.0);
    }
}
