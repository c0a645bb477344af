//! Reading the logs the harness writes (control plane, kubelet, containers) back, so a
//! failing test or demo can show what the processes said, and the error for a harness
//! process that ended.

use std::path::Path;
use std::process::Child;

use crate::error::{Context, Error};

/// Fails with `what`'s exit status and the last `lines` lines of its `log` once `child` has
/// exited.
pub fn check_running(child: &mut Child, what: &str, log: &Path, lines: usize) -> Result<(), Error> {
    match child.try_wait() {
        Ok(None) => Ok(()),
        Ok(Some(status)) => Err(Error::Exited {
            what: what.to_owned(),
            status: status.to_string(),
            log: log.to_owned(),
            tail: tail(log, lines),
        }),
        Err(e) => Err(e).context(format!("check whether {what} still runs")),
    }
}

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
        /// The file, removed when the test ends, passed or failed.
        struct Written(std::path::PathBuf);
        impl Drop for Written {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let file =
            Written(std::env::temp_dir().join(format!("testenv-tail-{}", std::process::id())));
        std::fs::write(&file.0, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&file.0, 2), "b\nc");
        assert_eq!(tail(&file.0, 10), "a\nb\nc");
        assert!(tail(Path::new("/nonexistent/x"), 1).contains("cannot be read"));
    }
}
