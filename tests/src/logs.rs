//! Reading the logs the harness writes (control plane, kubelet, containers) back, so a
//! failing test or demo can show what the processes said.

use std::path::Path;

/// The last `lines` lines of the file at `path`, or a note saying it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} cannot be read: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let path = std::env::temp_dir().join(format!("testenv-tail-{}", std::process::id()));
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        assert!(tail(Path::new("/nonexistent/x"), 1).contains("cannot be read"));
    }
}
