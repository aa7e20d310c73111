//! Start-up probe for `rps.sh`: spawns a server command, polls `GET /` on the given address
//! over raw HTTP/1.1 every 100 µs until it answers 200, then prints the elapsed
//! milliseconds and the server's resident memory, and stops the server with SIGTERM.
//! Usage: `first-200 127.0.0.1:PORT -- server-command args...`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn answers_200(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: first-200 ADDR -- COMMAND [ARGS...]";
    let addr: SocketAddr = args.first().expect(usage).parse().expect(usage);
    let command = args
        .iter()
        .skip_while(|a| *a != "--")
        .skip(1)
        .collect::<Vec<_>>();
    let (program, rest) = command.split_first().expect(usage);

    let started = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the server");
    let deadline = started + Duration::from_secs(30);
    while !answers_200(addr) {
        assert!(Instant::now() < deadline, "no 200 from {addr} within 30 s");
        std::thread::sleep(Duration::from_micros(100));
    }
    let elapsed = started.elapsed();
    let rss = resident_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    println!("{:.2} {}", elapsed.as_secs_f64() * 1000.0, rss);
}
