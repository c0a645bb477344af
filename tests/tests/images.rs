//! Conclave's image archives against their Dockerfiles, with no cluster: `scripts/images.sh`
//! builds the archives from the debug binaries, and each must name its reference, carry the
//! config the final stage of `images/<image>/Dockerfile` declares, and hold its program with
//! every shared library it loads, the non-root user and no shell.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

const IMAGES: [&str; 4] = ["operator", "media-node", "turn", "pause"];
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn operator_image() {
    check("operator");
}

#[test]
fn media_node_image() {
    check("media-node");
}

#[test]
fn turn_image() {
    check("turn");
}

#[test]
fn pause_image() {
    check("pause");
}

/// The repository root, whose direct child `tests/` is.
fn repo() -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests.parent().unwrap_or(tests).to_path_buf()
}

/// The archives' directory and the commit checked out when they were built, once for all
/// tests of this file.
fn archives() -> &'static Result<(PathBuf, String), String> {
    static OUT: OnceLock<Result<(PathBuf, String), String>> = OnceLock::new();
    OUT.get_or_init(|| {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or(repo().join("target"), PathBuf::from);
        let out = repo().join(target).join("images/debug");
        // Read before the script reads it: commits may land while the binaries build.
        let head = head();
        let status = Command::new("bash")
            .arg(repo().join("scripts/images.sh"))
            .args(["--profile", "debug", "--out"])
            .arg(&out)
            .args(IMAGES)
            .current_dir(repo())
            .status()
            .map_err(|e| format!("cannot run scripts/images.sh: {e}"))?;
        if status.success() {
            Ok((out, head))
        } else {
            Err(format!("scripts/images.sh failed: {status}"))
        }
    })
}

/// Unpacks `<image>.tar` and fails with every way it differs from its Dockerfile.
fn check(image: &str) {
    let (out, head) = archives().as_ref().unwrap_or_else(|e| panic!("{e}"));
    let dir = out.join(format!(".check-{image}"));
    let _ = fs::remove_dir_all(&dir);
    let (layout, rootfs) = (dir.join("layout"), dir.join("rootfs"));
    let problems = unpack(&out.join(format!("{image}.tar")), &layout, &rootfs)
        .and_then(|(index, manifest, config)| {
            let dockerfile = format!("images/{image}/Dockerfile");
            let text = fs::read_to_string(repo().join(&dockerfile))
                .map_err(|e| format!("cannot read {dockerfile}: {e}"))?;
            let labelled = &config["config"]["Labels"]["org.opencontainers.image.revision"];
            let revision = match labelled.as_str() {
                Some(l) if l == format!("{head}-dirty") => l.to_owned(),
                _ => head.clone(),
            };
            let declared = Declared::parse(&text, &revision)?;
            let mut problems =
                differences(image, &dockerfile, &declared, &index, &manifest, &config);
            problems.extend(contents(image, &declared, &rootfs));
            Ok(problems)
        })
        .unwrap_or_else(|e| vec![e]);
    let _ = fs::remove_dir_all(&dir);
    assert!(
        problems.is_empty(),
        "image {image}:\n  {}",
        problems.join("\n  ")
    );
}

/// Extracts the archive's layout and its layers; its index, manifest and config.
fn unpack(archive: &Path, layout: &Path, rootfs: &Path) -> Result<(Value, Value, Value), String> {
    let tar = |file: &Path, into: &Path| -> Result<(), String> {
        fs::create_dir_all(into).map_err(|e| format!("cannot create {}: {e}", into.display()))?;
        let done = Command::new("tar")
            .arg("-xf")
            .arg(file)
            .arg("-C")
            .arg(into)
            .output();
        match done {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(format!(
                "tar -xf {}: {}",
                file.display(),
                String::from_utf8_lossy(&o.stderr)
            )),
            Err(e) => Err(format!("cannot run tar: {e}")),
        }
    };
    let blob = |digest: &Value| {
        layout
            .join("blobs/sha256")
            .join(digest.as_str().unwrap_or("").trim_start_matches("sha256:"))
    };
    let json = |path: &Path| -> Result<Value, String> {
        let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    };
    tar(archive, layout)?;
    let index = json(&layout.join("index.json"))?;
    let manifest = json(&blob(&index["manifests"][0]["digest"]))?;
    let config = json(&blob(&manifest["config"]["digest"]))?;
    for layer in manifest["layers"].as_array().into_iter().flatten() {
        tar(&blob(&layer["digest"]), rootfs)?;
    }
    Ok((index, manifest, config))
}

/// The commit checked out, as `scripts/images.sh` labels images (without `-dirty`).
fn head() -> String {
    let git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo())
        .output();
    match git {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// What the final stage of a Dockerfile declares, with its ARGs as `scripts/images.sh` sets them.
#[derive(Debug, Default)]
struct Declared {
    user: String,
    working_dir: String,
    env: Vec<String>,
    entrypoint: Vec<String>,
    labels: BTreeMap<String, String>,
    /// ARG defaults, as written.
    defaults: BTreeMap<String, String>,
}

impl Declared {
    fn parse(dockerfile: &str, revision: &str) -> Result<Self, String> {
        let joined = dockerfile.replace("\\\n", "");
        let lines: Vec<&str> = joined.lines().map(str::trim).collect();
        let from = lines
            .iter()
            .rposition(|l| l.to_uppercase().starts_with("FROM "));
        let mut d = Declared::default();
        let unquote = |s: &str| {
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(s)
                .to_owned()
        };
        for &line in &lines[from.map_or(0, |i| i + 1)..] {
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let expand = |s: &str| {
                s.replace("${VERSION}", VERSION)
                    .replace("${REVISION}", revision)
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            match instruction.to_uppercase().as_str() {
                "" | "COPY" => {}
                _ if instruction.starts_with('#') => {}
                "ARG" => {
                    d.defaults.insert(key.to_owned(), unquote(value));
                }
                "USER" => d.user = expand(rest),
                "WORKDIR" => d.working_dir = expand(rest),
                "ENV" => d.env.push(format!("{key}={}", expand(&unquote(value)))),
                "LABEL" => {
                    d.labels.insert(key.to_owned(), expand(&unquote(value)));
                }
                "ENTRYPOINT" => {
                    d.entrypoint = serde_json::from_str(rest)
                        .map_err(|e| format!("ENTRYPOINT {rest} is not a JSON array: {e}"))?
                }
                other => {
                    return Err(format!(
                        "{other} in the final stage: scripts/images.sh ignores it"
                    ));
                }
            }
        }
        Ok(d)
    }
}

/// How the archive's names, config and annotations differ from the Dockerfile and the workspace.
fn differences(
    image: &str,
    dockerfile: &str,
    d: &Declared,
    index: &Value,
    manifest: &Value,
    config: &Value,
) -> Vec<String> {
    let reference = format!("localhost/conclave/{image}:{VERSION}");
    let labels: Value = json!(d.labels);
    let c = &config["config"];
    let annotations = &index["manifests"][0]["annotations"];
    let expected = [
        (
            "index.json manifests",
            json!(index["manifests"].as_array().map(Vec::len)),
            json!(1),
        ),
        (
            "io.containerd.image.name",
            annotations["io.containerd.image.name"].clone(),
            json!(reference),
        ),
        (
            "org.opencontainers.image.ref.name",
            annotations["org.opencontainers.image.ref.name"].clone(),
            json!(reference),
        ),
        ("config User", c["User"].clone(), json!(d.user)),
        (
            "config Entrypoint",
            c["Entrypoint"].clone(),
            json!(d.entrypoint),
        ),
        (
            "config WorkingDir",
            c["WorkingDir"].clone(),
            json!(d.working_dir),
        ),
        ("config Env", c["Env"].clone(), json!(d.env)),
        ("config Labels", c["Labels"].clone(), labels.clone()),
        (
            "manifest annotations",
            manifest["annotations"].clone(),
            labels,
        ),
        (
            "ARG VERSION default",
            json!(d.defaults.get("VERSION")),
            json!(VERSION),
        ),
        (
            "licenses label",
            json!(d.labels.get("org.opencontainers.image.licenses")),
            json!(env!("CARGO_PKG_LICENSE")),
        ),
    ];
    expected
        .into_iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| {
            format!("{what} is {got}, should be {want} (by {dockerfile} and Cargo.toml)")
        })
        .collect()
}

/// What is missing from, or should not be in, the image's files.
fn contents(image: &str, d: &Declared, rootfs: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // The entrypoint's programs: the first, and any absolute path after it (the relay's
    // `tini -- turnserver`).
    let programs: Vec<&String> = d
        .entrypoint
        .iter()
        .enumerate()
        .filter(|(i, p)| *i == 0 || p.starts_with('/'))
        .map(|(_, p)| p)
        .collect();
    if programs.is_empty() {
        return vec!["the Dockerfile declares no ENTRYPOINT".to_owned()];
    }
    let uid = d.user.split(':').next().unwrap_or_default();
    let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    if image != "pause" && !passwd.lines().any(|l| l.split(':').nth(2) == Some(uid)) {
        problems.push(format!("/etc/passwd has no user with uid {uid}"));
    }
    if fs::symlink_metadata(rootfs.join("bin/sh")).is_ok() {
        problems.push("/bin/sh is in the image".to_owned());
    }
    for program in programs {
        problems.extend(program_problems(program, rootfs));
    }
    problems
}

/// Why `program` would not start in the image: missing, not executable, or a library the
/// image lacks.
fn program_problems(program: &str, rootfs: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let binary = rootfs.join(program.trim_start_matches('/'));
    match fs::metadata(&binary) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        _ => problems.push(format!("{program} is not an executable file in the image")),
    }
    // ldd resolves the libraries on this machine; the image must hold them at the same paths.
    let ldd = Command::new("ldd").arg(&binary).output();
    let ldd = ldd
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in ldd.lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        match path {
            _ if line.contains("not found") => problems.push(format!("ldd: {}", line.trim())),
            Some(lib) if !rootfs.join(lib.trim_start_matches('/')).exists() => {
                problems.push(format!("{program} loads {lib}, which the image lacks"))
            }
            _ => {}
        }
    }
    problems
}
