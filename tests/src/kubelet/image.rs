//! Which local program runs a container image, and with which argv: the image mapping of
//! docs/pod-contract.md. Pure, apart from looking the program up on disk in [`locate`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// A program the harness kubelet knows how to run for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `*/media-node`: the built `media-node` binary.
    MediaNode,
    /// `*/operator`: the built `conclave-operator` binary.
    Operator,
    /// `coturn/coturn`, `*/coturn`: Debian's `turnserver`.
    Turnserver,
    /// `conclave.dev/testenv/http`: the harness's HTTP test server.
    HarnessHttp,
}

impl Program {
    /// The program an image runs, or None for images the harness cannot run.
    pub fn for_image(image: &str) -> Option<Program> {
        let repository = repository(image);
        let last = repository.rsplit('/').next().unwrap_or(repository);
        let has_owner = repository.contains('/');
        match last {
            _ if repository == "conclave.dev/testenv/http" => Some(Program::HarnessHttp),
            "media-node" if has_owner => Some(Program::MediaNode),
            "operator" if has_owner => Some(Program::Operator),
            "coturn" if has_owner => Some(Program::Turnserver),
            _ => None,
        }
    }

    /// The executable's file name.
    pub fn executable(self) -> &'static str {
        match self {
            Program::MediaNode => "media-node",
            Program::Operator => "conclave-operator",
            Program::Turnserver => "turnserver",
            Program::HarnessHttp => "harness-http",
        }
    }

    /// True when the program comes from the system PATH rather than the build directory.
    fn is_system_package(self) -> bool {
        self == Program::Turnserver
    }
}

/// The repository part of an image reference: without digest and tag
/// (`registry:5000/a/b:1.0@sha256:..` → `registry:5000/a/b`).
pub fn repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/');
    match without_digest.rfind(':') {
        Some(colon) if last_slash.is_none_or(|slash| colon > slash) => &without_digest[..colon],
        _ => without_digest,
    }
}

/// Finds the executable of `program`: in `bin_dir` for Conclave's binaries, on `path`
/// (a PATH value) for system packages. The error says how to get the program.
pub fn locate(program: Program, bin_dir: &Path, path: Option<&OsStr>) -> Result<PathBuf, String> {
    let name = program.executable();
    if program.is_system_package() {
        let dirs = path.map(std::env::split_paths).into_iter().flatten();
        return dirs
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .ok_or_else(|| format!("`{name}` is not on PATH: install it with `make deps`"));
    }
    let candidate = bin_dir.join(name);
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} is not built: run `cargo build --workspace --bins` (or set CONCLAVE_BIN_DIR)",
            candidate.display()
        ))
    }
}

/// The arguments the program gets. Without `command` they are the container's args (the
/// image's entrypoint is the program). With `command`, its first word must name the
/// program (the harness has no image file system to run anything else) and the rest
/// precede the args. Both are already `$(VAR)`-expanded.
pub fn argv(program: Program, command: &[String], args: &[String]) -> Result<Vec<String>, String> {
    let Some((first, rest)) = command.split_first() else {
        return Ok(args.to_vec());
    };
    let named = Path::new(first).file_name().and_then(OsStr::to_str);
    if named != Some(program.executable()) {
        return Err(format!(
            "command `{first}` is not this image's program `{}`: the harness kubelet runs only that",
            program.executable()
        ));
    }
    Ok(rest.iter().chain(args).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_images_of_the_pod_contract() {
        let cases = [
            (
                "ghcr.io/conclave/media-node:0.1.0",
                Some(Program::MediaNode),
            ),
            (
                "localhost:5000/conclave/media-node",
                Some(Program::MediaNode),
            ),
            (
                "ghcr.io/conclave-dev/operator:0.1.0",
                Some(Program::Operator),
            ),
            ("coturn/coturn:4.6", Some(Program::Turnserver)),
            (
                "docker.io/coturn/coturn@sha256:abcd",
                Some(Program::Turnserver),
            ),
            (
                "registry.example/mirror/coturn:4",
                Some(Program::Turnserver),
            ),
            ("conclave.dev/testenv/http", Some(Program::HarnessHttp)),
            (
                "conclave.dev/testenv/http:latest",
                Some(Program::HarnessHttp),
            ),
            ("media-node", None),
            ("nginx:1.27", None),
            ("example.com/media-node-extra:1", None),
            ("localhost:5000", None),
        ];
        for (image, want) in cases {
            assert_eq!(Program::for_image(image), want, "{image}");
        }
    }

    #[test]
    fn strips_tag_and_digest_but_not_registry_port() {
        assert_eq!(repository("a/b:1@sha256:ff"), "a/b");
        assert_eq!(repository("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(repository("localhost:5000/a/b:2"), "localhost:5000/a/b");
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn command_must_name_the_program() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let op = Program::Operator;
        assert_eq!(argv(op, &[], &s(&["run"])).unwrap(), s(&["run"]));
        assert_eq!(
            argv(
                op,
                &s(&["/usr/local/bin/conclave-operator", "run"]),
                &s(&["-v"])
            )
            .unwrap(),
            s(&["run", "-v"])
        );
        let refused = argv(op, &s(&["/bin/sh", "-c", "x"]), &[]).unwrap_err();
        assert!(refused.contains("/bin/sh"), "{refused}");
    }

    #[test]
    fn missing_binary_says_how_to_build_it() {
        let err = locate(Program::MediaNode, Path::new("/nonexistent"), None).unwrap_err();
        assert!(
            err.contains("/nonexistent/media-node") && err.contains("cargo build"),
            "{err}"
        );
        let err = locate(
            Program::Turnserver,
            Path::new("/x"),
            Some(OsStr::new("/nonexistent")),
        );
        assert!(err.unwrap_err().contains("make deps"));
    }
}
