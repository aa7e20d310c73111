//! Redis-backed key-value stores, against a real server.
//!
//! The server comes from `WISP_TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`). A Redis store is a whole database, so each test
//! uses its own database number and flushes it first.

mod common;

use wisp_storage::KvStore;

fn base_url() -> String {
    std::env::var("WISP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Flushes database `db` and returns its URL. Panics (never skips) when no
/// server answers.
async fn fresh_db(db: u32) -> String {
    let url = format!("{}/{db}", base_url().trim_end_matches('/'));
    let unreachable = |err: redis::RedisError| -> ! {
        panic!(
            "redis server at {url} is unreachable ({err}); start one with `redis-server --port 6379 --daemonize yes` or set WISP_TEST_REDIS_URL"
        )
    };
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| unreachable(err));
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .unwrap_or_else(|err| unreachable(err));
    url
}

async fn open(url: &str) -> KvStore {
    KvStore::redis(url).await.unwrap_or_else(|err| {
        panic!("{err}\nstart one with `redis-server --port 6379 --daemonize yes`")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics() {
    let url = fresh_db(1).await;
    let store = open(&url).await;
    assert!(store.describe().ends_with("/1"), "{}", store.describe());
    common::semantics(&store, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_one_store() {
    let url = fresh_db(2).await;
    let store = open(&url).await;
    common::concurrent_increments(&store, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_two_stores() {
    let url = fresh_db(3).await;
    let a = open(&url).await;
    let b = open(&url).await;
    common::concurrent_increments(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_one_store() {
    let url = fresh_db(4).await;
    let store = open(&url).await;
    common::concurrent_cas(&store, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_two_stores() {
    let url = fresh_db(5).await;
    let a = open(&url).await;
    let b = open(&url).await;
    common::concurrent_cas(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_cap() {
    let url = fresh_db(6).await;
    let store = open(&url).await;
    common::value_cap(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_keys_scans_many_keys() {
    let url = fresh_db(7).await;
    let store = open(&url).await;
    // More than one SCAN page.
    let items: Vec<(String, Vec<u8>)> = (0..2500)
        .map(|i| (format!("key-{i}"), i.to_string().into_bytes()))
        .collect();
    store.set_many(items).await.unwrap();
    let mut keys = store.get_keys().await.unwrap();
    keys.sort();
    let mut expected: Vec<String> = (0..2500).map(|i| format!("key-{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_names_the_url_without_password() {
    // Nothing listens on port 1.
    let err = KvStore::redis("redis://alice:hunter2@127.0.0.1:1/0")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis://alice:***@127.0.0.1:1/0"), "{err}");
    assert!(err.contains("running"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    let err = KvStore::redis("http://nope").await.unwrap_err().to_string();
    assert!(err.contains("invalid redis url"), "{err}");
}
