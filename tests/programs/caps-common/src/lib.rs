//! Helpers shared by the capability guests (`caps-v5`, `caps-v7`): the reply
//! they build, query-string parsing, and the small assertion vocabulary whose
//! failures become `500 <step>: <reason>` bodies.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

/// A check's outcome: the value, or `<step>: <reason>` for a `500` body.
pub type Check<T = Reply> = Result<T, String>;

/// A status and body to answer with (`content-type: text/plain`).
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status,
            body: body.into(),
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, body)
    }
}

/// The parameters of a `k=v&k2=v2` query string, `%XX`-decoded.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(query: &str) -> Self {
        let pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(name), percent_decode(value))
            });
        Query(pairs.collect())
    }

    pub fn get(&self, name: &str) -> Check<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| format!("query: missing {name}"))
    }
}

/// Decodes `%XX` escapes; anything else (including a malformed escape) is kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i + 1..i + 3) {
            Some([hi, lo])
                if bytes[i] == b'%' && hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A suffix that makes table and key names unique per call: the wall clock in
/// nanoseconds.
pub fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default()
}

/// Maps an error to the failure `<step>: <error Debug>`.
pub fn failed<E: Debug>(step: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{step}: {e:?}")
}

pub fn ensure(step: &str, condition: bool, detail: impl FnOnce() -> String) -> Check<()> {
    if condition {
        Ok(())
    } else {
        Err(format!("{step}: {}", detail()))
    }
}

pub fn expect_eq<T: PartialEq + Debug>(step: &str, got: T, want: T) -> Check<()> {
    ensure(step, got == want, || format!("got {got:?}, want {want:?}"))
}
