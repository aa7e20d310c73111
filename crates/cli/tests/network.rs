//! End-to-end tests of outbound MQTT (`fermyon:spin/mqtt@2.0.0`,
//! `spin:mqtt@3.0.0`) and grant-gated `wasi:sockets` TCP, driven through the
//! `net-v5` (spin-sdk 5.2, WASI 0.2) and `net-v7` (spin-sdk 7.0, WASI 0.3)
//! guests served by the real `wisp up`.
//!
//! MQTT needs the mosquitto broker of `scripts/test-services.sh` on
//! 127.0.0.1:1883 (user `wisp`, password `wisp`); the test subscribes to a
//! fresh topic before the guest publishes and compares what arrives. TCP tests
//! start their own echo server on 127.0.0.1:<random>.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS};
use support::{HttpResponse, Wisp, app_dir, encode, manifest_one, request, unique};
use wisp_test_programs as programs;

const BROKER: &str = "127.0.0.1:1883";
const START_SERVICES: &str = "run scripts/test-services.sh to start mosquitto on 127.0.0.1:1883 with user wisp / password wisp";

/// A fresh app serving `source` as component `net` on `/...` with `grants`
/// as its `allowed_outbound_hosts`, and an optional runtime config.
struct App {
    dir: tempfile::TempDir,
    runtime_config: Option<PathBuf>,
}

impl App {
    fn new(source: &str, grants: &[&str]) -> App {
        let grants = grants
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let manifest = manifest_one(
            "/...",
            "net",
            source,
            &format!("allowed_outbound_hosts = [{grants}]"),
        );
        App {
            dir: app_dir(&manifest),
            runtime_config: None,
        }
    }

    fn with_runtime_config(mut self, contents: &str) -> App {
        let path = self.dir.path().join("runtime-config.toml");
        std::fs::write(&path, contents).unwrap();
        self.runtime_config = Some(path);
        self
    }

    fn up(&self) -> Wisp {
        let manifest = self.dir.path().join("spin.toml");
        let mut args = vec!["-f".to_owned(), manifest.display().to_string()];
        if let Some(config) = &self.runtime_config {
            args.push("--runtime-config-file".to_owned());
            args.push(config.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Wisp::up(&args)
    }
}

fn text_of(response: &HttpResponse) -> (u16, String) {
    (response.status, response.text())
}

// ---------------------------------------------------------------------------
// MQTT

/// A subscription to one topic on the test broker, made before the guest
/// publishes.
struct Subscriber {
    client: Client,
    messages: mpsc::Receiver<Publish>,
}

impl Subscriber {
    fn new(topic: &str) -> Subscriber {
        if std::net::TcpStream::connect_timeout(&BROKER.parse().unwrap(), Duration::from_secs(2))
            .is_err()
        {
            panic!("no MQTT broker on {BROKER}; {START_SERVICES}");
        }
        let mut options = MqttOptions::new(unique("wisp-test-sub"), "127.0.0.1", 1883);
        options
            .set_credentials("wisp", "wisp")
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(4 * 1024 * 1024, 64 * 1024);
        let (client, mut connection) = Client::new(options, 16);
        client
            .subscribe(topic, QoS::ExactlyOnce)
            .expect("queue SUBSCRIBE");
        let (ready_tx, ready) = mpsc::channel();
        let (messages_tx, messages) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if messages_tx.send(publish).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        break;
                    }
                }
            }
        });
        match ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("cannot subscribe on {BROKER}: {e}; {START_SERVICES}"),
            Err(_) => panic!("no SUBACK from {BROKER} within 10 s; {START_SERVICES}"),
        }
        Subscriber { client, messages }
    }

    /// Exactly `n` messages: waits for them, then makes sure no more follow.
    fn expect(&self, n: usize) -> Vec<Publish> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.messages.recv_timeout(Duration::from_secs(10)) {
                Ok(publish) => got.push(publish),
                Err(_) => panic!("got {} of {n} messages", got.len()),
            }
        }
        if let Ok(extra) = self.messages.recv_timeout(Duration::from_millis(300)) {
            panic!("a message beyond the {n} expected: {extra:?}");
        }
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// `POST /mqtt/publish` with `payload` as the body.
fn publish(
    wisp: &Wisp,
    address: &str,
    password: &str,
    topic: &str,
    qos: u8,
    count: u32,
    payload: &[u8],
) -> (u16, String) {
    let path = format!(
        "/mqtt/publish?address={}&username=wisp&password={}&topic={}&qos={qos}&count={count}",
        encode(address),
        encode(password),
        encode(topic)
    );
    text_of(&request(wisp.addr, "POST", &path, &[], payload))
}

/// Every byte value, so any mangling of the payload shows.
fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

fn publishes_with_each_qos(source: &str) {
    let app = App::new(source, &["mqtt://127.0.0.1:1883"]);
    let wisp = app.up();
    for (qos, expected) in [
        (0, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ] {
        let topic = unique(&format!("wisp/test/qos{qos}"));
        let subscriber = Subscriber::new(&topic);
        let payload = binary_payload(1000 + qos as usize);
        assert_eq!(
            publish(
                &wisp,
                "mqtt://127.0.0.1:1883",
                "wisp",
                &topic,
                qos,
                3,
                &payload
            ),
            (200, "published 3".to_owned()),
            "QoS {qos}\nwisp stderr:\n{}",
            wisp.stderr()
        );
        for message in subscriber.expect(3) {
            assert_eq!(message.topic, topic);
            assert_eq!(message.qos, expected, "delivered at the QoS published");
            assert_eq!(message.payload.as_ref(), payload.as_slice());
        }
    }
    // A payload far past rumqttc's 10 KiB default packet limit, and an empty one.
    let topic = unique("wisp/test/sizes");
    let subscriber = Subscriber::new(&topic);
    let big = binary_payload(1024 * 1024);
    assert_eq!(
        publish(&wisp, "mqtt://127.0.0.1:1883", "wisp", &topic, 1, 1, &big),
        (200, "published 1".to_owned())
    );
    assert_eq!(
        publish(&wisp, "mqtt://127.0.0.1:1883", "wisp", &topic, 1, 1, b""),
        (200, "published 1".to_owned())
    );
    let got = subscriber.expect(2);
    assert_eq!(got[0].payload.len(), big.len());
    assert!(
        got[0].payload.as_ref() == big.as_slice(),
        "1 MiB payload differs"
    );
    assert!(got[1].payload.is_empty());
}

#[test]
fn mqtt_v5_publishes_with_qos_0_1_and_2() {
    publishes_with_each_qos(programs::NET_V5);
}

#[test]
fn mqtt_v7_publishes_with_qos_0_1_and_2() {
    publishes_with_each_qos(programs::NET_V7);
}

#[test]
fn mqtt_grant_by_name_connects_to_its_address() {
    let app = App::new(programs::NET_V7, &["mqtt://localhost:1883"]);
    let wisp = app.up();
    let topic = unique("wisp/test/name");
    let subscriber = Subscriber::new(&topic);
    assert_eq!(
        publish(&wisp, "mqtt://localhost", "wisp", &topic, 2, 1, b"by name"),
        (200, "published 1".to_owned()),
        "wisp stderr:\n{}",
        wisp.stderr()
    );
    assert_eq!(subscriber.expect(1)[0].payload.as_ref(), b"by name");
}

#[test]
fn mqtt_over_tls_checks_the_certificate() {
    // The test services' mosquitto also listens with TLS on :8883, with a certificate
    // from the test CA for `localhost` only; the subscriber reads the plain listener.
    let address = "mqtts://localhost:8883";
    let trusted = format!(
        "[[client_tls]]\ncomponent_ids = [\"net\"]\nhosts = [\"localhost\", \"127.0.0.1\"]\nca_roots_file = {:?}\n",
        support::services_ca().to_str().unwrap()
    );
    for source in [programs::NET_V5, programs::NET_V7] {
        let grants = ["mqtts://localhost:8883", "mqtts://127.0.0.1:8883"];
        // Untrusted CA: refused at open, saying why and how to trust it.
        let wisp = App::new(source, &grants).up();
        let topic = unique("wisp/test/tls");
        let (status, body) = publish(&wisp, address, "wisp", &topic, 1, 1, b"x");
        assert_eq!(status, 200);
        assert!(
            body.starts_with("error: Error::ConnectionFailed(") && body.contains("UnknownIssuer"),
            "{body}"
        );
        drop(wisp);

        // Trusted through [[client_tls]]: delivered, at every QoS.
        let wisp = App::new(source, &grants).with_runtime_config(&trusted).up();
        for qos in [0, 1, 2] {
            let topic = unique(&format!("wisp/test/tls{qos}"));
            let subscriber = Subscriber::new(&topic);
            let payload = binary_payload(2000);
            assert_eq!(
                publish(&wisp, address, "wisp", &topic, qos, 2, &payload),
                (200, "published 2".to_owned()),
                "QoS {qos}\n{}",
                wisp.stderr()
            );
            for message in subscriber.expect(2) {
                assert_eq!(message.payload.as_ref(), payload.as_slice());
            }
        }
        // By address: the certificate names only `localhost`.
        let (_, body) = publish(&wisp, "mqtts://127.0.0.1:8883", "wisp", "t", 0, 1, b"x");
        assert!(body.contains("not valid for name"), "{body}");
    }

    // The listener on :8884 requires a client certificate: refused with the roots alone,
    // delivered once the entry names the test client certificate.
    let ca = support::services_ca();
    let with_client = format!(
        "{trusted}cert_chain_file = {:?}\nprivate_key_file = {:?}\n",
        ca.with_file_name("client.pem").to_str().unwrap(),
        ca.with_file_name("client.key").to_str().unwrap()
    );
    let grants = ["mqtts://localhost:8884"];
    let topic = unique("wisp/test/mtls");
    let wisp = App::new(programs::NET_V7, &grants)
        .with_runtime_config(&trusted)
        .up();
    let (_, body) = publish(&wisp, "mqtts://localhost:8884", "wisp", &topic, 1, 1, b"x");
    assert!(
        body.starts_with("error: Error::ConnectionFailed("),
        "{body}"
    );
    drop(wisp);
    let wisp = App::new(programs::NET_V7, &grants)
        .with_runtime_config(&with_client)
        .up();
    let subscriber = Subscriber::new(&topic);
    assert_eq!(
        publish(
            &wisp,
            "mqtts://localhost:8884",
            "wisp",
            &topic,
            1,
            1,
            b"with a certificate"
        ),
        (200, "published 1".to_owned()),
        "{}",
        wisp.stderr()
    );
    assert_eq!(
        subscriber.expect(1)[0].payload.as_ref(),
        b"with a certificate"
    );
}

#[test]
fn mqtt_wrong_password_fails_at_open_with_connection_failed() {
    for source in [programs::NET_V5, programs::NET_V7] {
        let app = App::new(source, &["mqtt://127.0.0.1:1883"]);
        let wisp = app.up();
        let topic = unique("wisp/test/badpw");
        let subscriber = Subscriber::new(&topic);
        let (status, body) = publish(&wisp, "mqtt://127.0.0.1:1883", "nope", &topic, 1, 1, b"x");
        assert_eq!(status, 200);
        assert!(
            body.starts_with("error: Error::ConnectionFailed(") && body.contains("refused"),
            "{body}"
        );
        assert!(
            subscriber
                .messages
                .recv_timeout(Duration::from_millis(300))
                .is_err()
        );
    }
}

#[test]
fn mqtt_address_not_granted_is_refused_as_spin_does_and_logged() {
    for source in [programs::NET_V5, programs::NET_V7] {
        // Granted: another port only.
        let app = App::new(source, &["mqtt://127.0.0.1:1884"]);
        let wisp = app.up();
        let topic = unique("wisp/test/denied");
        let subscriber = Subscriber::new(&topic);
        assert_eq!(
            publish(&wisp, "mqtt://127.0.0.1:1883", "wisp", &topic, 0, 1, b"x"),
            (
                200,
                "error: Error::ConnectionFailed(\"address mqtt://127.0.0.1:1883 is not permitted\")"
                    .to_owned()
            )
        );
        assert!(
            wisp.wait_for_output(
                "component `net`: outbound mqtt connection refused: mqtt://127.0.0.1:1883 is not allowed"
            ),
            "no log line naming the component:\n{}",
            wisp.stderr()
        );
        // An mqtt:// grant does not cover mqtts:// on the same port.
        assert_eq!(
            publish(&wisp, "mqtts://127.0.0.1:1884", "wisp", &topic, 0, 1, b"x"),
            (
                200,
                "error: Error::ConnectionFailed(\"address mqtts://127.0.0.1:1884 is not permitted\")"
                    .to_owned()
            )
        );
        assert!(
            subscriber
                .messages
                .recv_timeout(Duration::from_millis(300))
                .is_err()
        );
    }
}

// ---------------------------------------------------------------------------
// TCP sockets

/// A TCP server on 127.0.0.1 that reads each connection to its end, writes it
/// back and closes; counts the connections it accepted.
struct EchoServer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let mut data = Vec::new();
                    if stream.read_to_end(&mut data).is_ok() {
                        let _ = stream.write_all(&data);
                    }
                });
            }
        });
        EchoServer { addr, accepted }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn echo(wisp: &Wisp, addr: &str, message: &str) -> (u16, String) {
    let path = format!(
        "/tcp/echo?addr={}&message={}",
        encode(addr),
        encode(message)
    );
    text_of(&wisp.get(&path))
}

#[test]
fn tcp_connect_to_a_granted_address_round_trips() {
    let server = EchoServer::start();
    let grant = format!("tcp://127.0.0.1:{}", server.port());
    for source in [programs::NET_V5, programs::NET_V7] {
        let wisp = App::new(source, &[&grant]).up();
        assert_eq!(
            echo(&wisp, &server.addr.to_string(), "hello over tcp"),
            (200, "echo hello over tcp".to_owned()),
            "wisp stderr:\n{}",
            wisp.stderr()
        );
    }
    assert_eq!(server.accepted(), 2);
}

#[test]
fn tcp_connect_not_granted_is_denied_without_a_connection() {
    let server = EchoServer::start();
    let addr = server.addr.to_string();
    let other_port = format!("tcp://127.0.0.1:{}", server.port().wrapping_add(1).max(1));
    for source in [programs::NET_V5, programs::NET_V7] {
        // No socket grant at all: TCP is off.
        let wisp = App::new(source, &[]).up();
        assert_eq!(echo(&wisp, &addr, "x"), (200, "denied".to_owned()));
        // A TCP grant for another port, and grants of other schemes for this one.
        let http = format!("http://127.0.0.1:{}", server.port());
        let wisp = App::new(source, &[&other_port, &http]).up();
        assert_eq!(echo(&wisp, &addr, "x"), (200, "denied".to_owned()));
        assert!(
            wisp.wait_for_output(&format!(
                "component `net`: socket refused: tcp://{addr} is not allowed"
            )),
            "{}",
            wisp.stderr()
        );
    }
    assert_eq!(
        server.accepted(),
        0,
        "a denied connect must not reach the server"
    );
}

#[test]
fn tcp_grant_by_name_allows_the_addresses_it_resolves_to() {
    let server = EchoServer::start();
    let grant = format!("tcp://localhost:{}", server.port());
    let wisp = App::new(programs::NET_V5, &[&grant]).up();
    // The guest looks the name up itself (wasi:sockets/ip-name-lookup).
    assert_eq!(
        echo(&wisp, &format!("localhost:{}", server.port()), "by name"),
        (200, "echo by name".to_owned()),
        "wisp stderr:\n{}",
        wisp.stderr()
    );
    // The address the name resolves to, written as an address.
    assert_eq!(
        echo(&wisp, &server.addr.to_string(), "by address"),
        (200, "echo by address".to_owned())
    );
    let wisp = App::new(programs::NET_V7, &[&grant]).up();
    assert_eq!(
        echo(&wisp, &server.addr.to_string(), "v7"),
        (200, "echo v7".to_owned())
    );
    assert_eq!(server.accepted(), 3);
}

#[test]
fn tcp_to_a_blocked_network_is_denied_even_when_granted() {
    let server = EchoServer::start();
    let grants = [
        format!("tcp://127.0.0.1:{}", server.port()),
        format!("tcp://localhost:{}", server.port()),
    ];
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    for source in [programs::NET_V5, programs::NET_V7] {
        let wisp = App::new(source, &grants)
            .with_runtime_config("[outbound_networking]\nblock_networks = [\"127.0.0.0/8\"]\n")
            .up();
        assert_eq!(
            echo(&wisp, &server.addr.to_string(), "x"),
            (200, "denied".to_owned())
        );
        assert!(
            wisp.wait_for_output("is in a blocked network"),
            "{}",
            wisp.stderr()
        );
    }
    assert_eq!(server.accepted(), 0);
}

#[test]
fn tcp_listening_stays_denied_with_a_tcp_grant() {
    let wisp = App::new(programs::NET_V5, &["tcp://127.0.0.1:*", "*://*:*"]).up();
    for addr in ["0.0.0.0:0", "127.0.0.1:0", "127.0.0.1:38080"] {
        assert_eq!(
            text_of(&wisp.get(&format!("/tcp/listen?addr={}", encode(addr)))),
            (200, "denied".to_owned()),
            "listen on {addr}"
        );
    }
}

#[test]
fn a_guest_stuck_reading_a_silent_peer_is_stopped_at_its_deadline() {
    // A peer that accepts and then says nothing: the guest's read blocks in a host call,
    // which the epoch interrupt cannot stop. With one instance slot and a 1 s deadline,
    // the stuck request must end (504) and free the slot for the next one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let manifest = manifest_one(
        "/...",
        "net",
        programs::NET_V5,
        &format!("allowed_outbound_hosts = [\"tcp://{addr}\"]"),
    );
    let dir = app_dir(&manifest);
    let wisp = Wisp::up(&[
        "-f",
        dir.path().join("spin.toml").to_str().unwrap(),
        "--request-timeout",
        "1",
        "--max-instances",
        "1",
    ]);
    for attempt in 0..2 {
        let started = std::time::Instant::now();
        let (status, _) = echo(&wisp, &addr.to_string(), "anyone there?");
        assert_eq!(status, 504, "attempt {attempt}: {}", wisp.stderr());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        held.lock().unwrap().len(),
        2,
        "both attempts reached the peer"
    );
}
