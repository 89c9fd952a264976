//! Compiles the descriptor set weft decodes xDS resources with: Envoy's
//! API protos for every resource and extension weft reads, from the
//! `proto/` directory the `envoy-types` crate ships (so the protos come
//! from the registry, pinned with it, and are not copied into this repo).

use std::path::{Path, PathBuf};

/// Must match the `envoy-types` requirement in Cargo.toml.
const ENVOY_TYPES: &str = "envoy-types-0.7.7";

/// Top-level files; their imports come along.
const FILES: &[&str] = &[
    "envoy/config/bootstrap/v3/bootstrap.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/fault/v3/fault.proto",
    "envoy/extensions/filters/http/cors/v3/cors.proto",
    "envoy/extensions/filters/http/rbac/v3/rbac.proto",
    "envoy/extensions/filters/network/rbac/v3/rbac.proto",
    "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
    "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
    "envoy/extensions/filters/listener/original_dst/v3/original_dst.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/extensions/filters/listener/http_inspector/v3/http_inspector.proto",
    "envoy/extensions/access_loggers/file/v3/file.proto",
    "envoy/extensions/access_loggers/stream/v3/stream.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
    "envoy/service/discovery/v3/discovery.proto",
];

/// Compiled on their own: their relative type names (`common.ratelimit.v3...`)
/// would resolve into `envoy.extensions.filters.common` once fault.proto's
/// imports are in the same compilation.
const SEPARATE: &[&str] =
    &["envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto"];

/// Istio's filters' settings, from this crate's `proto/` directory.
const ISTIO: &[&str] = &["istio/stats.proto", "istio/peer_metadata.proto"];

/// Where the protos import from, relative to `proto/`.
const INCLUDES: &[&str] = &[
    "data-plane-api",
    "xds",
    "protoc-gen-validate",
    "googleapis",
    "cel-spec/proto",
    "opentelemetry-proto",
    "client_model",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WEFT_ENVOY_PROTO");
    let root = find_protos().unwrap_or_else(|| {
        panic!(
            "cannot find {ENVOY_TYPES}/proto in the cargo registry sources; \
             set WEFT_ENVOY_PROTO to that directory"
        )
    });
    let includes: Vec<PathBuf> = INCLUDES.iter().map(|i| root.join(i)).collect();
    let compile = |files: &[&str]| {
        protox::Compiler::new(&includes)
            .and_then(|mut c| {
                c.include_imports(true);
                c.open_files(files)?;
                Ok(c.file_descriptor_set())
            })
            .unwrap_or_else(|e| panic!("compiling Envoy's protos in {}: {e}", root.display()))
    };
    let mut set = compile(FILES);
    for file in compile(SEPARATE).file {
        if !set.file.iter().any(|f| f.name == file.name) {
            set.file.push(file);
        }
    }
    // Istio's own filters' settings, declared in this crate's proto/.
    let own = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("proto");
    println!("cargo:rerun-if-changed={}", own.display());
    let mut with_own = includes.clone();
    with_own.push(own);
    let istio = protox::Compiler::new(&with_own)
        .and_then(|mut c| {
            c.include_imports(true);
            c.open_files(ISTIO)?;
            Ok(c.file_descriptor_set())
        })
        .unwrap_or_else(|e| panic!("compiling weft's Istio protos: {e}"));
    for file in istio.file {
        if !set.file.iter().any(|f| f.name == file.name) {
            set.file.push(file);
        }
    }
    let bytes = prost_reflect::prost::Message::encode_to_vec(&set);
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("envoy.descriptor.bin");
    std::fs::write(&out, bytes).unwrap();
}

fn find_protos() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("WEFT_ENVOY_PROTO") {
        return Some(PathBuf::from(dir));
    }
    let cargo_home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .ok()
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| Path::new(&h).join(".cargo"))
        })?;
    let src = cargo_home.join("registry").join("src");
    std::fs::read_dir(src)
        .ok()?
        .flatten()
        .map(|index| index.path().join(ENVOY_TYPES).join("proto"))
        .find(|p| p.is_dir())
}
