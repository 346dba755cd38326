//! Property: several devices making random concurrent offline edits, going offline and online
//! in random order, all converge to the same heads and content as the server, with every edit
//! present exactly once.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig};
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app};
use proptest::prelude::*;

const DEVICES: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
enum Step {
    /// Device writes `value` under key `k{key}` and appends a unique entry to the log.
    Edit { device: usize, key: u8, value: i64 },
    /// Device goes offline if online, online if offline.
    Toggle { device: usize },
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..DEVICES, 0..4u8, any::<i64>())
            .prop_map(|(device, key, value)| Step::Edit { device, key, value }),
        1 => (0..DEVICES).prop_map(|device| Step::Toggle { device }),
    ];
    prop::collection::vec(step, 1..40)
}

async fn run_case(app: &TestApp, steps: Vec<Step>) {
    let url = app.ws_url();
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let client = Client::in_memory(ClientConfig::default()).await.unwrap();
        let token = app.token(&format!("u{d}"), &format!("d{d}")).await;
        client.connect(&url, &token).await.unwrap();
        devices.push((client, token));
    }
    let id = devices[0]
        .0
        .create(|tx| tx.put_object(ROOT, "log", ObjType::List).map(|_| ()))
        .await
        .unwrap();
    devices[0].0.wait_synced(id, WAIT).await.unwrap();
    for (client, _) in &devices[1..] {
        client.fetch(id, WAIT).await.unwrap();
    }
    let mut online = [true; DEVICES];
    let mut edits = 0;
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Edit { device, key, value } => {
                let entry = format!("step-{i}");
                devices[device]
                    .0
                    .change(id, |tx| {
                        tx.put(ROOT, format!("k{key}"), value)?;
                        let (_, log) = tx.get(ROOT, "log")?.expect("log");
                        let len = tx.length(&log);
                        tx.insert(&log, len, entry.as_str())
                    })
                    .await
                    .unwrap();
                edits += 1;
            }
            Step::Toggle { device } => {
                let (client, token) = &devices[device];
                if online[device] {
                    client.disconnect().await;
                } else {
                    client.connect(&url, token).await.unwrap();
                }
                online[device] = !online[device];
            }
        }
    }
    for (d, (client, token)) in devices.iter().enumerate() {
        if !online[d] {
            client.connect(&url, token).await.unwrap();
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for (client, _) in &devices {
            let _ = client.wait_synced(id, Duration::from_millis(100)).await;
        }
        let mut all: Vec<_> = devices
            .iter()
            .map(|(c, _)| {
                let mut h = c.heads(id).unwrap();
                h.sort();
                h
            })
            .collect();
        all.dedup();
        if all.len() == 1 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let states: Vec<String> = devices
                .iter()
                .map(|(c, _)| format!("{:?} {:?}", c.status(), c.stats()))
                .collect();
            panic!("devices did not converge: {states:#?}");
        }
    }
    let content = |doc: &automerge::Automerge| {
        let (_, log) = doc.get(ROOT, "log").unwrap().unwrap();
        let entries: Vec<String> = (0..doc.length(&log))
            .map(|i| doc.get(&log, i).unwrap().unwrap().0.to_string())
            .collect();
        let keys: Vec<String> = (0..4)
            .map(|k| {
                format!(
                    "{:?}",
                    doc.get(ROOT, format!("k{k}"))
                        .unwrap()
                        .map(|(v, _)| v.to_string())
                )
            })
            .collect();
        (entries, keys)
    };
    let first = devices[0].0.read(id, content).unwrap();
    assert_eq!(first.0.len(), edits, "every edit present");
    let unique: std::collections::HashSet<_> = first.0.iter().collect();
    assert_eq!(unique.len(), edits, "no edit twice");
    for (client, _) in &devices[1..] {
        assert_eq!(client.read(id, content).unwrap(), first);
    }
    // The server stored the same document.
    let server = app.stored_doc(id).await.unwrap();
    assert_eq!(content(&server), first);
    for (client, _) in &devices {
        client.disconnect().await;
    }
}

#[test]
fn random_offline_edits_in_random_order_converge() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let db = TestDb::new(Backend::Sqlite).await;
        spawn_app(&db).await
    });
    let config = ProptestConfig {
        cases: 12,
        // Each case runs real devices against a real server; shrinking would take long.
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in steps())| {
        runtime.block_on(run_case(&app, steps));
    });
    runtime.block_on(app.stop());
}
