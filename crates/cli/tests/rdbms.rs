//! End-to-end tests of outbound PostgreSQL and MySQL against real servers, through the
//! `rdbms-v5` (spin-sdk 5.2: `fermyon:spin/postgres@2.0.0`, `spin:postgres@3.0.0`,
//! `@4.0.0`, `fermyon:spin/mysql@2.0.0`) and `rdbms-v7` (spin-sdk 7.0:
//! `spin:postgres@4.2.0` async with its row stream, `spin:mysql@3.0.0`) guests served
//! by the real `wisp up`.
//!
//! The servers: `WISP_TEST_POSTGRES_URL` (default
//! `postgres://wisp:wisp@127.0.0.1:5432/wisp_test?sslmode=disable`) and `WISP_TEST_MYSQL_URL` (default
//! `mysql://wisp:wisp@127.0.0.1:3306/wisp_test`), reached by the test through their own
//! command-line clients (`psql`, `mariadb`). `scripts/test-services.sh` installs and
//! starts both; a missing server fails the test with that hint. Every test works on
//! its own uniquely named tables, so the tests run in parallel.
//!
//! The guests write and check the values documented in `tests/programs/README.md`
//! ("The rdbms guests"); the test checks a guest-written row through the server's
//! client and inserts the row the guest then reads.

mod support;

use std::process::Command;

use support::{Wisp, app_dir, encode, request, toml_path};
use wisp_test_programs as programs;

const HINT: &str = "start the test databases with `scripts/test-services.sh` (PostgreSQL and MariaDB on 127.0.0.1, user wisp, password wisp, database wisp_test), or point WISP_TEST_POSTGRES_URL / WISP_TEST_MYSQL_URL at others";

/// The parts of a `scheme://user:password@host:port/database` URL.
#[derive(Clone)]
struct Url {
    url: String,
    user: String,
    password: String,
    host: String,
    port: u16,
    database: String,
}

impl Url {
    fn from_env(variable: &str, default: &str) -> Url {
        let url = std::env::var(variable).unwrap_or_else(|_| default.to_owned());
        let (scheme, rest) = url
            .split_once("://")
            .unwrap_or_else(|| panic!("{variable}={url} is not a URL"));
        let (credentials, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
        let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
        let (host_port, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, ""));
        let default_port = if scheme == "mysql" { 3306 } else { 5432 };
        Url {
            user: user.to_owned(),
            password: password.to_owned(),
            host: host.to_owned(),
            port: port.parse().unwrap_or(default_port),
            database: database.split('?').next().unwrap_or_default().to_owned(),
            url,
        }
    }

    /// `scheme://host:port`, the `allowed_outbound_hosts` entry.
    fn grant(&self, scheme: &str) -> String {
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// PostgreSQL, driven through `psql`.
struct Postgres {
    url: Url,
}

impl Postgres {
    fn connect() -> Postgres {
        let url = Url::from_env(
            "WISP_TEST_POSTGRES_URL",
            // The test server also speaks TLS, with a certificate from the test CA that
            // only `postgres_over_tls_*` trusts.
            "postgres://wisp:wisp@127.0.0.1:5432/wisp_test?sslmode=disable",
        );
        let postgres = Postgres { url };
        if let Err(e) = postgres.try_sql("SELECT 1") {
            panic!(
                "this test needs PostgreSQL at {}: {e}\n{HINT}",
                postgres.url.url
            );
        }
        postgres
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
            .arg(&self.url.url)
            .args(["-c", sql])
            .env("PGTZ", "UTC")
            .env("PGCLIENTENCODING", "UTF8")
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned())
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("psql {sql:?} failed: {e}"))
    }
}

/// MariaDB/MySQL, driven through the `mariadb` client.
struct Mysql {
    url: Url,
}

impl Mysql {
    fn connect() -> Mysql {
        let url = Url::from_env(
            "WISP_TEST_MYSQL_URL",
            "mysql://wisp:wisp@127.0.0.1:3306/wisp_test",
        );
        let mysql = Mysql { url };
        if let Err(e) = mysql.try_sql("SELECT 1") {
            panic!("this test needs MySQL at {}: {e}\n{HINT}", mysql.url.url);
        }
        mysql
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let client = if Command::new("mariadb").arg("--version").output().is_ok() {
            "mariadb"
        } else {
            "mysql"
        };
        let output = Command::new(client)
            .args(["-h", &self.url.host, "-P", &self.url.port.to_string()])
            .args(["-u", &self.url.user])
            .arg(format!("-p{}", self.url.password))
            .args([
                "--protocol=TCP",
                "--default-character-set=utf8mb4",
                "-N",
                "-B",
            ])
            .args(["-e", sql, &self.url.database])
            .output()
            .map_err(|e| format!("cannot run {client}: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_owned())
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mysql {sql:?} failed: {e}"))
    }
}

/// A table name no other test run uses.
fn unique_table(tag: &str) -> String {
    // SQL identifiers: underscores instead of dashes.
    support::unique(&format!("wisp_{tag}")).replace('-', "_")
}

/// `wisp up` serving `source` on `/...` with `allowed_outbound_hosts = grants`.
fn serve(source: &str, grants: &[String]) -> (tempfile::TempDir, Wisp) {
    serve_with(source, grants, None)
}

/// [`serve`] with a runtime config.
fn serve_with(
    source: &str,
    grants: &[String],
    runtime_config: Option<&str>,
) -> (tempfile::TempDir, Wisp) {
    let grants: Vec<String> = grants.iter().map(|g| format!("{g:?}")).collect();
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "rdbms"

[[trigger.http]]
route = "/..."
component = "rdbms"

[component.rdbms]
source = {source}
allowed_outbound_hosts = [{grants}]
"#,
        source = toml_path(source),
        grants = grants.join(", ")
    );
    let dir = app_dir(&manifest);
    let manifest = dir.path().join("spin.toml");
    let mut args = vec!["-f".to_owned(), manifest.to_str().unwrap().to_owned()];
    if let Some(config) = runtime_config {
        let path = dir.path().join("runtime-config.toml");
        std::fs::write(&path, config).unwrap();
        args.extend([
            "--runtime-config-file".to_owned(),
            path.to_str().unwrap().to_owned(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let wisp = Wisp::up(&args);
    (dir, wisp)
}

/// `METHOD /route?iface=I&address=A[&table=T]`: status and body.
fn call(
    wisp: &Wisp,
    method: &str,
    route: &str,
    iface: &str,
    address: &str,
    table: Option<&str>,
) -> (u16, String) {
    let mut path = format!("{route}?iface={iface}&address={}", encode(address));
    if let Some(table) = table {
        path.push_str(&format!("&table={table}"));
    }
    let response = request(wisp.addr, method, &path, &[], b"");
    (response.status, response.text())
}

fn expect(
    wisp: &Wisp,
    method: &str,
    route: &str,
    iface: &str,
    address: &str,
    table: Option<&str>,
    body: &str,
) {
    let got = call(wisp, method, route, iface, address, table);
    assert_eq!(
        got,
        (200, body.to_owned()),
        "{method} {route} iface={iface}\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

// ---------------------------------------------------------------------------
// PostgreSQL

/// Every column the PostgreSQL interfaces read or write; `d` has a type (inet) that
/// no WIT value has.
const PG_TABLE: &str = r#"(id integer PRIMARY KEY, b boolean, c "char", i16 smallint,
    i32 integer, i64 bigint, f32 real, f64 double precision, s text, bin bytea, n integer,
    dt date, tm time, ts timestamp, tz timestamptz, secs bigint,
    u uuid, j jsonb, dec numeric, r4 int4range, r8 int8range, rn numrange, a4 int4[],
    a8 int8[], ad numeric[], ast text[], iv interval, d inet)"#;

const PG_BASE: &str = "b, c, i16, i32, i64, f32, f64, s, bin, n";
const PG_TIME: &str = "dt, tm, ts, tz, secs";
const PG_V4: &str = "u, j, dec, r4, r8, rn, a4, a8, ad, ast, iv";

/// The documented values as psql prints them (`|`-separated, UTC), per column group.
const PG_BASE_TEXT: &str =
    r#"t|x|-32768|2147483647|-9223372036854775808|1.5|-0.25|héllo ✓ "q"|\x00ff10|"#;
const PG_TIME_TEXT: &str =
    "2024-02-29|13:45:30.123456|2024-02-29 13:45:30.123456|2024-02-29 13:45:30+00|1709214330";
const PG_V4_TEXT: &str = r#"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|{"a": [1, true, null]}|-12345.678900|[1,10)|[-5,)|(0.5,2.25]|{1,NULL,3}|{9223372036854775807}|{1.50,NULL}|{a,"b c",NULL}|1 year 2 mons 3 days 04:05:06.000007"#;

/// Row 2 as the test inserts it: every column, `d` included.
const PG_ROW_2: &str = r#"INSERT INTO {table} VALUES (2, true, 'x', -32768, 2147483647,
    -9223372036854775808, 1.5, -0.25, 'héllo ✓ "q"', '\x00ff10', NULL,
    '2024-02-29', '13:45:30.123456', '2024-02-29 13:45:30.123456', '2024-02-29 13:45:30+00',
    1709214330, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, true, null]}',
    -12345.678900, '[1,10)', '[-5,)', '(0.5,2.25]', '{1,NULL,3}', '{9223372036854775807}',
    '{1.50,NULL}', '{a,"b c",NULL}', '1 year 2 mons 3 days 04:05:06.000007', '10.0.0.1')"#;

/// The column groups an interface reads and writes.
fn pg_columns(iface: &str) -> (String, String) {
    match iface {
        "pg2" => (PG_BASE.to_owned(), PG_BASE_TEXT.to_owned()),
        "pg3" => (
            format!("{PG_BASE}, {PG_TIME}"),
            format!("{PG_BASE_TEXT}|{PG_TIME_TEXT}"),
        ),
        _ => (
            format!("{PG_BASE}, {PG_TIME}, {PG_V4}"),
            format!("{PG_BASE_TEXT}|{PG_TIME_TEXT}|{PG_V4_TEXT}"),
        ),
    }
}

/// The guest writes row 1, psql reads it back; psql inserts row 2, the guest reads
/// both and checks every value and column type.
fn pg_round_trip(postgres: &Postgres, wisp: &Wisp, iface: &str) {
    let table = unique_table(iface);
    postgres.sql(&format!("CREATE TABLE {table} {PG_TABLE}"));
    let address = &postgres.url.url;
    expect(
        wisp,
        "POST",
        "/write",
        iface,
        address,
        Some(&table),
        "written",
    );
    let (columns, text) = pg_columns(iface);
    let written = postgres.sql(&format!("SELECT {columns}, d FROM {table} WHERE id = 1"));
    assert_eq!(
        written,
        format!("{text}|"),
        "{iface}: row 1 as the guest wrote it"
    );
    postgres.sql(&PG_ROW_2.replace("{table}", &table));
    let read = call(wisp, "GET", "/read", iface, address, Some(&table));
    postgres.sql(&format!("DROP TABLE {table}"));
    assert_eq!(
        read,
        (200, "ok".to_owned()),
        "{iface} /read\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

#[test]
fn postgres_values_round_trip_through_spin_sdk_5() {
    let postgres = Postgres::connect();
    let (_dir, wisp) = serve(programs::RDBMS_V5, &[postgres.url.grant("postgres")]);
    for iface in ["pg2", "pg3", "pg4"] {
        pg_round_trip(&postgres, &wisp, iface);
    }
}

#[test]
fn postgres_values_round_trip_through_spin_sdk_7_streams() {
    let postgres = Postgres::connect();
    let (_dir, wisp) = serve(programs::RDBMS_V7, &[postgres.url.grant("postgres")]);
    pg_round_trip(&postgres, &wisp, "pg");
}

#[test]
fn postgres_grants_address_forms_and_tls_refusal() {
    let postgres = Postgres::connect();
    let url = &postgres.url;
    // No grant: Spin's variant and text, not a trap; the log says what to add.
    let (_dir, wisp) = serve(programs::RDBMS_V5, &[]);
    for iface in ["pg2", "pg3", "pg4"] {
        let (status, body) = call(&wisp, "GET", "/open", iface, &url.url, None);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            format!(
                "error: Error::ConnectionFailed(\"address postgres://{}:{} is not permitted\")",
                url.host, url.port
            ),
            "{iface}"
        );
    }
    assert!(
        wisp.wait_for_output(&format!(
            "add \"{}\" to the component's allowed_outbound_hosts",
            url.grant("postgres")
        )),
        "{}",
        wisp.stderr()
    );
    drop(wisp);
    let (_dir, wisp) = serve(programs::RDBMS_V7, &[]);
    let (_, body) = call(&wisp, "GET", "/open", "pg", &url.url, None);
    assert!(body.contains("is not permitted"), "v7: {body}");
    drop(wisp);

    // A postgres:// grant covers postgresql:// URLs and the key-value form.
    let (_dir, wisp) = serve(programs::RDBMS_V5, &[url.grant("postgres")]);
    let postgresql = url.url.replacen("postgres://", "postgresql://", 1);
    let key_value = format!(
        "host={} port={} user={} password={} dbname={} sslmode=disable",
        url.host, url.port, url.user, url.password, url.database
    );
    for address in [&url.url, &postgresql, &key_value] {
        expect(&wisp, "GET", "/open", "pg4", address, None, "opened");
    }
    // A file on the host cannot be named by a component.
    let (_, body) = call(
        &wisp,
        "GET",
        "/open",
        "pg4",
        &format!("{key_value} sslrootcert=/etc/passwd"),
        None,
    );
    assert!(
        body.contains("sslrootcert names a file on the host") && body.contains("[[client_tls]]"),
        "{body}"
    );
    // A host outside the grant is refused even with a granted port.
    let (_, body) = call(
        &wisp,
        "GET",
        "/open",
        "pg3",
        "postgres://wisp@127.0.0.2:5432/x",
        None,
    );
    assert!(
        body.contains("address postgres://127.0.0.2:5432 is not permitted"),
        "{body}"
    );
}

#[test]
fn postgres_over_tls_checks_the_certificate() {
    let postgres = Postgres::connect();
    let url = &postgres.url;
    let at = |host: &str, mode: &str| {
        format!(
            "postgres://{}:{}@{host}:{}/{}?sslmode={mode}",
            url.user, url.password, url.port, url.database
        )
    };
    let grants = [
        format!("postgres://localhost:{}", url.port),
        format!("postgres://127.0.0.1:{}", url.port),
    ];
    // Every mode that uses TLS checks the certificate, `prefer` (the default) included:
    // the test CA is not trusted yet.
    let (_dir, wisp) = serve(programs::RDBMS_V5, &grants);
    for mode in ["require", "prefer", "verify-full"] {
        let (_, body) = call(&wisp, "GET", "/open", "pg4", &at("localhost", mode), None);
        assert!(
            body.contains("UnknownIssuer") && body.contains("[[client_tls]]"),
            "{mode}: {body}"
        );
    }
    assert!(
        wisp.wait_for_output("component `rdbms`: TLS with localhost: invalid peer certificate"),
        "no log line naming the component and host:\n{}",
        wisp.stderr()
    );
    drop(wisp);

    // Trusted through [[client_tls]]: the session is encrypted, on every version.
    let ca = support::services_ca();
    let config = format!(
        "[[client_tls]]\ncomponent_ids = [\"rdbms\"]\nhosts = [\"localhost\", \"127.0.0.1\"]\nca_roots_file = {:?}\n",
        ca.to_str().unwrap()
    );
    let (_dir, wisp) = serve_with(programs::RDBMS_V5, &grants, Some(&config));
    for iface in ["pg2", "pg3", "pg4"] {
        for mode in ["verify-full", "require"] {
            let (status, body) = call(&wisp, "GET", "/reuse", iface, &at("localhost", mode), None);
            let pid = body
                .strip_prefix("same ")
                .unwrap_or_else(|| panic!("{iface} {mode}: {status} {body}\n{}", wisp.stderr()));
            assert_eq!(
                postgres.sql(&format!("SELECT ssl FROM pg_stat_ssl WHERE pid = {pid}")),
                "t",
                "{iface} {mode}"
            );
        }
    }
    // By address: the certificate names only `localhost`, so verify-full refuses it and
    // verify-ca (the chain alone) accepts it.
    let (_, body) = call(
        &wisp,
        "GET",
        "/open",
        "pg4",
        &at("127.0.0.1", "verify-full"),
        None,
    );
    assert!(
        body.contains("not valid for name") && body.contains("sslmode=verify-ca"),
        "{body}"
    );
    expect(
        &wisp,
        "GET",
        "/open",
        "pg4",
        &at("127.0.0.1", "verify-ca"),
        None,
        "opened",
    );
    // The role `wispcert` must present a client certificate from the test CA
    // (`clientcert=verify-ca` in pg_hba.conf):
    // refused with the roots alone, opened once the entry names the test client
    // certificate.
    let as_cert_user = format!(
        "postgres://wispcert:wisp@localhost:{}/{}?sslmode=verify-full",
        url.port, url.database
    );
    let (_, body) = call(&wisp, "GET", "/open", "pg4", &as_cert_user, None);
    assert!(body.contains("client certificate"), "{body}");
    drop(wisp);
    let with_client = format!(
        "{config}cert_chain_file = {:?}\nprivate_key_file = {:?}\n",
        ca.with_file_name("client.pem").to_str().unwrap(),
        ca.with_file_name("client.key").to_str().unwrap()
    );
    let (_dir, wisp) = serve_with(programs::RDBMS_V5, &grants, Some(&with_client));
    expect(&wisp, "GET", "/open", "pg4", &as_cert_user, None, "opened");
    drop(wisp);

    // spin-sdk 7: the CA given to `set-ca-root` is trusted for that connection.
    let (_dir, wisp) = serve(programs::RDBMS_V7, &grants);
    let ca_root = |address: &str, pem: &[u8]| {
        let path = format!("/ca-root?iface=pg&address={}", encode(address));
        request(wisp.addr, "POST", &path, &[], pem).text()
    };
    let pem = std::fs::read(&ca).unwrap();
    let body = ca_root(&at("localhost", "verify-full"), &pem);
    assert_eq!(body, "ssl true", "{}", wisp.stderr());
    let body = ca_root(&at("localhost", "require"), b"not a certificate");
    assert!(body.contains("invalid root certificate"), "{body}");
    let (_, body) = call(
        &wisp,
        "GET",
        "/open",
        "pg",
        &at("localhost", "require"),
        None,
    );
    assert!(body.contains("UnknownIssuer"), "{body}");
}

#[test]
fn postgres_sql_errors_carry_the_server_message() {
    let postgres = Postgres::connect();
    let grant = [postgres.url.grant("postgres")];
    let address = &postgres.url.url;
    let (_dir, wisp) = serve(programs::RDBMS_V5, &grant);
    for iface in ["pg2", "pg3"] {
        let (_, body) = call(&wisp, "GET", "/error", iface, address, None);
        assert!(
            body.starts_with("error: Error::QueryFailed(")
                && body.contains(r#"relation \"wisp_no_such_table\" does not exist"#),
            "{iface}: {body}"
        );
    }
    let (_, body) = call(&wisp, "GET", "/error", "pg4", address, None);
    assert!(
        body.contains("QueryFailed(QueryError::DbError(DbError {")
            && body.contains(r#"code: "42P01""#)
            && body.contains(r#"message: "relation \"wisp_no_such_table\" does not exist""#),
        "pg4: {body}"
    );
    drop(wisp);
    let (_dir, wisp) = serve(programs::RDBMS_V7, &grant);
    let (_, body) = call(&wisp, "GET", "/error", "pg", address, None);
    assert!(body.contains(r#"code: "42P01""#), "v7: {body}");
}

#[test]
fn postgres_connections_are_reused_within_and_across_requests() {
    let postgres = Postgres::connect();
    let grant = [postgres.url.grant("postgres")];
    let address = &postgres.url.url;
    for (source, ifaces) in [
        (programs::RDBMS_V5, &["pg2", "pg3", "pg4"][..]),
        (programs::RDBMS_V7, &["pg"][..]),
    ] {
        let (_dir, wisp) = serve(source, &grant);
        let mut ids = Vec::new();
        for iface in ifaces.iter().chain(ifaces) {
            let (status, body) = call(&wisp, "GET", "/reuse", iface, address, None);
            let id = body.strip_prefix("same ").unwrap_or_else(|| {
                panic!("{iface}: {status} {body}\nwisp stderr:\n{}", wisp.stderr())
            });
            ids.push(id.to_owned());
        }
        // The pool is keyed by the connection string, so every request (and every
        // interface version) got the same server connection.
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }
}

// ---------------------------------------------------------------------------
// MySQL

const MYSQL_TABLE: &str = "(id INT PRIMARY KEY, b BIT(1), i8 TINYINT, u8 TINYINT UNSIGNED,
    i16 SMALLINT, u16 SMALLINT UNSIGNED, i32 INT, u32 INT UNSIGNED, i64 BIGINT,
    u64 BIGINT UNSIGNED, f32 FLOAT, f64 DOUBLE, s VARCHAR(64) CHARACTER SET utf8mb4,
    bin VARBINARY(16), n INT NULL, dm DECIMAL(12,3), dt DATETIME(6), d GEOMETRY NULL)";

const MYSQL_ROW_1: &str = "SELECT b+0, i8, u8, i16, u16, i32, u32, i64, u64, f32, f64, s, HEX(bin), n, dm, dt, d FROM {table} WHERE id = 1";

const MYSQL_ROW_1_TEXT: &str = "1\t-128\t255\t-32768\t65535\t-2147483648\t4294967295\t9223372036854775807\t18446744073709551615\t1.5\t-0.25\théllo ✓ \"q\"\t00FF10\tNULL\t-12.345\t2024-02-29 13:45:30.123456\tNULL";

const MYSQL_ROW_2: &str = "INSERT INTO {table} VALUES (2, b'1', -128, 255, -32768, 65535,
    -2147483648, 4294967295, 9223372036854775807, 18446744073709551615, 1.5, -0.25,
    'héllo ✓ \"q\"', X'00FF10', NULL, -12.345, '2024-02-29 13:45:30.123456',
    ST_GeomFromText('POINT(1 2)'))";

fn mysql_round_trip(mysql: &Mysql, wisp: &Wisp, iface: &str) {
    let table = unique_table(iface);
    mysql.sql(&format!("CREATE TABLE {table} {MYSQL_TABLE}"));
    let address = &mysql.url.url;
    expect(
        wisp,
        "POST",
        "/write",
        iface,
        address,
        Some(&table),
        "written",
    );
    let written = mysql.sql(&MYSQL_ROW_1.replace("{table}", &table));
    assert_eq!(
        written, MYSQL_ROW_1_TEXT,
        "{iface}: row 1 as the guest wrote it"
    );
    mysql.sql(&MYSQL_ROW_2.replace("{table}", &table));
    let read = call(wisp, "GET", "/read", iface, address, Some(&table));
    mysql.sql(&format!("DROP TABLE {table}"));
    assert_eq!(
        read,
        (200, "ok".to_owned()),
        "{iface} /read\nwisp stderr:\n{}",
        wisp.stderr()
    );
}

#[test]
fn mysql_values_round_trip_through_spin_sdk_5() {
    let mysql = Mysql::connect();
    let (_dir, wisp) = serve(programs::RDBMS_V5, &[mysql.url.grant("mysql")]);
    mysql_round_trip(&mysql, &wisp, "mysql");
}

#[test]
fn mysql_values_round_trip_through_spin_sdk_7_streams() {
    let mysql = Mysql::connect();
    let (_dir, wisp) = serve(programs::RDBMS_V7, &[mysql.url.grant("mysql")]);
    mysql_round_trip(&mysql, &wisp, "mysql");
}

#[test]
fn mysql_grants_errors_and_reuse() {
    let mysql = Mysql::connect();
    let url = &mysql.url;
    for source in [programs::RDBMS_V5, programs::RDBMS_V7] {
        // No grant: Spin's variant and text (the address as passed); the log says what
        // to add and never carries the password.
        let (_dir, wisp) = serve(source, &[]);
        let (status, body) = call(&wisp, "GET", "/open", "mysql", &url.url, None);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains(&format!(
                "Error::ConnectionFailed(\"address {} is not permitted\")",
                url.url
            )),
            "{body}"
        );
        assert!(
            wisp.wait_for_output(&format!(
                "add \"{}\" to the component's allowed_outbound_hosts",
                url.grant("mysql")
            )),
            "{}",
            wisp.stderr()
        );
        assert!(!wisp.stderr().contains(&url.url), "{}", wisp.stderr());
        drop(wisp);

        let (_dir, wisp) = serve(source, &[url.grant("mysql")]);
        expect(&wisp, "GET", "/open", "mysql", &url.url, None, "opened");
        // TLS is asked for, and the test CA is not trusted here.
        let (_, body) = call(
            &wisp,
            "GET",
            "/open",
            "mysql",
            &format!("{}?require_ssl=true", url.url),
            None,
        );
        assert!(body.contains("UnknownIssuer"), "{body}");
        // A SQL error carries the server's message.
        let (_, body) = call(&wisp, "GET", "/error", "mysql", &url.url, None);
        assert!(
            body.contains("Error::QueryFailed(")
                && body.contains(&format!(
                    "Table '{}.wisp_no_such_table' doesn't exist",
                    url.database
                )),
            "{body}"
        );
        // The same server connection serves two opens in a request, and the next request.
        let mut ids = Vec::new();
        for _ in 0..2 {
            let (status, body) = call(&wisp, "GET", "/reuse", "mysql", &url.url, None);
            let id = body
                .strip_prefix("same ")
                .unwrap_or_else(|| panic!("{status} {body}\nwisp stderr:\n{}", wisp.stderr()));
            ids.push(id.to_owned());
        }
        assert_eq!(ids[0], ids[1], "across requests");
    }
}

// ---------------------------------------------------------------------------
// Both

#[test]
fn streamed_queries_deliver_many_rows_and_survive_an_early_drop() {
    let postgres = Postgres::connect();
    let mysql = Mysql::connect();
    let grants = [postgres.url.grant("postgres"), mysql.url.grant("mysql")];
    let (_dir, wisp) = serve(programs::RDBMS_V7, &grants);
    // More rows than the host buffers between the database and the guest (64).
    let path = |iface: &str, address: &str, n: u32| {
        format!("/stream?iface={iface}&address={}&n={n}", encode(address))
    };
    for (iface, address, n) in [
        ("pg", &postgres.url.url, 5000),
        ("mysql", &mysql.url.url, 1000),
    ] {
        let response = request(wisp.addr, "GET", &path(iface, address, n), &[], b"");
        let sum = u64::from(n) * (u64::from(n) + 1) / 2;
        assert_eq!(
            (response.status, response.text()),
            (200, format!("rows {n} sum {sum}, partial read ok")),
            "{iface}\nwisp stderr:\n{}",
            wisp.stderr()
        );
    }
}

#[test]
fn granted_hosts_in_blocked_networks_are_refused() {
    let postgres = Postgres::connect();
    let mysql = Mysql::connect();
    let grants: Vec<String> = [postgres.url.grant("postgres"), mysql.url.grant("mysql")]
        .iter()
        .map(|g| format!("{g:?}"))
        .collect();
    let manifest = format!(
        r#"spin_manifest_version = 2
[application]
name = "rdbms"

[[trigger.http]]
route = "/..."
component = "rdbms"

[component.rdbms]
source = {source}
allowed_outbound_hosts = [{grants}]
"#,
        source = toml_path(programs::RDBMS_V5),
        grants = grants.join(", ")
    );
    let dir = app_dir(&manifest);
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        "[outbound_networking]\nblock_networks = [\"private\"]\n",
    )
    .unwrap();
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--runtime-config-file",
        config.to_str().unwrap(),
    ]);
    for (iface, address) in [("pg4", &postgres.url.url), ("mysql", &mysql.url.url)] {
        let (status, body) = call(&wisp, "GET", "/open", iface, address, None);
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("Error::ConnectionFailed(")
                && body.contains("resolves only to blocked addresses"),
            "{iface}: {body}"
        );
    }
}

#[test]
fn concurrent_requests_share_the_pool() {
    let postgres = Postgres::connect();
    let mysql = Mysql::connect();
    let grants = [postgres.url.grant("postgres"), mysql.url.grant("mysql")];
    let (_dir, wisp) = serve(programs::RDBMS_V5, &grants);
    let addr = wisp.addr;
    for (iface, address) in [("pg3", &postgres.url.url), ("mysql", &mysql.url.url)] {
        let path = format!("/reuse?iface={iface}&address={}", encode(address));
        let bodies: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let path = &path;
                    scope.spawn(move || {
                        let response = request(addr, "GET", path, &[], b"");
                        (response.status, response.text())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Concurrent requests may hand connections to each other between their two
        // opens, so each answers `same <id>` or `different <a> <b>`.
        let mut seen = Vec::new();
        for (status, body) in &bodies {
            let ids = body
                .strip_prefix("same ")
                .or_else(|| body.strip_prefix("different "))
                .filter(|_| *status == 200)
                .unwrap_or_else(|| {
                    panic!("{iface}: {status} {body}\nwisp stderr:\n{}", wisp.stderr())
                });
            seen.extend(ids.split(' ').map(str::to_owned));
        }
        // Afterwards the next request is served from the pool the burst filled.
        let (status, body) = call(&wisp, "GET", "/reuse", iface, address, None);
        let id = body
            .strip_prefix("same ")
            .unwrap_or_else(|| panic!("{iface}: {status} {body}"));
        assert!(
            seen.iter().any(|s| s == id),
            "{iface}: {id} is a new connection; the burst used {seen:?}"
        );
    }
}

#[test]
fn connections_left_in_a_transaction_are_not_reused() {
    let postgres = Postgres::connect();
    let mysql = Mysql::connect();
    let grants = [postgres.url.grant("postgres"), mysql.url.grant("mysql")];
    let (_dir, wisp) = serve(programs::RDBMS_V5, &grants);
    for (iface, address) in [
        ("pg2", &postgres.url.url),
        ("pg4", &postgres.url.url),
        ("mysql", &mysql.url.url),
    ] {
        let (status, body) = call(&wisp, "GET", "/tx", iface, address, None);
        assert!(
            status == 200 && body.starts_with("different "),
            "{iface}: {status} {body}\nwisp stderr:\n{}",
            wisp.stderr()
        );
        // A clean connection still goes back to the pool.
        let (status, body) = call(&wisp, "GET", "/reuse", iface, address, None);
        assert!(body.starts_with("same "), "{iface}: {status} {body}");
    }
}

#[test]
fn mysql_over_tls_checks_the_certificate() {
    let mysql = Mysql::connect();
    let url = &mysql.url;
    let at = |host: &str, options: &str| {
        format!(
            "mysql://{}:{}@{host}:{}/{}?{options}",
            url.user, url.password, url.port, url.database
        )
    };
    let grants = [
        format!("mysql://localhost:{}", url.port),
        format!("mysql://127.0.0.1:{}", url.port),
    ];
    let cipher =
        |wisp: &Wisp, address: &str| call(wisp, "GET", "/cipher", "mysql", address, None).1;
    // The test CA is not trusted: every way of asking for TLS checks the certificate.
    let (_dir, wisp) = serve(programs::RDBMS_V7, &grants);
    for options in [
        "ssl-mode=REQUIRED",
        "require_ssl=true",
        "ssl-mode=VERIFY_IDENTITY",
    ] {
        let body = cipher(&wisp, &at("localhost", options));
        assert!(body.contains("UnknownIssuer"), "{options}: {body}");
    }
    // verify_ca=false skips the check, encrypted all the same, with a warning.
    let body = cipher(&wisp, &at("localhost", "require_ssl=true&verify_ca=false"));
    assert!(body.starts_with("cipher TLS"), "{body}");
    assert!(
        wisp.wait_for_output("does not check the server's certificate"),
        "{}",
        wisp.stderr()
    );
    // Plain TCP unless asked.
    assert_eq!(
        cipher(&wisp, &at("localhost", "ssl-mode=DISABLED")),
        "cipher "
    );
    drop(wisp);

    // Trusted through [[client_tls]].
    let config = format!(
        "[[client_tls]]\ncomponent_ids = [\"rdbms\"]\nhosts = [\"localhost\", \"127.0.0.1\"]\nca_roots_file = {:?}\n",
        support::services_ca().to_str().unwrap()
    );
    let (_dir, wisp) = serve_with(programs::RDBMS_V7, &grants, Some(&config));
    for options in [
        "ssl-mode=VERIFY_IDENTITY",
        "require_ssl=true",
        "ssl-mode=PREFERRED",
    ] {
        let body = cipher(&wisp, &at("localhost", options));
        assert!(
            body.starts_with("cipher TLS"),
            "{options}: {body}\n{}",
            wisp.stderr()
        );
    }
    // By address the name does not match; checking the chain alone is refused with a
    // reason (the driver cannot do it with rustls 0.23).
    let body = cipher(&wisp, &at("127.0.0.1", "ssl-mode=VERIFY_IDENTITY"));
    assert!(body.contains("not valid for name"), "{body}");
    let body = cipher(&wisp, &at("127.0.0.1", "ssl-mode=VERIFY_CA"));
    assert!(body.contains("not supported for MySQL yet"), "{body}");

    // The user `wispcert` must present a client certificate: refused with the roots
    // alone, accepted once the entry names the test client certificate.
    let as_cert_user = format!(
        "mysql://wispcert:wisp@localhost:{}/{}?ssl-mode=VERIFY_IDENTITY",
        url.port, url.database
    );
    let body = cipher(&wisp, &as_cert_user);
    assert!(body.contains("Access denied"), "{body}");
    drop(wisp);
    let ca = support::services_ca();
    let with_client = format!(
        "{config}cert_chain_file = {:?}\nprivate_key_file = {:?}\n",
        ca.with_file_name("client.pem").to_str().unwrap(),
        ca.with_file_name("client.key").to_str().unwrap()
    );
    let (_dir, wisp) = serve_with(programs::RDBMS_V7, &grants, Some(&with_client));
    let body = cipher(&wisp, &as_cert_user);
    assert!(body.starts_with("cipher TLS"), "{body}\n{}", wisp.stderr());
    drop(wisp);

    // spin-sdk 5 (fermyon:spin/mysql@2.0.0) over TLS: a full round trip.
    let (_dir, wisp) = serve_with(programs::RDBMS_V5, &grants, Some(&config));
    let address = at("localhost", "ssl-mode=VERIFY_IDENTITY");
    let (status, body) = call(&wisp, "GET", "/reuse", "mysql", &address, None);
    assert!(
        body.starts_with("same "),
        "{status} {body}\n{}",
        wisp.stderr()
    );
}

/// Spin 1.x's unversioned `fermyon:spin/postgres` and `mysql` (the `spin1-http` guest,
/// as a spin-sdk-1.x-style core module): an address per call, each call on a pooled
/// connection, the row written by the guest visible to the server's client while it
/// exists, and an address not granted refused with `connection-failed`.
#[test]
fn spin1_postgres_and_mysql_take_an_address_per_call() {
    let postgres = Postgres::connect();
    let mysql = Mysql::connect();
    let (_dir, wisp) = serve(
        programs::SPIN1_HTTP_WASIP1,
        &[postgres.url.grant("postgres"), mysql.url.grant("mysql")],
    );
    for (route, url, affected) in [
        ("/pg", &postgres.url.url, ["Ok(0)", "Ok(1)", "Ok(0)"]),
        ("/mysql", &mysql.url.url, ["Ok(())", "Ok(())", "Ok(())"]),
    ] {
        let table = unique_table("spin1");
        let path = format!("{route}?table={table}&address={}", encode(url));
        let response = request(wisp.addr, "GET", &path, &[], b"");
        assert_eq!(
            (response.status, response.text()),
            (
                200,
                format!(
                    "create: {}\n\
                     insert: {}\n\
                     select: [\"id:DbDataType::Int32\", \"name:DbDataType::Str\"] [[DbValue::Int32(1), DbValue::Str(\"one\")]]\n\
                     error: query-failed\n\
                     drop: {}\n",
                    affected[0], affected[1], affected[2]
                )
            ),
            "{route}: {}",
            wisp.stderr()
        );
    }
    // The guest dropped its tables: nothing is left behind on either server.
    assert_eq!(
        postgres.sql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'wisp_spin1%'"),
        "0"
    );
    // An address outside the grants: each call fails with the interface's own case.
    let denied = format!(
        "/pg?table=t&address={}",
        encode("postgres://wisp:wisp@127.0.0.1:1/wisp_test")
    );
    let response = request(wisp.addr, "GET", &denied, &[], b"");
    assert!(
        response
            .text()
            .starts_with("create: Err(PgError::ConnectionFailed(\"address postgres://127.0.0.1:1 is not permitted\"))"),
        "{}",
        response.text()
    );
}
