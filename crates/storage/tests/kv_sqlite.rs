//! SQLite-backed key-value stores.

mod common;

use wisp_storage::KvStore;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics() {
    let dir = temp();
    let store = KvStore::sqlite(&dir.path().join("kv.db"), "default").unwrap();
    common::semantics(&store, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_cap() {
    let dir = temp();
    let store = KvStore::sqlite(&dir.path().join("kv.db"), "default").unwrap();
    common::value_cap(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_parent_directories_and_describes_the_absolute_path() {
    let dir = temp();
    let path = dir.path().join("nested/deeper/kv.db");
    let store = KvStore::sqlite(&path, "cache").unwrap();
    assert!(path.is_file());
    assert_eq!(
        store.describe(),
        format!("sqlite file {} (label cache)", path.display())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_sharing_a_file_are_separate_stores() {
    let dir = temp();
    let path = dir.path().join("kv.db");
    let one = KvStore::sqlite(&path, "one").unwrap();
    let two = KvStore::sqlite(&path, "two").unwrap();
    one.set("shared-name", b"1".to_vec()).await.unwrap();
    one.set("only-one", b"1".to_vec()).await.unwrap();
    two.set("shared-name", b"2".to_vec()).await.unwrap();

    let mut keys = one.get_keys().await.unwrap();
    keys.sort();
    assert_eq!(keys, ["only-one", "shared-name"]);
    assert_eq!(two.get_keys().await.unwrap(), ["shared-name"]);
    assert_eq!(two.get("only-one").await.unwrap(), None);
    assert_eq!(
        one.get("shared-name").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    two.delete("shared-name").await.unwrap();
    assert_eq!(
        one.get("shared-name").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_across_reopen() {
    let dir = temp();
    let path = dir.path().join("kv.db");
    {
        let store = KvStore::sqlite(&path, "default").unwrap();
        store.set("kept", b"value".to_vec()).await.unwrap();
        store.increment("count", 3).await.unwrap();
        store.set("gone", b"x".to_vec()).await.unwrap();
        store.delete("gone").await.unwrap();
    }
    let store = KvStore::sqlite(&path, "default").unwrap();
    assert_eq!(
        store.get("kept").await.unwrap().as_deref(),
        Some(&b"value"[..])
    );
    assert_eq!(store.increment("count", 1).await.unwrap(), 4);
    assert_eq!(store.get("gone").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_one_store() {
    let dir = temp();
    let store = KvStore::sqlite(&dir.path().join("kv.db"), "default").unwrap();
    common::concurrent_increments(&store, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_two_stores_on_one_file() {
    let dir = temp();
    let path = dir.path().join("kv.db");
    let a = KvStore::sqlite(&path, "default").unwrap();
    let b = KvStore::sqlite(&path, "default").unwrap();
    common::concurrent_increments(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_one_store() {
    let dir = temp();
    let store = KvStore::sqlite(&dir.path().join("kv.db"), "default").unwrap();
    common::concurrent_cas(&store, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_two_stores_on_one_file() {
    let dir = temp();
    let path = dir.path().join("kv.db");
    let a = KvStore::sqlite(&path, "default").unwrap();
    let b = KvStore::sqlite(&path, "default").unwrap();
    common::concurrent_cas(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_path_is_a_clear_error() {
    let dir = temp();
    // A directory where the file should be.
    let path = dir.path().join("dir.db");
    std::fs::create_dir(&path).unwrap();
    let err = KvStore::sqlite(&path, "default").unwrap_err().to_string();
    assert!(err.contains("sqlite"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_batch_reads_are_bounded() {
    let dir = temp();
    let store = KvStore::sqlite(&dir.path().join("kv.db"), "default").unwrap();
    let long_key = "k".repeat(wisp_storage::MAX_KEY_BYTES + 1);
    let err = store.set(&long_key, b"v".to_vec()).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");
    let err = store.increment(&long_key, 1).await.unwrap_err();
    assert!(err.to_string().contains("longer than"), "{err}");

    // Five 16 MiB values fit under the 64 MiB cap only once: asking for the same
    // key five times is refused rather than copied five times.
    let big = vec![7u8; wisp_storage::MAX_VALUE_BYTES];
    store.set("big", big).await.unwrap();
    let four = store.get_many(vec!["big".to_owned(); 4]).await.unwrap();
    assert_eq!(four.len(), 4);
    assert!(four.iter().all(
        |(k, v)| k == "big" && v.as_ref().map(Vec::len) == Some(wisp_storage::MAX_VALUE_BYTES)
    ));
    let err = store.get_many(vec!["big".to_owned(); 5]).await.unwrap_err();
    assert!(err.to_string().contains("get-many"), "{err}");
    // Repeated and missing keys keep their order.
    store.set("a", b"1".to_vec()).await.unwrap();
    let got = store
        .get_many(vec!["a".into(), "none".into(), "a".into()])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            ("a".to_owned(), Some(b"1".to_vec())),
            ("none".to_owned(), None),
            ("a".to_owned(), Some(b"1".to_vec()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_holds_at_most_its_quota() {
    assert_eq!(wisp_storage::kv::DEFAULT_STORE_QUOTA, 1 << 30);
    let dir = temp();
    let path = dir.path().join("kv.db");
    // Keys and values count: "a" + 49 bytes is 50.
    let store = KvStore::sqlite_with_quota(&path, "small", 100).unwrap();
    store.set("a", vec![1; 49]).await.unwrap();
    let refused = store.set("b", vec![2; 59]).await.unwrap_err().to_string();
    assert!(
        refused.contains("quota of 100 bytes")
            && refused.contains("\"b\"")
            && refused.contains("max_size_mb"),
        "{refused}"
    );
    assert_eq!(
        store.get("b").await.unwrap(),
        None,
        "nothing of a refused write stays"
    );
    // Shrinking or replacing a value within the quota works; deleting frees room.
    store.set("a", vec![1; 9]).await.unwrap();
    store.set("b", vec![2; 59]).await.unwrap();
    store.delete("a").await.unwrap();
    store.set("c", vec![3; 39]).await.unwrap();
    // A batch is all or nothing.
    let batch = store
        .set_many(vec![
            ("d".to_owned(), vec![4; 5]),
            ("e".to_owned(), vec![5; 50]),
        ])
        .await;
    assert!(batch.is_err());
    assert_eq!(store.get("d").await.unwrap(), None);
    // Another label of the same file has its own quota; a reopened store counts what is there.
    let other = KvStore::sqlite_with_quota(&path, "other", 100).unwrap();
    other.set("x", vec![9; 90]).await.unwrap();
    drop(store);
    let reopened = KvStore::sqlite_with_quota(&path, "small", 100).unwrap();
    assert!(
        reopened.set("f", vec![6; 10]).await.is_err(),
        "b and c hold 100 bytes"
    );
    reopened.delete_many(vec!["b".to_owned()]).await.unwrap();
    reopened.set("f", vec![6; 10]).await.unwrap();
    assert!(reopened.increment("n", 1).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_opener_of_a_store_counts_against_one_quota() {
    // A node and its worker process each open an app's store file: what one writes
    // counts against the quota the other checks, and what one deletes frees room for both.
    let dir = temp();
    let path = dir.path().join("kv.db");
    let node = KvStore::sqlite_with_quota(&path, "default", 100).unwrap();
    let worker = KvStore::sqlite_with_quota(&path, "default", 100).unwrap();
    node.set("a", vec![1; 59]).await.unwrap();
    let refused = worker.set("b", vec![2; 49]).await.unwrap_err().to_string();
    assert!(
        refused.contains("holds 60 bytes") && refused.contains("quota of 100 bytes"),
        "{refused}"
    );
    worker
        .set_many(vec![
            ("b".to_owned(), vec![2; 19]),
            ("c".to_owned(), vec![3; 19]),
        ])
        .await
        .unwrap();
    assert!(
        node.set("d", vec![4; 1]).await.is_err(),
        "a, b and c hold 100 bytes"
    );
    worker.delete("a").await.unwrap();
    node.set("d", vec![4; 59]).await.unwrap();
    assert!(worker.increment("n", 1).await.is_err(), "full again");

    // A row written by a Wisp that kept no usage count is counted at the next open.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO wisp_key_value (store, key, value) VALUES ('default', 'old', zeroblob(7))",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM wisp_key_value WHERE key = 'd'", [])
        .unwrap();
    drop(conn);
    let reopened = KvStore::sqlite_with_quota(&path, "default", 100).unwrap();
    let refused = reopened
        .set("e", vec![5; 60])
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("holds 50 bytes"), "{refused}");
    reopened.set("e", vec![5; 49]).await.unwrap();
}
