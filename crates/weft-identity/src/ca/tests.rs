//! The CA's unit tests: what it signs, what it refuses, and where its
//! root comes from.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls_pki_types::CertificateDer;
use weft_testkit::envoy::TempDir;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;

fn csr_with(sans: Vec<SanType>) -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = sans;
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr_for(uri: &str) -> String {
    csr_with(vec![SanType::URI(uri.to_string().try_into().unwrap())])
}

fn self_signed(dir: &Path) -> Ca {
    Ca::open(
        &CaSource::SelfSigned {
            state_dir: dir.to_path_buf(),
        },
        CaOptions::default(),
    )
    .unwrap()
}

fn ders(chain: &[String]) -> Vec<CertificateDer<'static>> {
    chain
        .iter()
        .map(|p| {
            let mut c = x509::nonempty_certs_from_pem("chain", p).unwrap();
            assert_eq!(c.len(), 1, "one certificate per element");
            c.remove(0)
        })
        .collect()
}

/// Each certificate is signed by the next; the last signs itself.
fn assert_chain_verifies(chain: &[CertificateDer<'_>]) {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .map(|c| X509Certificate::from_der(c.as_ref()).unwrap().1)
        .collect();
    for pair in parsed.windows(2) {
        assert_eq!(pair[0].issuer(), pair[1].subject());
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .unwrap();
    }
    let root = parsed.last().unwrap();
    root.verify_signature(None).unwrap();
}

#[test]
fn signs_a_workload_csr_as_istio_does() {
    let dir = TempDir::new("ca");
    let ca = self_signed(&dir.0);
    let id = "spiffe://cluster.local/ns/default/sa/reviews";
    let chain = ca
        .sign_csr(&csr_for(id), &Entitlement::AnyInTrustDomain, None)
        .unwrap();
    assert_eq!(chain.len(), 2, "leaf and root");
    assert_eq!(chain[1], ca.root_pem());
    let chain = ders(&chain);
    assert_chain_verifies(&chain);

    let info = Info::read("leaf", &chain[0]).unwrap();
    assert_eq!(info.uri_sans, vec![id.to_string()]);
    assert!(info.dns_sans.is_empty() && info.ip_sans.is_empty());
    assert!(!info.is_ca);
    assert_eq!(info.lifetime(), DEFAULT_TTL + BACKDATE);
    let now = SystemTime::now();
    assert!(info.not_before <= now && now < info.not_after);

    let (_, leaf) = X509Certificate::from_der(chain[0].as_ref()).unwrap();
    assert!(leaf.subject().iter().next().is_none(), "empty subject");
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(
        san.critical,
        "the SAN is critical when the subject is empty"
    );
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment());
    assert!(!ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let bc = leaf.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);

    // Serials are random.
    let again = ca
        .sign_csr(&csr_for(id), &Entitlement::AnyInTrustDomain, None)
        .unwrap();
    let other = Info::read("leaf", &ders(&again)[0]).unwrap();
    assert_ne!(info.serial, other.serial);
}

#[test]
fn the_requested_lifetime_is_honoured_up_to_the_maximum() {
    let dir = TempDir::new("ca");
    let ca = self_signed(&dir.0);
    let id = "spiffe://cluster.local/ns/default/sa/reviews";
    let chain = ca
        .sign_csr(&csr_for(id), &Entitlement::AnyInTrustDomain, Some(3600))
        .unwrap();
    let info = Info::read("leaf", &ders(&chain)[0]).unwrap();
    assert_eq!(info.lifetime(), Duration::from_secs(3600) + BACKDATE);

    let too_long = MAX_TTL.as_secs() as i64 + 1;
    let e = ca
        .sign_csr(&csr_for(id), &Entitlement::AnyInTrustDomain, Some(too_long))
        .unwrap_err();
    assert!(matches!(e, CaError::BadTtl { .. }), "{e}");
    let e = ca
        .sign_csr(&csr_for(id), &Entitlement::AnyInTrustDomain, Some(-1))
        .unwrap_err();
    assert!(matches!(e, CaError::BadTtl { .. }), "{e}");
}

#[test]
fn refuses_malformed_foreign_and_unentitled_csrs() {
    let dir = TempDir::new("ca");
    let ca = self_signed(&dir.0);
    let any = Entitlement::AnyInTrustDomain;

    for bad in [
        "",
        "hello",
        "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n",
    ] {
        let e = ca.sign_csr(bad, &any, None).unwrap_err();
        assert!(matches!(e, CaError::MalformedCsr(_)), "{bad:?}: {e}");
        assert!(!e.retryable());
    }
    // A certificate is not a request.
    let e = ca.sign_csr(ca.root_pem(), &any, None).unwrap_err();
    assert!(matches!(e, CaError::MalformedCsr(_)), "{e}");

    // A signature that does not verify: one byte of the signature flipped.
    let good = csr_for("spiffe://cluster.local/ns/default/sa/a");
    let mut der = pem::parse(&good).unwrap().into_contents();
    let last = der.len() - 1;
    der[last] ^= 1;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let e = ca.sign_csr(&tampered, &any, None).unwrap_err();
    assert!(matches!(e, CaError::MalformedCsr(_)), "{e}");

    let e = ca
        .sign_csr(&csr_for("spiffe://example.org/ns/default/sa/a"), &any, None)
        .unwrap_err();
    assert!(
        matches!(e, CaError::RefusedCsr(_)) && e.to_string().contains("trust domain"),
        "{e}"
    );
    let e = ca
        .sign_csr(
            &csr_for("https://cluster.local/ns/default/sa/a"),
            &any,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, CaError::RefusedCsr(_)), "{e}");
    let e = ca.sign_csr(&csr_with(vec![]), &any, None).unwrap_err();
    assert!(matches!(e, CaError::RefusedCsr(_)), "{e}");
    let e = ca
        .sign_csr(
            &csr_with(vec![
                SanType::URI("spiffe://cluster.local/ns/default/sa/a".try_into().unwrap()),
                SanType::DnsName("istiod.istio-system.svc".try_into().unwrap()),
            ]),
            &any,
            None,
        )
        .unwrap_err();
    assert!(
        matches!(e, CaError::RefusedCsr(_)) && e.to_string().contains("istiod"),
        "{e}"
    );

    let only = Entitlement::Only(vec![Identity::in_cluster_local("default", "a").unwrap()]);
    ca.sign_csr(
        &csr_for("spiffe://cluster.local/ns/default/sa/a"),
        &only,
        None,
    )
    .unwrap();
    let e = ca
        .sign_csr(
            &csr_for("spiffe://cluster.local/ns/default/sa/b"),
            &only,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, CaError::NotEntitled { .. }), "{e}");
}

#[test]
fn the_self_signed_root_is_kept_in_the_state_directory() {
    let dir = TempDir::new("ca");
    let state = dir.0.join("state");
    let first = self_signed(&state);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join(ROOT_KEY_FILE)), 0o600);
    assert_eq!(mode(&state), 0o700);

    let root = Info::read("root", first.root()).unwrap();
    assert!(root.is_ca);
    let ten_years = ROOT_TTL + BACKDATE;
    assert_eq!(root.lifetime(), ten_years);
    assert!(root.subject.contains("O=cluster.local"), "{}", root.subject);

    // A restart signs with the same root.
    let second = self_signed(&state);
    assert_eq!(first.root_pem(), second.root_pem());
    let chain = second
        .sign_csr(
            &csr_for("spiffe://cluster.local/ns/default/sa/a"),
            &Entitlement::AnyInTrustDomain,
            None,
        )
        .unwrap();
    assert_eq!(chain.last().unwrap(), first.root_pem());
    assert_chain_verifies(&ders(&chain));

    // A key others can read is refused; so is half a root.
    std::fs::set_permissions(
        state.join(ROOT_KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = Ca::open(
        &CaSource::SelfSigned {
            state_dir: state.clone(),
        },
        CaOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::remove_file(state.join(ROOT_KEY_FILE)).unwrap();
    let e = Ca::open(
        &CaSource::SelfSigned { state_dir: state },
        CaOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("is missing"), "{e}");
}

/// A root and an intermediate made as an operator would, written in
/// Istio's `cacerts` layout.
struct Cacerts {
    root_pem: String,
    intermediate_pem: String,
}

fn write_cacerts(dir: &Path, chain_with_root: bool) -> Cacerts {
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut root_params = CertificateParams::default();
    root_params.distinguished_name = ca_name("example.org", "shared root");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);

    let int_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut int_params = CertificateParams::default();
    int_params.distinguished_name = ca_name("cluster.local", "cluster-1 intermediate");
    int_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();

    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), int.pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), int_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("root-cert.pem"), root.pem()).unwrap();
    let chain = if chain_with_root {
        format!("{}{}", int.pem(), root.pem())
    } else {
        int.pem()
    };
    std::fs::write(dir.join("cert-chain.pem"), chain).unwrap();
    Cacerts {
        root_pem: root.pem(),
        intermediate_pem: int.pem(),
    }
}

#[test]
fn plug_in_cacerts_sign_chains_that_end_at_the_shared_root() {
    let dir = TempDir::new("cacerts");
    for with_root in [false, true] {
        let cacerts = dir.0.join(format!("cacerts-{with_root}"));
        let made = write_cacerts(&cacerts, with_root);
        let ca = Ca::open(&CaSource::Plugin { cacerts }, CaOptions::default()).unwrap();
        let same = |a: &str, b: &str| {
            x509::nonempty_certs_from_pem("a", a).unwrap()
                == x509::nonempty_certs_from_pem("b", b).unwrap()
        };
        assert!(same(ca.root_pem(), &made.root_pem));
        let chain = ca
            .sign_csr(
                &csr_for("spiffe://cluster.local/ns/default/sa/a"),
                &Entitlement::AnyInTrustDomain,
                None,
            )
            .unwrap();
        assert_eq!(chain.len(), 3, "leaf, intermediate, root (root sent once)");
        assert!(same(&chain[1], &made.intermediate_pem));
        assert!(same(&chain[2], &made.root_pem));
        assert_chain_verifies(&ders(&chain));
    }
}

#[test]
fn bad_cacerts_are_refused_with_the_file_named() {
    let dir = TempDir::new("cacerts");
    let a = dir.0.join("a");
    let b = dir.0.join("b");
    write_cacerts(&a, false);
    write_cacerts(&b, false);
    let open = |d: &Path| {
        Ca::open(
            &CaSource::Plugin { cacerts: d.into() },
            CaOptions::default(),
        )
    };

    // A key that is not the certificate's.
    std::fs::copy(b.join("ca-key.pem"), a.join("ca-key.pem")).unwrap();
    let e = open(&a).unwrap_err();
    assert!(
        e.to_string().contains("ca-cert.pem") && e.to_string().contains("does not belong"),
        "{e}"
    );

    // An intermediate of another root.
    write_cacerts(&a, false);
    std::fs::copy(b.join("root-cert.pem"), a.join("root-cert.pem")).unwrap();
    let e = open(&a).unwrap_err();
    assert!(e.to_string().contains("cert-chain.pem"), "{e}");

    // A key in a form rcgen on ring cannot read is named with the fix.
    write_cacerts(&a, false);
    let pkcs8 = std::fs::read_to_string(a.join("ca-key.pem")).unwrap();
    let der = pem::parse(&pkcs8).unwrap().into_contents();
    std::fs::write(
        a.join("ca-key.pem"),
        pem::encode(&pem::Pem::new("EC PRIVATE KEY", der)),
    )
    .unwrap();
    let e = open(&a).unwrap_err();
    assert!(e.to_string().contains("openssl pkcs8 -topk8"), "{e}");

    // A missing file.
    write_cacerts(&a, false);
    std::fs::remove_file(a.join("root-cert.pem")).unwrap();
    let e = open(&a).unwrap_err();
    assert!(e.to_string().contains("root-cert.pem"), "{e}");
    assert!(e.retryable());
}

#[test]
fn the_serving_certificate_names_istiod() {
    let dir = TempDir::new("ca");
    let ca = self_signed(&dir.0);
    let mut names = ServingNames::default();
    names.dns.push("weft.example".into());
    let issued = ca.issue_serving(&names, DEFAULT_TTL).unwrap();
    assert_eq!(issued.chain.len(), 2);
    let info = Info::read("serving", &issued.chain[0]).unwrap();
    assert!(info
        .dns_sans
        .contains(&"istiod.istio-system.svc".to_string()));
    assert!(info.dns_sans.contains(&"weft.example".to_string()));
    assert!(info.ip_sans.contains(&[127, 0, 0, 1].into()));
    assert_eq!(
        info.uri_sans,
        vec!["spiffe://cluster.local/ns/istio-system/sa/istiod".to_string()]
    );
    assert_chain_verifies(&issued.chain);
}
