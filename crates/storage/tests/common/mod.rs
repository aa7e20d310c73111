//! Checks shared by the SQLite and Redis key-value tests: every backend must
//! pass the same semantics and concurrency checks.

use std::collections::BTreeSet;

use wisp_storage::{KvError, KvStore, MAX_VALUE_BYTES};

/// Expects `store` to be empty; `backend` is the word `describe` must start
/// with and error messages must contain.
pub async fn semantics(store: &KvStore, backend: &str) {
    assert!(
        store.describe().starts_with(backend),
        "describe() = {:?}",
        store.describe()
    );

    // Missing keys.
    assert_eq!(store.get("missing").await.unwrap(), None);
    assert!(!store.exists("missing").await.unwrap());
    store.delete("missing").await.unwrap();
    assert!(store.get_keys().await.unwrap().is_empty());

    // Set, overwrite, binary values.
    store.set("a", b"one".to_vec()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"one"[..]));
    store.set("a", b"uno".to_vec()).await.unwrap();
    assert_eq!(store.get("a").await.unwrap().as_deref(), Some(&b"uno"[..]));
    let binary = vec![0u8, 255, 0, 10, 13];
    store.set("bin", binary.clone()).await.unwrap();
    assert_eq!(store.get("bin").await.unwrap(), Some(binary));
    store.set("empty", Vec::new()).await.unwrap();
    assert_eq!(store.get("empty").await.unwrap(), Some(Vec::new()));
    assert!(store.exists("empty").await.unwrap());
    assert!(store.exists("a").await.unwrap());

    assert_eq!(
        keys(store).await,
        BTreeSet::from(["a".into(), "bin".into(), "empty".into()])
    );

    // Delete.
    store.delete("a").await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    assert!(!store.exists("a").await.unwrap());
    assert_eq!(
        keys(store).await,
        BTreeSet::from(["bin".into(), "empty".into()])
    );

    // Counters are decimal text.
    assert_eq!(store.increment("counter", 5).await.unwrap(), 5);
    assert_eq!(store.increment("counter", -7).await.unwrap(), -2);
    assert_eq!(
        store.get("counter").await.unwrap().as_deref(),
        Some(&b"-2"[..])
    );
    store.set("counter2", b"40".to_vec()).await.unwrap();
    assert_eq!(store.increment("counter2", 2).await.unwrap(), 42);
    assert_eq!(
        store.get("counter2").await.unwrap().as_deref(),
        Some(&b"42"[..])
    );
    store.set("text", b"hello".to_vec()).await.unwrap();
    let err = store.increment("text", 1).await.unwrap_err();
    assert!(err.to_string().contains(backend), "{err}");
    assert!(err.to_string().contains("integer"), "{err}");
    assert_eq!(
        store.get("text").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );

    // Compare-and-swap.
    assert!(
        store
            .compare_and_swap("cas", None, b"v1".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("cas", None, b"x".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !store
            .compare_and_swap("cas", Some(b"wrong"), b"x".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(store.get("cas").await.unwrap().as_deref(), Some(&b"v1"[..]));
    assert!(
        store
            .compare_and_swap("cas", Some(b"v1"), b"v2".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(store.get("cas").await.unwrap().as_deref(), Some(&b"v2"[..]));
    assert!(
        !store
            .compare_and_swap("cas-absent", Some(b""), b"x".to_vec())
            .await
            .unwrap()
    );
    assert!(!store.exists("cas-absent").await.unwrap());

    // Batches.
    store
        .set_many(vec![
            ("m1".into(), b"1".to_vec()),
            ("m2".into(), b"2".to_vec()),
            ("m3".into(), b"3".to_vec()),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_many(vec!["m1".into(), "nope".into(), "m3".into()])
            .await
            .unwrap(),
        vec![
            ("m1".to_owned(), Some(b"1".to_vec())),
            ("nope".to_owned(), None),
            ("m3".to_owned(), Some(b"3".to_vec())),
        ]
    );
    store
        .delete_many(vec!["m1".into(), "m2".into(), "never-there".into()])
        .await
        .unwrap();
    assert_eq!(store.get("m1").await.unwrap(), None);
    assert_eq!(store.get("m2").await.unwrap(), None);
    assert_eq!(store.get("m3").await.unwrap().as_deref(), Some(&b"3"[..]));
    assert!(store.get_many(Vec::new()).await.unwrap().is_empty());
    store.set_many(Vec::new()).await.unwrap();
    store.delete_many(Vec::new()).await.unwrap();

    assert_eq!(
        keys(store).await,
        ["bin", "empty", "counter", "counter2", "text", "cas", "m3"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

/// Values over the cap are refused, everywhere a value is written.
pub async fn value_cap(store: &KvStore) {
    let max = vec![7u8; MAX_VALUE_BYTES];
    store.set("big", max.clone()).await.unwrap();
    assert_eq!(
        store.get("big").await.unwrap().map(|v| v.len()),
        Some(MAX_VALUE_BYTES)
    );

    let over = vec![7u8; MAX_VALUE_BYTES + 1];
    let err = store.set("too-big", over.clone()).await.unwrap_err();
    assert!(matches!(err, KvError::ValueTooLarge { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("too-big") && message.contains("limit"),
        "{message}"
    );
    assert!(!store.exists("too-big").await.unwrap());

    let err = store
        .set_many(vec![
            ("ok".into(), b"1".to_vec()),
            ("too-big".into(), over.clone()),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::ValueTooLarge { .. }), "{err:?}");
    assert!(
        !store.exists("ok").await.unwrap(),
        "a refused batch writes nothing"
    );

    let err = store
        .compare_and_swap("too-big", None, over)
        .await
        .unwrap_err();
    assert!(matches!(err, KvError::ValueTooLarge { .. }), "{err:?}");
    assert!(!store.exists("too-big").await.unwrap());
}

/// 50 tasks × 20 increments, alternating between `a` and `b` (which may be
/// the same store), must add up exactly.
pub async fn concurrent_increments(a: &KvStore, b: &KvStore) {
    let mut tasks = Vec::new();
    for task in 0..50 {
        let store = if task % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                store.increment("hits", 1).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(a.get("hits").await.unwrap().as_deref(), Some(&b"1000"[..]));
    assert_eq!(b.increment("hits", 0).await.unwrap(), 1000);
}

/// 20 tasks append their id to one comma-separated value through a
/// read/compare-and-swap retry loop; no append may be lost.
pub async fn concurrent_cas(a: &KvStore, b: &KvStore) {
    let mut tasks = Vec::new();
    for id in 0..20 {
        let store = if id % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            loop {
                let current = store.get("list").await.unwrap();
                let mut next = current.clone().unwrap_or_default();
                if !next.is_empty() {
                    next.push(b',');
                }
                next.extend_from_slice(id.to_string().as_bytes());
                if store
                    .compare_and_swap("list", current.as_deref(), next)
                    .await
                    .unwrap()
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let list = String::from_utf8(a.get("list").await.unwrap().unwrap()).unwrap();
    let mut ids: Vec<u32> = list.split(',').map(|id| id.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<_>>(), "list was {list:?}");
}

async fn keys(store: &KvStore) -> BTreeSet<String> {
    let keys = store.get_keys().await.unwrap();
    let set: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(
        set.len(),
        keys.len(),
        "get_keys returned duplicates: {keys:?}"
    );
    set
}
