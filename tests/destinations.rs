//! Routes every row of the traffic set in process, on the routing table read
//! from the data files: valid rows get the expected E.164 form and network
//! (portability applied) and an operator of the winning tier; invalid rows
//! are refused as DESTINATION_INVALID.

mod common;

use std::sync::Arc;

use common::traffic::{rows, winning_tier};
use routing_engine::core::clock::ManualClock;
use routing_engine::core::router::{RouteRequest, Router, RouterSettings};
use routing_engine::core::table::RoutingTable;
use routing_engine::source::files::DataDirs;

#[tokio::test]
async fn every_destination_routes_on_its_network() {
    let dirs = DataDirs::discover(&common::repo_root());
    let source = dirs.load().expect("routing data loads").source;
    let router = Router::new(
        Arc::new(ManualClock::at_utc(12, 0)),
        RouterSettings::default(),
    );
    router.install(RoutingTable::build(source.clone()).unwrap());

    let rows = rows();
    let mut checked = 0;
    for row in &rows {
        let req = RouteRequest {
            message_id: format!("line-{}", row.line),
            destination: row.input.clone(),
            destination_region: row.region.clone(),
            sender: "+15551234567".into(),
            ..RouteRequest::default()
        };
        let got = router.route(&req).await;
        if !row.valid {
            let err = got.expect_err(&format!("line {}: {:?} is not valid", row.line, row.input));
            assert_eq!(err.reason(), "DESTINATION_INVALID", "line {}", row.line);
            continue;
        }

        let digits = &row.e164[1..];
        let cc: u16 = row.network.split(':').next().unwrap().parse().unwrap();
        let want = winning_tier(&source, digits, cc, &row.network, 12 * 60);
        match (got, want) {
            (Ok(d), Ok(tier)) => {
                assert_eq!(d.destination_e164, row.e164, "line {}", row.line);
                assert_eq!(
                    d.network.as_deref(),
                    Some(row.network.as_str()),
                    "line {}",
                    row.line
                );
                assert!(
                    tier.contains(&d.operator.id),
                    "line {}: {} not in {tier:?}",
                    row.line,
                    d.operator.id
                );
            }
            (Err(e), Err(reason)) => assert_eq!(e.reason(), reason, "line {}", row.line),
            (got, want) => panic!("line {}: got {got:?}, the rules give {want:?}", row.line),
        }
        checked += 1;
    }
    eprintln!(
        "{checked} valid rows of {} routed as the rules say",
        rows.len()
    );
    assert!(checked > 50);
}
