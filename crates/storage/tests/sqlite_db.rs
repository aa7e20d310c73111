//! SQLite databases behind Spin's `sqlite` interface.

use std::time::Duration;

use wisp_storage::sqlite::{MAX_RESULT_ROWS, QueryResult};
use wisp_storage::{SqlValue, SqliteDatabase, SqliteError};

fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_owned())
}

async fn exec(
    conn: &wisp_storage::SqliteConnection,
    sql: &str,
    params: Vec<SqlValue>,
) -> QueryResult {
    conn.execute(sql.to_owned(), params)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

async fn exec_err(conn: &wisp_storage::SqliteConnection, sql: &str) -> SqliteError {
    conn.execute(sql.to_owned(), Vec::new())
        .await
        .expect_err(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_value_types_round_trip() {
    let db = SqliteDatabase::in_memory().unwrap();
    let conn = db.connect().await.unwrap();
    let ddl = exec(
        &conn,
        "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n)",
        vec![],
    )
    .await;
    assert_eq!(ddl, QueryResult::default());

    let values = vec![
        SqlValue::Integer(i64::MIN),
        SqlValue::Real(-2.5),
        text("héllo ✓"),
        SqlValue::Blob(vec![0, 1, 255]),
        SqlValue::Null,
    ];
    let insert = exec(
        &conn,
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        values.clone(),
    )
    .await;
    assert!(insert.columns.is_empty() && insert.rows.is_empty());

    let result = exec(&conn, "SELECT i, r, s, b, n FROM t", vec![]).await;
    assert_eq!(result.columns, ["i", "r", "s", "b", "n"]);
    assert_eq!(result.rows, vec![values]);

    // Numbered parameters, and each cell keeps its own dynamic type.
    exec(
        &conn,
        "INSERT INTO t (i, r, s, b, n) VALUES (?2, ?1, ?1, NULL, ?3)",
        vec![SqlValue::Real(1.5), SqlValue::Integer(7), text("x")],
    )
    .await;
    let result = exec(&conn, "SELECT i, r, s, n FROM t WHERE b IS NULL", vec![]).await;
    assert_eq!(
        result.rows,
        vec![vec![
            SqlValue::Integer(7),
            SqlValue::Real(1.5),
            text("1.5"),
            text("x"),
        ]]
    );
    exec(
        &conn,
        "INSERT INTO t (i) VALUES (?)",
        vec![SqlValue::Real(0.25)],
    )
    .await;
    let result = exec(&conn, "SELECT i FROM t WHERE i > 0 AND i < 1", vec![]).await;
    assert_eq!(result.rows, vec![vec![SqlValue::Real(0.25)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlite_messages() {
    let db = SqliteDatabase::in_memory().unwrap();
    let conn = db.connect().await.unwrap();

    let err = exec_err(&conn, "SELEC 1").await;
    assert!(
        matches!(&err, SqliteError::Io(msg) if msg.contains(r#"near "SELEC": syntax error"#)),
        "{err:?}"
    );

    exec(&conn, "CREATE TABLE t (name TEXT UNIQUE)", vec![]).await;
    exec(&conn, "INSERT INTO t VALUES ('a')", vec![]).await;
    let err = exec_err(&conn, "INSERT INTO t VALUES ('a')").await;
    assert!(
        matches!(&err, SqliteError::Io(msg) if msg.contains("UNIQUE constraint failed: t.name")),
        "{err:?}"
    );

    let err = exec_err(&conn, "SELECT * FROM missing").await;
    assert_eq!(err, SqliteError::Io("no such table: missing".to_owned()));

    let err = conn
        .execute("SELECT ?, ?".to_owned(), vec![SqlValue::Null])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 parameters but 1"), "{err}");

    let err = exec_err(&conn, "SELECT 1; SELECT 2").await;
    assert!(err.to_string().contains("more than one statement"), "{err}");

    // The connection is still usable after errors.
    let rows = exec(&conn, "SELECT count(*) FROM t", vec![]).await.rows;
    assert_eq!(rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_gives_rows() {
    let db = SqliteDatabase::in_memory().unwrap();
    let conn = db.connect().await.unwrap();
    exec(
        &conn,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        vec![],
    )
    .await;
    let result = exec(
        &conn,
        "INSERT INTO t (name) VALUES (?), (?) RETURNING id, name",
        vec![text("a"), text("b")],
    )
    .await;
    assert_eq!(result.columns, ["id", "name"]);
    assert_eq!(
        result.rows,
        vec![
            vec![SqlValue::Integer(1), text("a")],
            vec![SqlValue::Integer(2), text("b")],
        ]
    );
    assert_eq!(conn.changes().await, 2);
    let count = exec(&conn, "SELECT count(*) FROM t", vec![]).await.rows;
    assert_eq!(count, vec![vec![SqlValue::Integer(2)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rowid_and_changes_are_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDatabase::file(&dir.path().join("app.db")).unwrap();
    let one = db.connect().await.unwrap();
    let two = db.connect().await.unwrap();
    assert_eq!(one.last_insert_rowid().await, 0);
    assert_eq!(one.changes().await, 0);

    exec(
        &one,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)",
        vec![],
    )
    .await;
    exec(&one, "INSERT INTO t (v) VALUES (1), (2), (3)", vec![]).await;
    assert_eq!(one.last_insert_rowid().await, 3);
    assert_eq!(one.changes().await, 3);

    exec(&two, "INSERT INTO t (v) VALUES (4)", vec![]).await;
    assert_eq!(two.last_insert_rowid().await, 4);
    assert_eq!(two.changes().await, 1);
    assert_eq!(one.last_insert_rowid().await, 3);
    assert_eq!(one.changes().await, 3);

    exec(&two, "UPDATE t SET v = v + 1", vec![]).await;
    assert_eq!(two.changes().await, 4);
    assert_eq!(one.changes().await, 3);
    // A SELECT leaves both untouched, as in SQLite.
    exec(&two, "SELECT * FROM t", vec![]).await;
    assert_eq!(two.changes().await, 4);
    assert_eq!(two.last_insert_rowid().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_is_shared_per_database_only() {
    let db = SqliteDatabase::in_memory().unwrap();
    let other = SqliteDatabase::in_memory().unwrap();
    assert_eq!(db.describe(), "sqlite in-memory database");
    {
        let writer = db.connect().await.unwrap();
        exec(&writer, "CREATE TABLE t (v TEXT)", vec![]).await;
        exec(&writer, "INSERT INTO t VALUES ('shared')", vec![]).await;
        let reader = db.clone().connect().await.unwrap();
        let rows = exec(&reader, "SELECT v FROM t", vec![]).await.rows;
        assert_eq!(rows, vec![vec![text("shared")]]);
    }
    // Still there after every connection closed, while `db` lives.
    let later = db.connect().await.unwrap();
    let rows = exec(&later, "SELECT v FROM t", vec![]).await.rows;
    assert_eq!(rows, vec![vec![text("shared")]]);

    let stranger = other.connect().await.unwrap();
    let err = exec_err(&stranger, "SELECT v FROM t").await;
    assert_eq!(err, SqliteError::Io("no such table: t".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_database_is_durable_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/app.db");
    {
        let db = SqliteDatabase::file(&path).unwrap();
        assert_eq!(db.describe(), format!("sqlite file {}", path.display()));
        let conn = db.connect().await.unwrap();
        exec(&conn, "CREATE TABLE t (v INTEGER)", vec![]).await;
        exec(&conn, "INSERT INTO t VALUES (42)", vec![]).await;
    }
    let db = SqliteDatabase::file(&path).unwrap();
    let conn = db.connect().await.unwrap();
    let rows = exec(&conn, "SELECT v FROM t", vec![]).await.rows;
    assert_eq!(rows, vec![vec![SqlValue::Integer(42)]]);
    let mode = exec(&conn, "PRAGMA journal_mode", vec![]).await.rows;
    assert_eq!(mode, vec![vec![text("wal")]]);
}

async fn concurrent_writers(db: SqliteDatabase) {
    let setup = db.connect().await.unwrap();
    exec(&setup, "CREATE TABLE t (task INTEGER, n INTEGER)", vec![]).await;
    let mut tasks = Vec::new();
    for task in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let conn = db.connect().await.unwrap();
            for n in 0..25 {
                conn.execute(
                    "INSERT INTO t VALUES (?, ?)".to_owned(),
                    vec![SqlValue::Integer(task), SqlValue::Integer(n)],
                )
                .await
                .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let rows = exec(
        &setup,
        "SELECT count(*), count(DISTINCT task) FROM t",
        vec![],
    )
    .await
    .rows;
    assert_eq!(
        rows,
        vec![vec![SqlValue::Integer(200), SqlValue::Integer(8)]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    concurrent_writers(SqliteDatabase::file(&dir.path().join("app.db")).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_memory() {
    concurrent_writers(SqliteDatabase::in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_database_is_database_full() {
    let db = SqliteDatabase::in_memory()
        .unwrap()
        .with_max_size(20 * 4096);
    let conn = db.connect().await.unwrap();
    exec(&conn, "CREATE TABLE t (b BLOB)", vec![]).await;
    // The guest cannot lift (or change) the limit from SQL.
    for pragma in [
        "PRAGMA max_page_count = 1000000000",
        "PRAGMA main.MAX_PAGE_COUNT = 1000000000",
    ] {
        let refused = exec_err(&conn, pragma).await.to_string();
        assert!(refused.contains("not authorized"), "{pragma}: {refused}");
    }
    let limit = exec(&conn, "PRAGMA max_page_count", vec![]).await;
    assert_eq!(limit.rows, vec![vec![SqlValue::Integer(20)]]);
    let err = conn
        .execute(
            "INSERT INTO t VALUES (?)".to_owned(),
            vec![SqlValue::Blob(vec![0; 1024 * 1024])],
        )
        .await
        .unwrap_err();
    assert_eq!(err, SqliteError::DatabaseFull);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statement_is_interrupted() {
    let db = SqliteDatabase::in_memory()
        .unwrap()
        .with_statement_timeout(Duration::from_millis(200));
    let conn = db.connect().await.unwrap();
    let started = std::time::Instant::now();
    let err = exec_err(
        &conn,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    .await;
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The connection is usable afterwards.
    let rows = exec(&conn, "SELECT 1", vec![]).await.rows;
    assert_eq!(rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_are_refused() {
    let db = SqliteDatabase::in_memory().unwrap();
    let conn = db.connect().await.unwrap();

    let rows = format!(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {}) SELECT x FROM c",
        MAX_RESULT_ROWS + 1
    );
    let err = exec_err(&conn, &rows).await;
    assert!(err.to_string().contains("rows"), "{err}");

    // 65 rows of 1 MiB each is over the 64 MiB cap.
    let bytes = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 65) \
                 SELECT zeroblob(1048576) FROM c";
    let err = exec_err(&conn, bytes).await;
    assert!(err.to_string().contains("MiB"), "{err}");

    // Just under both caps is fine.
    let ok = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 63) \
              SELECT zeroblob(1048576) FROM c";
    assert_eq!(exec(&conn, ok, vec![]).await.rows.len(), 63);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sql_cannot_attach_other_files_or_build_huge_values() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    let db = SqliteDatabase::file(&dir.path().join("app.db")).unwrap();
    let conn = db.connect().await.unwrap();
    let attach = format!("ATTACH DATABASE '{}' AS other", other.display());
    let err = exec_err(&conn, &attach).await;
    assert!(
        err.to_string().contains("too many attached databases"),
        "{err}"
    );
    assert!(!other.exists(), "ATTACH must not create the file");
    let err = exec_err(&conn, &format!("VACUUM INTO '{}'", other.display())).await;
    assert!(matches!(err, SqliteError::Io(_)), "{err}");
    assert!(!other.exists(), "VACUUM INTO must not create the file");
    // A single value past the result cap is refused by SQLite itself, before the
    // host copies it.
    let err = exec_err(&conn, "SELECT zeroblob(1000000000)").await;
    assert!(err.to_string().contains("too big"), "{err}");
    // The connection still works.
    let one = exec(&conn, "SELECT 1", vec![]).await;
    assert_eq!(one.rows, vec![vec![SqlValue::Integer(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_one_database_are_capped() {
    assert_eq!(wisp_storage::sqlite::DEFAULT_MAX_CONNECTIONS, 256);
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDatabase::file(&dir.path().join("capped.db"))
        .unwrap()
        .with_max_connections(3);
    // The cap is shared by clones: every instance of every component holds one.
    let clone = db.clone();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(clone.connect().await.unwrap());
    }
    let err = match db.connect().await {
        Ok(_) => panic!("a fourth connection opened past the cap of 3"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains("has 3 connections open, its limit") && err.contains("capped.db"),
        "{err}"
    );
    // A closed connection gives its place back.
    open.pop();
    let again = db.connect().await.unwrap();
    exec(&again, "CREATE TABLE t (x)", vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_grows_to_its_size_limit_and_no_further() {
    assert_eq!(wisp_storage::sqlite::DEFAULT_MAX_SIZE, 10 << 30);
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteDatabase::file(&dir.path().join("small.db"))
        .unwrap()
        .with_max_size(256 << 10);
    let conn = db.connect().await.unwrap();
    exec(&conn, "CREATE TABLE t (b BLOB)", vec![]).await;
    let mut inserted = 0;
    let full = loop {
        match conn
            .execute(
                "INSERT INTO t VALUES (?1)".to_owned(),
                vec![SqlValue::Blob(vec![7; 16 << 10])],
            )
            .await
        {
            Ok(_) => inserted += 1,
            Err(err) => break err,
        }
        assert!(inserted < 64, "1 MiB went into a 256 KiB database");
    };
    assert_eq!(full, SqliteError::DatabaseFull);
    assert!(full.to_string().contains("max_size_mb"), "{full}");
    assert!(inserted >= 8, "only {inserted} rows of 16 KiB fitted");
    // Deleting makes room again.
    exec(&conn, "DELETE FROM t", vec![]).await;
    exec(&conn, "INSERT INTO t VALUES (x'00')", vec![]).await;
}
