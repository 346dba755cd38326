//! Area sync through real websockets and real storage: a device learns what changed in its area
//! since it was last connected, in a handful of messages however many documents it holds; a
//! fresh device receives its whole area in batches; a bootstrap cut halfway resumes where it
//! stopped; and changes made while it is connected are pushed to it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ROOT};
use lianxin_client::{Client, ClientConfig, DocumentId};
use lianxin_protocol::Message;
use lianxin_protocol::domain::builders::{self, Common, VisitInit};
use lianxin_protocol::domain::{AreaPath, LocalDate};
use lianxin_tests::{Backend, RawPeer, TestApp, TestDb, spawn_app_with, test_settings, until};

use crate::both_backends;
use crate::field::{am, device};

const WAIT: Duration = Duration::from_secs(20);
const COMMUNITY: &str = "/city/street-1/community-1";
const GRID_A: &str = "/city/street-1/community-1/grid-a";
const GRID_B: &str = "/city/street-1/community-1/grid-b";
/// Another community: nothing of it may reach the community's devices.
const ELSEWHERE: &str = "/city/street-1/community-2/grid-z";

both_backends!(
    catch_up_after_changes_in_any_order_ends_identical_to_the_server,
    bootstrap_cut_halfway_resumes_and_completes,
);

/// A server for typed documents, with small area batches so that a few dozen documents take
/// several.
async fn app(db: &TestDb) -> TestApp {
    let mut settings = test_settings(db);
    settings.documents.allow_untyped = false;
    settings.limits.area_batch_bytes = 2 * 1024;
    spawn_app_with(settings).await
}

/// Creates a visit in `area` by `user` on `client` and returns its ID.
async fn visit(client: &Client, user: &str, area: &str, n: usize) -> DocumentId {
    let common = Common {
        area: AreaPath::new(area).unwrap(),
        created_by: user.into(),
        created_at: 1_767_578_400_000 + n as i64,
    };
    let init = VisitInit {
        household: format!("household-{n}"),
        date: LocalDate::new(2026, 1, 5).unwrap(),
        visitors: vec![user.into()],
        heard: format!("visit {n}: the stairwell light is out"),
        people_received: 2,
        requests: vec![],
    };
    client
        .create(|tx| builders::init_visit(tx, &common, &init).map_err(am))
        .await
        .unwrap()
}

/// A small deterministic generator, so a failing order can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Asserts that `client` holds each of `ids` with exactly the heads the server stored.
async fn assert_identical(app: &TestApp, client: &Client, ids: &BTreeSet<DocumentId>, what: &str) {
    for id in ids {
        let stored = app.stored_doc(*id).await.expect("stored");
        let held = client
            .heads(*id)
            .unwrap_or_else(|e| panic!("{what}: {id} missing on the device: {e}"));
        assert_eq!(
            sorted(held),
            sorted(stored.get_heads()),
            "{what}: {id} differs from the server"
        );
    }
}

async fn catch_up_after_changes_in_any_order_ends_identical_to_the_server(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = app(&db).await;
    let writer_a = device(&app, "worker-a", "grid_worker", GRID_A).await;
    let writer_b = device(&app, "worker-b", "grid_worker", GRID_B).await;
    let outsider = device(&app, "worker-z", "grid_worker", ELSEWHERE).await;
    let mut ids = BTreeSet::new();
    let mut owner: HashMap<DocumentId, usize> = HashMap::new();
    for n in 0..30 {
        let (client, user, area, who) = if n % 2 == 0 {
            (&writer_a, "worker-a", GRID_A, 0)
        } else {
            (&writer_b, "worker-b", GRID_B, 1)
        };
        let id = visit(client, user, area, n).await;
        ids.insert(id);
        owner.insert(id, who);
    }
    let foreign = visit(&outsider, "worker-z", ELSEWHERE, 99).await;
    for client in [&writer_a, &writer_b, &outsider] {
        client.wait_up_to_date(WAIT).await.unwrap();
    }

    // The community's secretary connects once: the whole community arrives, nothing else.
    let secretary_token = app
        .token_as("secretary", "secretary-phone", "secretary", COMMUNITY)
        .await;
    let phone = Client::in_memory(ClientConfig::default()).await.unwrap();
    phone
        .connect(&app.ws_url(), &secretary_token)
        .await
        .unwrap();
    phone.wait_up_to_date(WAIT).await.unwrap();
    assert_eq!(
        phone.documents().into_iter().collect::<BTreeSet<_>>(),
        ids,
        "the bootstrap brings exactly the community's documents"
    );
    assert!(phone.heads(foreign).is_err());
    assert_identical(&app, &phone, &ids, "after the bootstrap").await;

    let mut rng = Rng(0x5eed_1234_abcd_0001 ^ backend as u64);
    let writers = [
        (&writer_a, "worker-a", GRID_A),
        (&writer_b, "worker-b", GRID_B),
    ];
    for round in 0..3 {
        phone.disconnect().await;
        // While the phone is away: edits to random documents by their grid's worker, in a
        // random order and interleaved with new documents; the phone edits too.
        let all: Vec<DocumentId> = ids.iter().copied().collect();
        let mut changed = BTreeSet::new();
        for step in 0..12 {
            if rng.below(4) == 0 {
                let (client, user, area) = writers[rng.below(2)];
                let id = visit(client, user, area, 1000 * (round + 1) + step).await;
                owner.insert(id, if area == GRID_A { 0 } else { 1 });
                ids.insert(id);
                changed.insert(id);
            } else {
                let id = all[rng.below(all.len())];
                let (client, _, _) = writers[owner[&id]];
                client
                    .change(id, |tx| {
                        tx.put(ROOT, "heard", format!("round {round} step {step}"))
                    })
                    .await
                    .unwrap();
                changed.insert(id);
            }
        }
        let mine = all[rng.below(all.len())];
        phone
            .change(mine, |tx| {
                tx.put(ROOT, "heard", format!("secretary, round {round}"))
            })
            .await
            .unwrap();
        for (client, _, _) in writers {
            client.wait_up_to_date(WAIT).await.unwrap();
        }

        let before = phone.stats();
        phone
            .connect(&app.ws_url(), &secretary_token)
            .await
            .unwrap();
        phone.wait_up_to_date(WAIT).await.unwrap();
        let cost = phone.stats() - before;
        assert_identical(&app, &phone, &ids, &format!("round {round}")).await;
        // What moved grows with what changed (and the phone's own edit), not with the
        // documents the phone holds.
        // Batches hold several documents; the rest is the handshake, the changed-docs answer
        // and the phone's own edit.
        let bound = 8 + changed.len() as u64 / 2;
        assert!(bound < ids.len() as u64);
        assert!(
            cost.messages_received <= bound,
            "round {round}: {} messages for {} changed of {} held",
            cost.messages_received,
            changed.len(),
            ids.len()
        );
        // The phone's own edit reached the server and the writers see it live.
        let (owner_client, _, _) = writers[owner[&mine]];
        let phone_heads = sorted(phone.heads(mine).unwrap());
        until(WAIT, || async {
            let theirs = owner_client.heads(mine).map(sorted).unwrap_or_default();
            (theirs == phone_heads).then_some(()).ok_or(format!(
                "round {round}: the writer never saw the phone's edit"
            ))
        })
        .await;
    }

    // Live: connected, the phone hears of a new document without asking.
    let live = visit(&writer_b, "worker-b", GRID_B, 5000).await;
    until(WAIT, || async {
        phone
            .heads(live)
            .map(|_| ())
            .map_err(|_| "the new document was never pushed".to_string())
    })
    .await;
    app.stop().await;
}

/// Receives area batches until `stop` says so; returns the documents (by ID, the last bytes
/// received) and the cursor of the last batch.
async fn receive_batches(
    peer: &mut RawPeer,
    mut stop: impl FnMut(usize, bool) -> bool,
) -> (HashMap<DocumentId, Vec<u8>>, Option<String>, usize) {
    let mut docs = HashMap::new();
    let mut cursor = None;
    let mut batches = 0;
    loop {
        match peer.recv().await {
            Some(Message::AreaBatch {
                documents,
                cursor: next,
                complete,
                ..
            }) => {
                batches += 1;
                for (id, data) in documents {
                    docs.insert(id, data);
                }
                if !next.is_empty() {
                    cursor = Some(next);
                }
                if stop(batches, complete) {
                    return (docs, cursor, batches);
                }
            }
            Some(_) => {}
            None => panic!("the server stopped sending after {batches} batches"),
        }
    }
}

async fn bootstrap_cut_halfway_resumes_and_completes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = app(&db).await;
    let writer = device(&app, "worker-a", "grid_worker", GRID_A).await;
    let mut ids = Vec::new();
    for n in 0..60 {
        ids.push(visit(&writer, "worker-a", GRID_A, n).await);
    }
    writer.wait_up_to_date(WAIT).await.unwrap();
    let token = app
        .token_as("secretary", "secretary-phone", "secretary", COMMUNITY)
        .await;

    // A fresh device starts its bootstrap and loses the connection after three batches.
    let mut first = RawPeer::connect(&app, &token).await;
    let me = first.peer_id.clone();
    let server = app.state.server_peer.clone();
    first
        .send(&Message::AreaSync {
            sender_id: me.clone(),
            target_id: server.clone(),
            cursor: None,
        })
        .await;
    let (got_first, cursor, batches) = receive_batches(&mut first, |n, _| n == 3).await;
    drop(first);
    assert_eq!(batches, 3);
    assert!(
        got_first.len() >= 6 && got_first.len() < ids.len() / 2,
        "three small batches carry part of the area: {}",
        got_first.len()
    );
    let cursor = cursor.expect("batches carry a cursor");

    // Meanwhile some documents change: received ones, not yet received ones, and new ones.
    let (received, pending): (Vec<DocumentId>, Vec<DocumentId>) =
        ids.iter().partition(|id| got_first.contains_key(id));
    let mut changed: BTreeSet<DocumentId> = BTreeSet::new();
    for id in received.iter().take(2).chain(pending.iter().take(2)) {
        writer
            .change(*id, |tx| {
                tx.put(ROOT, "heard", "changed while the bootstrap was cut")
            })
            .await
            .unwrap();
        changed.insert(*id);
    }
    for n in 100..103 {
        let id = visit(&writer, "worker-a", GRID_A, n).await;
        ids.push(id);
        changed.insert(id);
    }
    writer.wait_up_to_date(WAIT).await.unwrap();

    // It comes back with the cursor of the last batch it stored and gets the rest.
    let mut second = RawPeer::connect(&app, &token).await;
    second
        .send(&Message::AreaSync {
            sender_id: second.peer_id.clone(),
            target_id: server.clone(),
            cursor: Some(cursor),
        })
        .await;
    let (got_second, _, _) = receive_batches(&mut second, |_, complete| complete).await;
    // Resumed, not restarted: what it had is not sent again unless it changed.
    for id in got_first.keys() {
        assert!(
            !got_second.contains_key(id) || changed.contains(id),
            "{id} was sent again although it did not change"
        );
    }
    // Completed: every document, each as the server now stores it.
    let mut have = got_first;
    have.extend(got_second);
    assert_eq!(
        have.keys().copied().collect::<BTreeSet<_>>(),
        ids.iter().copied().collect::<BTreeSet<_>>()
    );
    for id in &ids {
        let mut doc = Automerge::new();
        doc.load_incremental(&have[id]).unwrap();
        let stored = app.stored_doc(*id).await.unwrap();
        assert_eq!(
            sorted(doc.get_heads()),
            sorted(stored.get_heads()),
            "{id} is not what the server stores"
        );
    }

    // A cursor the server never wrote gets a clear error, and the connection carries on.
    second
        .send(&Message::AreaSync {
            sender_id: second.peer_id.clone(),
            target_id: server,
            cursor: Some("1:not-a-cursor".into()),
        })
        .await;
    loop {
        match second.recv().await {
            Some(Message::Error { message, .. }) => {
                assert_eq!(message, "malformed area-sync cursor");
                break;
            }
            Some(_) => {}
            None => panic!("no error for a malformed cursor"),
        }
    }

    // A real client with a store on disk bootstraps the same area completely.
    let path = db.data_dir.join("phone.db");
    let phone = Client::open(&path, ClientConfig::default()).await.unwrap();
    phone.connect(&app.ws_url(), &token).await.unwrap();
    phone.wait_up_to_date(WAIT).await.unwrap();
    phone.disconnect().await;
    drop(phone);
    // …and keeps it across a restart of the app.
    let reopened = Client::open(&path, ClientConfig::default()).await.unwrap();
    let all: BTreeSet<DocumentId> = ids.iter().copied().collect();
    assert_eq!(
        reopened.documents().into_iter().collect::<BTreeSet<_>>(),
        all
    );
    assert_identical(&app, &reopened, &all, "after reopening").await;
    app.stop().await;
}
