//! Problems in a MediaPool spec that the API server accepts but no cluster can run: image
//! references a kubelet refuses, and TURN ports that collide on the host network. The pool
//! controller reports them in the Reconciled condition and creates nothing until they are fixed.

use conclave_crds::pool::MediaPoolSpec;
use conclave_crds::shared::PortRange;

/// Every problem found, each naming the field and the fix; empty when the spec can run.
pub fn problems(spec: &MediaPoolSpec) -> Vec<String> {
    let mut found = Vec::new();
    if let Err(why) = check_image(&spec.media_node.image) {
        found.push(format!(
            "spec.mediaNode.image {:?} {why}",
            spec.media_node.image
        ));
    }
    let turn = &spec.turn;
    if turn.enabled {
        if let Err(why) = check_image(&turn.image) {
            found.push(format!("spec.turn.image {:?} {why}", turn.image));
        }
        if contains(&turn.relay_port_range, turn.port) {
            found.push(format!(
                "spec.turn.port {} lies inside spec.turn.relayPortRange; move one of them",
                turn.port
            ));
        }
        if spec.media_node.udp_port() == turn.port {
            found.push(format!(
                "spec.turn.port {} is also spec.mediaNode.udpPort; relays and media nodes may share a Node, move one of them",
                turn.port
            ));
        }
    }
    found
}

fn contains(range: &PortRange, port: u16) -> bool {
    (range.min..=range.max).contains(&port)
}

/// Checks an image reference the way a container runtime parses it:
/// `[registry[:port]/]path[:tag][@digest]`, path components lowercase.
fn check_image(image: &str) -> Result<(), &'static str> {
    if image.trim().is_empty() {
        return Err("is empty; set a container image");
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace; remove it");
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let valid = digest.split_once(':').is_some_and(|(alg, hex)| {
            !alg.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !valid {
            return Err("has a malformed digest; use @sha256:<hex>");
        }
    }
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err("has an invalid tag; tags are letters, digits, '_', '.' and '-'");
        }
    }
    let mut components: Vec<&str> = path.split('/').collect();
    let has_registry = components.len() > 1
        && (components[0].contains(['.', ':']) || components[0] == "localhost");
    if has_registry {
        components.remove(0);
    }
    for component in components {
        let valid = !component.is_empty()
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !valid {
            return Err(
                "is not a valid image reference; repository names are lowercase letters, digits and separators",
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> MediaPoolSpec {
        serde_json::from_value(serde_json::json!({})).unwrap()
    }

    #[test]
    fn defaults_have_no_problems() {
        assert_eq!(problems(&spec()), Vec::<String>::new());
    }

    #[test]
    fn image_references() {
        for good in [
            "ghcr.io/conclave-dev/media-node:0.1.0",
            "coturn/coturn:4.6",
            "localhost:5000/media-node",
            "registry.example.com:443/team/media_node@sha256:0123456789abcdef0123456789abcdef",
            "Registry.Example.com/x/y:V1",
            "busybox",
        ] {
            assert_eq!(check_image(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "   ",
            "ghcr.io/conclave-dev/media-node :1",
            "ghcr.io/Conclave-dev/media-node:1",
            "ghcr.io//media-node",
            "media-node:",
            "media-node:-x",
            "media-node@sha256:xyz",
            "media-node-",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn each_problem_names_its_field() {
        let mut s = spec();
        s.media_node.image = "ghcr.io/Conclave/media-node".into();
        s.turn.image = "coturn /coturn".into();
        s.media_node.udp_port = Some(3478);
        s.turn.port = 3478;
        s.turn.relay_port_range = PortRange {
            min: 3400,
            max: 3500,
        };
        let found = problems(&s);
        assert_eq!(found.len(), 4, "{found:#?}");
        for (problem, field) in found.iter().zip([
            "spec.mediaNode.image",
            "spec.turn.image",
            "spec.turn.relayPortRange",
            "spec.mediaNode.udpPort",
        ]) {
            assert!(problem.contains(field), "{problem} should name {field}");
        }
    }

    #[test]
    fn turn_checks_only_when_enabled() {
        let mut s = spec();
        s.turn.enabled = false;
        s.turn.image = String::new();
        s.turn.port = s.turn.relay_port_range.min;
        assert!(problems(&s).is_empty());
    }
}
