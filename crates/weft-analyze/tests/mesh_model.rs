//! Where the analyzers now read ports and hosts through the shared mesh
//! model (weft_config::mesh) and so as Istio's analyzers and the control
//! plane do; each case shows a finding that changed with it.

mod common;
use common::*;

fn svc(ports: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: db}}\nspec:\n  selector: {{app: db}}\n  ports: [{ports}]\n")
}

#[test]
fn ist0118_follows_the_protocol_istio_reads_from_the_port() {
    // istioctl's port name analyzer reports what kube.ConvertProtocol
    // cannot read: an appProtocol it does not know counts as no protocol.
    expect(
        &svc("{name: data, port: 5432, appProtocol: foo}"),
        &["IST0118 Service default/db"],
    );
    // Kubernetes' own appProtocol values are known.
    expect(
        &svc("{name: data, port: 5432, appProtocol: kubernetes.io/h2c}"),
        &[],
    );
    // UDP ports and the well-known server-first ports (here MySQL's) need
    // no protocol in their name.
    expect(&svc("{name: dns, port: 53, protocol: UDP}"), &[]);
    expect(&svc("{name: database, port: 3306}"), &[]);
    // h2c is not a port name prefix Istio knows (nor is anything else
    // outside its table).
    expect(
        &svc("{name: h2c-api, port: 8080}"),
        &["IST0118 Service default/db"],
    );
}

#[test]
fn a_two_label_host_is_not_a_short_name() {
    // Istio completes only names without dots ("reviews"); `reviews.default`
    // names no Service of the mesh, for the control plane as for Istio.
    let route = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews.default}\n";
    expect(
        &docs(&[REVIEWS_SVC, route]),
        &["IST0101 VirtualService default/reviews"],
    );
    expect(
        &docs(&[REVIEWS_SVC, &route.replace("reviews.default}", "reviews}")]),
        &[],
    );
}
