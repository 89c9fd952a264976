//! What the local-mesh tests share: the repository, and a copy of the
//! Bookinfo example with its gateway ports moved.

use std::path::{Path, PathBuf};

use weft_testkit::envoy::free_port;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The example directory, with the gateway moved to `gw_port` and its
/// HTTPS server to a free port, so a test does not depend on 8080 or
/// 8443 being free.
pub fn example_copy(dir: &Path, gw_port: u16) {
    for e in std::fs::read_dir(repo().join("examples/bookinfo")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .replace("number: 8080", &format!("number: {gw_port}"))
            .replace("number: 8443", &format!("number: {}", free_port()));
        std::fs::write(dir.join(p.file_name().unwrap()), text).unwrap();
    }
}
