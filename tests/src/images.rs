//! Conclave's container images as `scripts/images.sh` (`make images`) names and writes them:
//! the references pods use and the archives the local cluster's nodes import.

use std::path::{Path, PathBuf};

/// One of the images `scripts/images.sh` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The operator (`conclave-operator`).
    Operator,
    /// The SFU media node (`media-node`).
    MediaNode,
    /// The TURN relay (coturn from Debian).
    Turn,
    /// The pod sandbox ("pause") image the nodes' containerd uses.
    Pause,
}

impl Image {
    /// Every image, in the order nodes import them.
    pub const ALL: [Image; 4] = [Image::Pause, Image::Operator, Image::MediaNode, Image::Turn];

    /// The image's name in `scripts/images.sh` and its archive's file stem.
    pub fn name(self) -> &'static str {
        match self {
            Image::Operator => "operator",
            Image::MediaNode => "media-node",
            Image::Turn => "turn",
            Image::Pause => "pause",
        }
    }

    /// The repository part of the reference, without the tag.
    pub fn repository(self) -> String {
        format!("localhost/conclave/{}", self.name())
    }

    /// The full reference: `localhost/conclave/<name>:<workspace version>`.
    pub fn reference(self) -> String {
        format!("{}:{}", self.repository(), env!("CARGO_PKG_VERSION"))
    }

    /// The same image under another tag, `<workspace version>-next`, which the local
    /// cluster's nodes also hold: what rollout tests roll a pool to.
    pub fn next_reference(self) -> String {
        format!("{}-next", self.reference())
    }

    /// The archive of this image in `dir` (`target/images/<profile>`).
    pub fn archive(self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.tar", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_versioned_and_local() {
        for image in Image::ALL {
            let reference = image.reference();
            assert!(reference.starts_with("localhost/conclave/"), "{reference}");
            assert!(reference.ends_with(&format!(":{}", env!("CARGO_PKG_VERSION"))));
        }
        assert_eq!(
            Image::MediaNode.archive(Path::new("/t")),
            Path::new("/t/media-node.tar")
        );
    }
}
