//! Several server processes on one Postgres (issue: scale-out): real `lianxin-node` processes
//! on loopback, real devices (the SDK) spread over them, a load balancer in front where a test
//! needs devices to move. What a user would check: every device ends with the same documents
//! as the database, an order has one assignee, and nothing a device saw acknowledged is lost
//! when a node dies or the database restarts.

use std::collections::BTreeSet;
use std::time::Duration;

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use lianxin_client::{Client, ClientConfig, DocumentId};
use lianxin_protocol::domain::AreaPath;
use lianxin_protocol::domain::builders::{self, Common};
use lianxin_protocol::domain::order_flow::read_assignee;
use lianxin_tests::cluster::{Balancer, Cluster, PrivatePostgres};
use lianxin_tests::until;

use crate::field::{am, claim, place_order};

const NODE: &str = env!("CARGO_BIN_EXE_lianxin-node");
const WAIT: Duration = Duration::from_secs(30);
const GRID: &str = "/city/street-1/community-1/grid-a";

/// A device of `user` connected to `url`.
async fn device(cluster: &Cluster, user: &str, role: &str, url: &str) -> Client {
    let client = Client::in_memory(ClientConfig::default()).await.unwrap();
    let token = cluster
        .token_as(user, &format!("{user}-phone"), role, GRID)
        .await;
    client.connect(url, &token).await.unwrap();
    client
}

/// `n` secretaries `sec-0`…, the i-th connected to `url(i)`.
async fn secretaries(cluster: &Cluster, n: usize, url: impl Fn(usize) -> String) -> Vec<Client> {
    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        devices.push(device(cluster, &format!("sec-{i}"), "secretary", &url(i)).await);
    }
    devices
}

/// A document with the key `created`, made on the first of `devices`, stored by the server
/// and fetched by every other one.
async fn shared_doc(devices: &[&Client]) -> DocumentId {
    let doc = devices[0]
        .create(|tx| tx.put(automerge::ROOT, "created", 1).map(|_| ()))
        .await
        .unwrap();
    devices[0].wait_synced(doc, WAIT).await.unwrap();
    for device in &devices[1..] {
        device.fetch(doc, WAIT).await.unwrap();
    }
    doc
}

/// The keys of the document's root map, on a device.
fn keys_on(client: &Client, doc: DocumentId) -> BTreeSet<String> {
    client
        .read(doc, |d| d.keys(automerge::ROOT).collect())
        .unwrap_or_default()
}

/// Waits until every device and the database hold each of `docs` with the same heads, and the
/// database has every key in `expected` (document → keys).
async fn converged(
    cluster: &Cluster,
    devices: &[&Client],
    expected: &[(DocumentId, BTreeSet<String>)],
) {
    until(WAIT, || async {
        for (doc, keys) in expected {
            let stored = cluster
                .stored_doc(*doc)
                .await
                .ok_or(format!("{doc} not stored"))?;
            let stored_keys: BTreeSet<String> = stored.keys(automerge::ROOT).collect();
            if !keys.is_subset(&stored_keys) {
                let missing: Vec<_> = keys.difference(&stored_keys).collect();
                return Err(format!("{doc}: the database lacks {missing:?}"));
            }
            let mut heads = stored.get_heads();
            heads.sort();
            for (i, device) in devices.iter().enumerate() {
                let mut theirs = device.heads(*doc).unwrap_or_default();
                theirs.sort();
                if theirs != heads {
                    let _ = device.wait_synced(*doc, Duration::from_millis(50)).await;
                    return Err(format!(
                        "{doc}: device {i} has {:?}, the database {heads:?}; device keys {:?}",
                        theirs,
                        keys_on(device, *doc).len()
                    ));
                }
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_an_order_gets_exactly_one_assignee() {
    let cluster = Cluster::start(NODE, 3, true).await;

    // Six secretaries, two on each node, edit the same five documents at the same time.
    let devices = secretaries(&cluster, 6, |i| cluster.ws_url(i % 3)).await;
    let all: Vec<&Client> = devices.iter().collect();
    let mut docs = Vec::new();
    for _ in 0..5 {
        docs.push(shared_doc(&all).await);
    }
    let edits = futures_util::future::join_all(devices.iter().enumerate().map(|(i, device)| {
        let docs = docs.clone();
        async move {
            let mut made = Vec::new();
            for k in 0..12usize {
                let doc = docs[(i * 7 + k * 3) % docs.len()];
                let key = format!("sec-{i}-{k}");
                device
                    .change(doc, |tx| {
                        tx.put(automerge::ROOT, &key, k as i64).map(|_| ())
                    })
                    .await
                    .unwrap();
                made.push((doc, key));
                if k % 4 == 3 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            made
        }
    }))
    .await;
    let expected: Vec<(DocumentId, BTreeSet<String>)> = docs
        .iter()
        .map(|doc| {
            let mut keys: BTreeSet<String> = edits
                .iter()
                .flatten()
                .filter(|(d, _)| d == doc)
                .map(|(_, k)| k.clone())
                .collect();
            keys.insert("created".into());
            (*doc, keys)
        })
        .collect();
    converged(&cluster, &devices.iter().collect::<Vec<_>>(), &expected).await;
    // The nodes heard each other: each took in the others' changes from announcements.
    for i in 0..3 {
        assert!(
            cluster.metric(i, "lianxin_announcements_total").await > 0.0,
            "node {i} heard no announcement"
        );
    }

    // An order, and six volunteers on three nodes tapping "take" at the same moment.
    let grid = device(&cluster, "grid-w", "grid_worker", &cluster.ws_url(0)).await;
    let order = place_order(&grid, GRID, "grid-w").await;
    let mut volunteers = Vec::new();
    for i in 0..6 {
        let v = device(
            &cluster,
            &format!("vol-{i}"),
            "volunteer",
            &cluster.ws_url(i % 3),
        )
        .await;
        v.fetch(order, WAIT).await.unwrap();
        volunteers.push(v);
    }
    futures_util::future::join_all(volunteers.iter().enumerate().map(|(i, v)| async move {
        claim(v, order, &format!("vol-{i}"), 1_763_000_000_000 + i as i64).await
    }))
    .await;
    let everyone: Vec<Client> = volunteers.into_iter().chain([grid]).collect();
    // Every claim stored, and one assignee: the volunteer whose claim the database stored
    // first, everywhere.
    until(WAIT, || async {
        let stored = cluster.stored_doc(order).await.ok_or("order not stored")?;
        let claims = lianxin_protocol::domain::read_claims(&stored).map_err(|e| e.to_string())?;
        if claims.len() != 6 {
            return Err(format!("{} claims stored", claims.len()));
        }
        let arrival = cluster
            .store
            .claim_arrivals(&order)
            .await
            .map_err(|e| e.to_string())?;
        let assignee = read_assignee(&stored)
            .map_err(|e| e.to_string())?
            .ok_or("no assignee yet")?;
        if arrival.first() != Some(&assignee) {
            return Err(format!("assignee {assignee}, claims arrived {arrival:?}"));
        }
        for (i, device) in everyone.iter().enumerate() {
            let seen = device.read(order, |d| read_assignee(d).unwrap()).unwrap();
            if seen.as_deref() != Some(assignee.as_str()) {
                let _ = device.wait_synced(order, Duration::from_millis(50)).await;
                return Err(format!("device {i} sees {seen:?}, not {assignee}"));
            }
        }
        Ok(())
    })
    .await;
    // Exactly one assignment was ever written: no concurrent values of `assignee`.
    let stored = cluster.stored_doc(order).await.unwrap();
    let written = stored.get_all(automerge::ROOT, "assignee").unwrap();
    assert_eq!(written.len(), 1, "assignments: {written:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_sync_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(NODE, 3, true).await;
    let balancer = Balancer::start(cluster.addrs()).await;
    // Six devices through the balancer: two land on each node.
    let devices = secretaries(&cluster, 6, |_| balancer.ws_url()).await;
    let shared = shared_doc(&devices.iter().collect::<Vec<_>>()).await;
    let before: Vec<usize> = balancer
        .counts
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert!(before[0] >= 1, "nobody is on node 0: {before:?}");

    // Everyone edits the shared document and documents of their own, waiting for each
    // acknowledgement; node 0 is killed while they do.
    let stop = tokio_util::sync::CancellationToken::new();
    let work = futures_util::future::join_all(devices.iter().enumerate().map(|(i, device)| {
        let stop = stop.clone();
        async move {
            let mut acknowledged: Vec<(DocumentId, String)> = Vec::new();
            let mut written: Vec<(DocumentId, String)> = Vec::new();
            let own = device
                .create(|tx| tx.put(automerge::ROOT, "owner", i as i64).map(|_| ()))
                .await
                .unwrap();
            written.push((own, "owner".into()));
            let mut k = 0;
            while !stop.is_cancelled() || k < 20 {
                let doc = if k % 2 == 0 { shared } else { own };
                let key = format!("sec-{i}-{k}");
                device
                    .change(doc, |tx| tx.put(automerge::ROOT, &key, k).map(|_| ()))
                    .await
                    .unwrap();
                written.push((doc, key.clone()));
                if device
                    .wait_synced(doc, Duration::from_millis(500))
                    .await
                    .is_ok()
                {
                    acknowledged.extend(written.iter().filter(|(d, _)| *d == doc).cloned());
                }
                k += 1;
                if k > 200 {
                    break;
                }
            }
            (own, acknowledged, written)
        }
    }));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cluster.kill(0);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
    };
    let (results, ()) = tokio::join!(work, killer);

    // Everything acknowledged, and everything written, is in the database and on every device
    // that holds the document.
    let mut expected: Vec<(DocumentId, BTreeSet<String>)> = Vec::new();
    let mut acked = 0;
    for (_, acknowledged, written) in &results {
        acked += acknowledged.len();
        for (doc, key) in written {
            match expected.iter_mut().find(|(d, _)| d == doc) {
                Some((_, keys)) => {
                    keys.insert(key.clone());
                }
                None => expected.push((*doc, BTreeSet::from([key.clone()]))),
            }
        }
    }
    assert!(acked > 0, "nothing was acknowledged at all");
    let shared_only: Vec<_> = expected
        .iter()
        .filter(|(d, _)| *d == shared)
        .cloned()
        .collect();
    converged(&cluster, &devices.iter().collect::<Vec<_>>(), &shared_only).await;
    for (i, (own, _, _)) in results.iter().enumerate() {
        let mine: Vec<_> = expected.iter().filter(|(d, _)| d == own).cloned().collect();
        converged(&cluster, &[&devices[i]], &mine).await;
    }
    for (_, acknowledged, _) in &results {
        for (doc, key) in acknowledged {
            let stored = cluster.stored_doc(*doc).await.unwrap();
            assert!(
                stored.get(automerge::ROOT, key.as_str()).unwrap().is_some(),
                "acknowledged {key} on {doc} is lost"
            );
        }
    }
    // The killed node's devices reconnected, to the other nodes.
    let after: Vec<usize> = balancer
        .counts
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert_eq!(after[0], before[0], "nothing can reach a dead node");
    assert!(
        after[1] + after[2] >= before[1] + before[2] + before[0],
        "devices of node 0 did not move: {before:?} -> {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_recover_by_themselves_when_the_database_restarts() {
    let pg = PrivatePostgres::start()
        .expect("Postgres server binaries (initdb, pg_ctl) are needed; scripts/test installs them");
    let cluster = Cluster::start_on(NODE, pg.database().await, 2, true).await;
    let a = device(&cluster, "sec-a", "secretary", &cluster.ws_url(0)).await;
    let b = device(&cluster, "sec-b", "secretary", &cluster.ws_url(1)).await;
    let doc = shared_doc(&[&a, &b]).await;
    let mut keys = BTreeSet::from(["created".to_owned()]);

    pg.crash();
    // Both nodes notice and say they are not ready.
    until(WAIT, || async {
        for i in 0..2 {
            let status = cluster.readiness(i).await;
            if status != 503 {
                return Err(format!("node {i} answers /readyz with {status}"));
            }
        }
        Ok(())
    })
    .await;
    // Devices keep editing: nothing can be acknowledged now.
    for (i, device) in [&a, &b].into_iter().enumerate() {
        let key = format!("during-outage-{i}");
        device
            .change(doc, |tx| tx.put(automerge::ROOT, &key, 1).map(|_| ()))
            .await
            .unwrap();
        keys.insert(key);
        assert!(
            device
                .wait_synced(doc, Duration::from_millis(500))
                .await
                .is_err(),
            "a change was acknowledged while the database was down"
        );
    }

    pg.start_again();
    // The nodes come back by themselves (same processes), and the devices converge.
    until(WAIT, || async {
        for i in 0..2 {
            let status = cluster.readiness(i).await;
            if status != 200 {
                return Err(format!("node {i} answers /readyz with {status}"));
            }
        }
        Ok(())
    })
    .await;
    converged(&cluster, &[&a, &b], &[(doc, keys.clone())]).await;
    until(WAIT, || async {
        for i in 0..2 {
            if cluster.metric(i, "lianxin_listener_reconnects_total").await < 1.0 {
                return Err(format!(
                    "node {i} did not notice that it had lost the database"
                ));
            }
        }
        Ok(())
    })
    .await;
    // And changes travel between the nodes again.
    b.change(doc, |tx| tx.put(automerge::ROOT, "after", 1).map(|_| ()))
        .await
        .unwrap();
    keys.insert("after".into());
    converged(&cluster, &[&a, &b], &[(doc, keys)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_and_its_devices_move_to_another() {
    let db = lianxin_tests::TestDb::new(lianxin_tests::Backend::Postgres).await;
    let mut cluster = Cluster::start_with(
        NODE,
        db,
        2,
        true,
        &[
            ("LIANXIN_CLUSTER__DRAIN_GRACE_SECS", "3"),
            ("LIANXIN_CLUSTER__DRAIN_SECS", "1"),
        ],
    )
    .await;
    let balancer = Balancer::start(cluster.addrs()).await;
    let devices = secretaries(&cluster, 4, |_| balancer.ws_url()).await;
    let doc = shared_doc(&devices.iter().collect::<Vec<_>>()).await;
    let on_node_0 = cluster.metric(0, "lianxin_connections_open").await;
    assert!(on_node_0 >= 1.0, "the balancer put nobody on node 0");

    cluster.signal_term(0);
    // The grace period: not ready, new connections refused, the open ones still served.
    until(Duration::from_secs(2), || async {
        match cluster.readiness(0).await {
            503 => Ok(()),
            other => Err(format!("draining node 0 answers /readyz with {other}")),
        }
    })
    .await;
    let newcomer = Client::in_memory(ClientConfig::default()).await.unwrap();
    let token = cluster
        .token_as("late", "late-phone", "secretary", GRID)
        .await;
    assert!(
        newcomer.connect(&cluster.ws_url(0), &token).await.is_err(),
        "a draining node accepted a new connection"
    );
    assert_eq!(
        cluster.metric(0, "lianxin_connections_open").await,
        on_node_0,
        "connections were closed before the grace period ended"
    );

    assert!(
        cluster.wait_exit(0).await,
        "node 0 did not exit cleanly on SIGTERM"
    );
    let mut keys = BTreeSet::from(["created".to_owned()]);
    for (i, device) in devices.iter().enumerate() {
        let key = format!("after-drain-{i}");
        device
            .change(doc, |tx| tx.put(automerge::ROOT, &key, 1).map(|_| ()))
            .await
            .unwrap();
        keys.insert(key);
    }
    converged(
        &cluster,
        &devices.iter().collect::<Vec<_>>(),
        &[(doc, keys)],
    )
    .await;
    assert!(
        cluster.metric(1, "lianxin_connections_open").await >= 4.0,
        "every device is on node 1 now"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_missed_while_not_listening_is_caught_up() {
    let cluster = Cluster::start(NODE, 2, true).await;
    let a = device(&cluster, "sec-a", "secretary", &cluster.ws_url(0)).await;
    let b = device(&cluster, "sec-b", "secretary", &cluster.ws_url(1)).await;
    let doc = shared_doc(&[&a, &b]).await;
    // Node 1's listening connection is cut; a change committed on node 0 before node 1 listens
    // again (it waits half a second) is announced to nobody there. Device b, idle on node 1,
    // gets it only from node 1's catch-up. If the change happened to commit after node 1
    // listened again (a slow machine), it was announced normally: try again.
    for attempt in 0.. {
        assert!(attempt < 5, "never managed to commit inside the gap");
        let heard = cluster.metric(1, "lianxin_announcements_total").await;
        assert!(cluster.cut_listener(1).await >= 1, "node 1's listener");
        let key = format!("missed-{attempt}");
        a.change(doc, |tx| tx.put(automerge::ROOT, &key, 1).map(|_| ()))
            .await
            .unwrap();
        a.wait_synced(doc, WAIT).await.unwrap();
        until(WAIT, || async {
            b.read(doc, |d| {
                d.get(automerge::ROOT, key.as_str()).unwrap().is_some()
            })
            .unwrap()
            .then_some(())
            .ok_or_else(|| format!("device b never got {key}"))
        })
        .await;
        if cluster.metric(1, "lianxin_announcements_total").await == heard {
            break;
        }
        // Wait until node 1 listens again before the next attempt.
        until(WAIT, || async {
            match cluster.readiness(1).await {
                200 => Ok(()),
                other => Err(format!("node 1 answers /readyz with {other}")),
            }
        })
        .await;
    }
    assert!(cluster.metric(1, "lianxin_listener_reconnects_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_cuts_the_device_on_every_node() {
    let cluster = Cluster::start(NODE, 2, true).await;
    let token = cluster
        .token_as("zhao", "zhao-phone", "secretary", GRID)
        .await;
    let phones: Vec<Client> = futures_util::future::join_all(
        (0..2).map(|_| async { Client::in_memory(ClientConfig::default()).await.unwrap() }),
    )
    .await;
    let mut events = Vec::new();
    for (i, phone) in phones.iter().enumerate() {
        events.push(phone.subscribe());
        phone.connect(&cluster.ws_url(i), &token).await.unwrap();
    }
    // Revoked from outside both nodes (as `lianxin-server device revoke` would).
    assert!(cluster.store.revoke_device("zhao-phone").await.unwrap());
    // Both connections are cut at once, and both reconnects are refused.
    for (i, events) in events.iter_mut().enumerate() {
        let reason = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(lianxin_client::ClientEvent::TokenRejected { reason }) =
                    events.recv().await
                {
                    break reason;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the phone on node {i} was not cut"));
        assert!(reason.contains("revoked"), "{reason}");
    }
    for i in 0..2 {
        assert_eq!(
            cluster.metric(i, "lianxin_connections_open").await,
            0.0,
            "node {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_of_a_request_triaged_on_three_nodes_at_once_is_the_merged_document() {
    use lianxin_protocol::domain::builders::RequestInit;
    use lianxin_protocol::domain::{Origin, Track, read_flow};
    let cluster = Cluster::start(NODE, 3, false).await;
    let secretary = device(&cluster, "sec-a", "secretary", &cluster.ws_url(0)).await;
    let request = secretary
        .create(|tx| {
            builders::init_request(
                tx,
                &Common {
                    area: AreaPath::new(GRID).unwrap(),
                    created_by: "sec-a".into(),
                    created_at: 1_763_000_000_000,
                },
                &RequestInit {
                    origin: Origin::Visit,
                    household: None,
                    visit: None,
                    category: "repair".into(),
                    description: "broken light in the stairwell".into(),
                    device: Some("sec-a-phone".into()),
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    secretary.wait_synced(request, WAIT).await.unwrap();
    // Six grid workers, two on each node, triage it at the same moment, differently.
    let mut workers = Vec::new();
    for i in 0..6 {
        let worker = device(
            &cluster,
            &format!("gw-{i}"),
            "grid_worker",
            &cluster.ws_url(i % 3),
        )
        .await;
        worker.fetch(request, WAIT).await.unwrap();
        workers.push(worker);
    }
    let tracks = [Track::Transfer, Track::Immediate, Track::Supervised];
    futures_util::future::join_all(workers.iter().enumerate().map(|(i, worker)| {
        triage(
            worker,
            request,
            format!("gw-{i}"),
            tracks[i % 3],
            1_763_000_100_000 + i as i64,
        )
    }))
    .await;
    let everyone: Vec<&Client> = workers.iter().chain([&secretary]).collect();
    let mut conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&cluster.db.url).await.unwrap()
    };
    let conn = tokio::sync::Mutex::new(&mut conn);
    until(WAIT, || async {
        let mut conn = conn.lock().await;
        let conn = &mut **conn;
        let stored = cluster.stored_doc(request).await.ok_or("not stored")?;
        let merged = read_flow(&stored).map_err(|e| e.to_string())?;
        let events = lianxin_protocol::domain::read_events(&stored).map_err(|e| e.to_string())?;
        if events.len() != 7 {
            return Err(format!("{} events stored", events.len()));
        }
        for (i, device) in everyone.iter().enumerate() {
            let theirs = device.read(request, read_flow).unwrap().unwrap();
            if theirs != merged {
                return Err(format!(
                    "device {i} has {theirs:?}, the database {merged:?}"
                ));
            }
        }
        // The row written with the last chunk, by whichever node wrote it, is the whole
        // stored document: same status, track and department, as of its last sequence number.
        let (status, track, department, seq, last_seq): (
            String,
            Option<String>,
            Option<String>,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT r.status, r.track, r.department, r.seq, d.last_seq FROM requests r \
                 JOIN documents d ON d.id = r.document_id WHERE r.document_id = $1",
        )
        .bind(request.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
        let expected = (
            merged.status.as_str().to_owned(),
            merged.track.map(|t| t.as_str().to_owned()),
            merged.department.clone(),
            last_seq,
        );
        if (status.clone(), track.clone(), department.clone(), seq) != expected {
            return Err(format!(
                "row {:?}, merged document {expected:?}",
                (status, track, department, seq)
            ));
        }
        // Its timeline holds every event of the merged document, every triage included.
        let timeline: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM request_events WHERE document_id = $1")
                .bind(request.to_string())
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
        if timeline != events.len() as i64 {
            return Err(format!(
                "the projected timeline has {timeline} events, the document {}",
                events.len()
            ));
        }
        Ok(())
    })
    .await;
}

/// Appends a triage event to `request` on `client`'s device.
async fn triage(
    client: &Client,
    request: DocumentId,
    user: String,
    track: lianxin_protocol::domain::Track,
    at: i64,
) {
    use lianxin_protocol::domain::{Event, EventKind, Track};
    let event = Event {
        kind: EventKind::Triaged {
            track,
            department: (track == Track::Transfer).then(|| "water-bureau".to_owned()),
        },
        at,
        device: Some(format!("{user}-phone")),
        by: user,
        note: None,
    };
    client
        .change(request, |tx| {
            builders::append_request_event(tx, &event).map_err(am)
        })
        .await
        .unwrap();
}
