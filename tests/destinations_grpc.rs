//! Routes every row of the traffic set through the real service path: the
//! routing table loaded into PostgreSQL and read by the read-only role, ported
//! numbers looked up in PostgreSQL per destination, and each decision asked
//! over a real mutual-TLS gRPC connection. Valid rows get the expected E.164
//! form, network and an operator of the winning tier; invalid rows get
//! INVALID_ARGUMENT with reason DESTINATION_INVALID.

mod common;

use std::sync::Arc;

use futures::stream::{self, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::Code;
use tonic_types::StatusExt;

use common::traffic::{rows, winning_tier, Row};
use common::{repo_root, TestDb};
use routing_engine::adapters::postgres::PgStore;
use routing_engine::core::clock::ManualClock;
use routing_engine::core::model::TableSource;
use routing_engine::core::ports::TableStore;
use routing_engine::core::router::{Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::devmode::DevPki;
use routing_engine::loader::run_load;
use routing_engine::metrics::Metrics;
use routing_engine::proto::routing_engine_client::RoutingEngineClient;
use routing_engine::proto::SelectOperatorRequest;
use routing_engine::server::tls::{self, PemFiles, ServerTls};
use routing_engine::server::Edge;
use routing_engine::source::files::DataDirs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_destination_routes_over_mutual_tls_from_postgres() {
    let db = TestDb::create("traffic_grpc").await;
    let dirs = DataDirs::discover(&repo_root());
    if !dirs.shared {
        eprintln!("../shared/data is absent: loading the sample table instead");
    }
    run_load(&db.admin_url(), &dirs.carrier, &dirs.routing)
        .await
        .unwrap();

    // The reference reads the table as the files hold it, ported numbers too.
    let files = dirs.load().unwrap().source;
    let store = PgStore::new(db.read_only_pool_sized(8).await).without_ported_in_snapshot();
    let table = RoutingTable::build(store.load().await.unwrap()).unwrap();
    assert_eq!(
        table.ported_count(),
        0,
        "ported numbers must be looked up per destination"
    );

    let clock = Arc::new(ManualClock::at_utc(12, 0));
    // This test is about answers, not latency: a lookup that outlived the
    // production timeout on a loaded debug build would fall back to the
    // prefix network and say so, which is right but not what is checked here.
    let settings = RouterSettings {
        store_lookup_timeout: std::time::Duration::from_secs(5),
        ..RouterSettings::default()
    };
    let router = Router::new(clock, settings).with_store(Arc::new(store));
    let metrics = Arc::new(Metrics::new().unwrap());
    let edge = Edge::new(Arc::new(router), metrics.clone()).await;
    edge.install(table).await;

    let pki = DevPki::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server_tls = ServerTls::new(&PemFiles {
        cert: pki.server_cert.clone().into_bytes(),
        key: pki.server_key.clone().into_bytes(),
        ca: pki.ca_cert.clone().into_bytes(),
    })
    .unwrap();
    let (_stop, stopped) = watch::channel(false);
    let until = async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|s| *s).await;
    };
    let routes = edge.grpc_routes().unwrap();
    tokio::spawn(tls::serve(
        listener,
        Arc::new(server_tls),
        routes,
        metrics,
        until,
    ));

    let client_files = PemFiles {
        cert: pki.client_cert.clone().into_bytes(),
        key: pki.client_key.clone().into_bytes(),
        ca: pki.ca_cert.clone().into_bytes(),
    };
    let channel = tls::client_channel(&url, &client_files).await.unwrap();
    let client = RoutingEngineClient::new(channel);

    let rows = rows();
    let checked = stream::iter(rows.iter().cloned())
        .map(|row| check(client.clone(), &files, row))
        .buffer_unordered(16)
        .fold(0usize, |n, valid| async move { n + usize::from(valid) })
        .await;
    eprintln!(
        "{checked} valid rows of {} routed over mutual TLS as the rules say",
        rows.len()
    );
    assert!(checked > 50);
}

/// Asks for one row's decision and checks it; returns whether it was valid.
async fn check(
    mut client: RoutingEngineClient<tonic::transport::Channel>,
    files: &TableSource,
    row: Row,
) -> bool {
    let request = SelectOperatorRequest {
        message_id: format!("line-{}", row.line),
        destination: row.input.clone(),
        destination_region: row.region.clone(),
        sender: "+15551234567".into(),
        ..SelectOperatorRequest::default()
    };
    let got = client.select_operator(request).await;
    let line = row.line;

    if !row.valid {
        let status = got.expect_err(&format!("line {line}: {:?} is not valid", row.input));
        assert_eq!(status.code(), Code::InvalidArgument, "line {line}");
        let reason = status.get_details_error_info().map(|i| i.reason);
        assert_eq!(
            reason.as_deref(),
            Some("DESTINATION_INVALID"),
            "line {line}"
        );
        return false;
    }

    let cc: u16 = row.network.split(':').next().unwrap().parse().unwrap();
    let want = winning_tier(files, &row.e164[1..], cc, &row.network, 12 * 60);
    match (got, want) {
        (Ok(response), Ok(tier)) => {
            let d = response.into_inner();
            assert_eq!(d.destination_e164, row.e164, "line {line}");
            assert_eq!(d.network, row.network, "line {line} ({})", d.network_source);
            let operator = d
                .operator
                .expect("a decision names its operator")
                .operator_id;
            assert!(
                tier.contains(&operator),
                "line {line}: {operator} not in {tier:?}"
            );
        }
        (Err(status), Err(reason)) => {
            let got = status.get_details_error_info().map(|i| i.reason);
            assert_eq!(got.as_deref(), Some(reason), "line {line}");
        }
        (got, want) => panic!("line {line}: got {got:?}, the rules give {want:?}"),
    }
    true
}
