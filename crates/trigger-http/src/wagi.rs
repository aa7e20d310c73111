//! The wagi executor (`executor = { type = "wagi" }`): the component is a WASI command,
//! run once per request CGI style. The request goes in as environment variables (RFC 3875
//! plus Spin's `X_*` ones), arguments and stdin; the component answers on stdout with CGI
//! headers, an empty line and the body.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use std::sync::Arc;
use wasmtime_wasi_http::WasiBody;
use wisp_engine::{CommandInput, GuestError, LoadedComponent};

/// The most a wagi component may write to stdout for one response. The output is
/// buffered (its headers come first and may set the status), so this bounds the memory
/// a request holds outside the guest.
pub(crate) const MAX_OUTPUT: usize = 32 << 20;

/// Runs `component` for `request` (routed, with the Spin headers set), `argv` being the
/// trigger's command-line template.
pub(crate) async fn handle(
    component: &Arc<LoadedComponent>,
    argv: &str,
    request: Request<WasiBody>,
) -> Result<Response<WasiBody>, GuestError> {
    let (parts, body) = request.into_parts();
    let stdin = super::read_body(body, component.request_timeout()).await?;
    let input = CommandInput {
        args: arguments(argv, &parts),
        env: environment(&parts, stdin.len()),
        stdin,
        max_output: MAX_OUTPUT,
    };
    let output = component.run_command(&parts.extensions, input).await?;
    cgi_response(output).map_err(|reason| GuestError {
        fault: None,
        message: format!("its wagi output is not a CGI response: {reason}"),
    })
}

/// The command line: `argv` with `${SCRIPT_NAME}` (the request path) and `${ARGS}` (the
/// query string, `&` read as a space) substituted, split on spaces (empty pieces
/// dropped).
fn arguments(argv: &str, parts: &http::request::Parts) -> Vec<String> {
    let query = parts.uri.query().unwrap_or_default().replace('&', " ");
    argv.replace("${SCRIPT_NAME}", parts.uri.path())
        .replace("${ARGS}", &query)
        .split(' ')
        .filter(|piece| !piece.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The CGI meta-variables of the request, as Spin's wagi executor sets them. The
/// routing facts come from the Spin headers the trigger has set.
fn environment(parts: &http::request::Parts, content_length: usize) -> Vec<(String, String)> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let full_url: http::Uri = header("spin-full-url").parse().unwrap_or_default();
    let https = full_url.scheme_str() == Some("https");
    let server_name = full_url.host().unwrap_or("localhost").to_owned();
    let server_port = full_url
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 })
        .to_string();
    let client = header("spin-client-addr");
    let client_ip = client
        .parse::<std::net::SocketAddr>()
        .map(|addr| addr.ip().to_string())
        .unwrap_or(client);
    let raw_route = header("spin-raw-component-route");
    let script_name = raw_route
        .strip_suffix("/...")
        .unwrap_or(&raw_route)
        .to_owned();
    let path_info = header("spin-path-info");
    let decoded_path_info = percent_encoding::percent_decode_str(&path_info)
        .decode_utf8_lossy()
        .into_owned();

    let mut env: Vec<(String, String)> = vec![
        ("AUTH_TYPE".into(), String::new()),
        ("CONTENT_LENGTH".into(), content_length.to_string()),
        ("CONTENT_TYPE".into(), header("content-type")),
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("PATH_INFO".into(), path_info.clone()),
        ("PATH_TRANSLATED".into(), decoded_path_info),
        (
            "QUERY_STRING".into(),
            parts.uri.query().unwrap_or_default().into(),
        ),
        ("REMOTE_ADDR".into(), client_ip.clone()),
        ("REMOTE_HOST".into(), client_ip),
        ("REMOTE_USER".into(), String::new()),
        ("REQUEST_METHOD".into(), parts.method.to_string()),
        ("SCRIPT_NAME".into(), script_name),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), server_port),
        ("SERVER_PROTOCOL".into(), format!("{:?}", parts.version)),
        ("SERVER_SOFTWARE".into(), "WAGI/1".into()),
        ("X_RAW_PATH_INFO".into(), path_info),
    ];
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        let name = name.as_str();
        // What the host vouches for keeps Spin's wagi names: `spin-full-url` is
        // `X_FULL_URL`, `spin-path-match-id` is `X_PATH_MATCH_ID`.
        if let Some(spin) = name.strip_prefix("spin-") {
            if spin != "path-info" {
                env.push((format!("X_{}", meta_name(spin)), value.to_owned()));
            }
            continue;
        }
        // RFC 3875 4.1.18: credentials and hop-by-hop headers are not passed on. Nor is
        // `Proxy`: as `HTTP_PROXY` it would name a proxy for the program's own outbound
        // requests to any HTTP library that reads it ("httpoxy").
        if matches!(name, "authorization" | "connection" | "proxy") {
            continue;
        }
        env.push((format!("HTTP_{}", meta_name(name)), value.to_owned()));
    }
    env
}

/// A header name as a meta-variable name: upper case, `-` as `_`.
fn meta_name(header: &str) -> String {
    header.to_ascii_uppercase().replace('-', "_")
}

/// The response a CGI program wrote: header lines (`\n` or `\r\n`), an empty line, the
/// body. `Status: 404 Not Found` sets the status; `Location` alone redirects (302). At
/// least one of `Content-Type`, `Location` and `Status` must be there.
fn cgi_response(output: Bytes) -> Result<Response<WasiBody>, String> {
    if output.is_empty() {
        return Err("it wrote nothing to stdout; write the headers (at least \
                    `Content-Type: text/plain`), an empty line, then the body"
            .to_owned());
    }
    let mut response = Response::new(());
    let (mut status, mut location, mut content_type) = (None, false, false);
    let mut rest = &output[..];
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(
                "its headers do not end with an empty line; print one between \
                        the headers and the body"
                    .to_owned(),
            );
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("the header line `{line}` has no `:`"));
        };
        let (name, value) = (name.trim(), value.trim());
        match name.to_ascii_lowercase().as_str() {
            "status" => {
                let code = value.split(' ').next().unwrap_or_default();
                let code = code
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok())
                    .ok_or_else(|| format!("`Status: {value}` is not a status code"))?;
                status = Some(code);
                continue;
            }
            "location" => location = true,
            "content-type" => content_type = true,
            _ => {}
        }
        let header = HeaderName::try_from(name)
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        let value = HeaderValue::try_from(value)
            .map_err(|_| format!("the value of `{name}` is not a valid header value"))?;
        response.headers_mut().append(header, value);
    }
    if status.is_none() && !location && !content_type {
        return Err(
            "its headers name none of `Content-Type`, `Location` and `Status`; \
                    start the output with `Content-Type: text/plain` (or the body's type)"
                .to_owned(),
        );
    }
    *response.status_mut() = status.unwrap_or(match location {
        true => StatusCode::FOUND,
        false => StatusCode::OK,
    });
    let body = output.slice(output.len() - rest.len()..);
    Ok(response.map(|()| super::full(body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = Request::builder().method("POST").uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    async fn body(response: Response<WasiBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn arguments_substitute_the_path_and_the_query() {
        let request = parts("/cgi/run?a=1&b=two", &[]);
        assert_eq!(
            arguments(crate::WAGI_DEFAULT_ARGV, &request),
            ["/cgi/run", "a=1", "b=two"]
        );
        assert_eq!(
            arguments("prog -v ${ARGS}", &parts("/x", &[])),
            ["prog", "-v"]
        );
    }

    #[test]
    fn environment_has_the_cgi_and_spin_variables() {
        let request = parts(
            "/cgi/a%20b?q=1",
            &[
                ("content-type", "text/plain"),
                ("authorization", "Bearer secret"),
                ("x-custom", "yes"),
                ("proxy", "http://attacker.example:8080"),
                ("spin-full-url", "https://example.com:8443/cgi/a%20b?q=1"),
                ("spin-path-info", "/a%20b"),
                ("spin-raw-component-route", "/cgi/..."),
                ("spin-matched-route", "/cgi/..."),
                ("spin-client-addr", "192.0.2.7:5555"),
                ("spin-path-match-id", "7"),
            ],
        );
        let env: std::collections::HashMap<String, String> =
            environment(&request, 12).into_iter().collect();
        let get = |name: &str| env.get(name).map(String::as_str);
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("CONTENT_LENGTH"), Some("12"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("QUERY_STRING"), Some("q=1"));
        assert_eq!(get("SCRIPT_NAME"), Some("/cgi"));
        assert_eq!(get("PATH_INFO"), Some("/a%20b"));
        assert_eq!(get("PATH_TRANSLATED"), Some("/a b"));
        assert_eq!(get("SERVER_NAME"), Some("example.com"));
        assert_eq!(get("SERVER_PORT"), Some("8443"));
        assert_eq!(get("SERVER_PROTOCOL"), Some("HTTP/1.1"));
        assert_eq!(get("REMOTE_ADDR"), Some("192.0.2.7"));
        assert_eq!(
            get("X_FULL_URL"),
            Some("https://example.com:8443/cgi/a%20b?q=1")
        );
        assert_eq!(get("X_MATCHED_ROUTE"), Some("/cgi/..."));
        assert_eq!(get("X_PATH_MATCH_ID"), Some("7"));
        assert_eq!(get("X_CLIENT_ADDR"), Some("192.0.2.7:5555"));
        assert_eq!(get("HTTP_X_CUSTOM"), Some("yes"));
        assert_eq!(get("HTTP_AUTHORIZATION"), None);
        assert_eq!(get("HTTP_PROXY"), None);
        assert_eq!(get("HTTP_SPIN_FULL_URL"), None);
    }

    #[tokio::test]
    async fn cgi_output_becomes_a_response() {
        let ok = cgi_response(Bytes::from_static(
            b"Content-Type: text/html\r\nX-One: 1\r\n\r\n<p>hi</p>\n",
        ))
        .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()["content-type"], "text/html");
        assert_eq!(ok.headers()["x-one"], "1");
        assert_eq!(body(ok).await, "<p>hi</p>\n");

        let missing = cgi_response(Bytes::from_static(b"Status: 404 Not Found\n\ngone")).unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(missing).await, "gone");

        let moved = cgi_response(Bytes::from_static(b"Location: /elsewhere\n\n")).unwrap();
        assert_eq!(moved.status(), StatusCode::FOUND);
        assert_eq!(moved.headers()["location"], "/elsewhere");
    }

    #[test]
    fn output_that_is_not_cgi_is_refused_with_the_reason() {
        let reason = |output: &'static [u8]| cgi_response(Bytes::from_static(output)).unwrap_err();
        assert!(reason(b"").contains("wrote nothing"));
        assert!(reason(b"hello world").contains("empty line"));
        assert!(reason(b"X-Only: 1\n\nbody").contains("none of `Content-Type`"));
        assert!(reason(b"Status: teapot\n\n").contains("not a status code"));
        assert!(reason(b"just text\n\n").contains("has no `:`"));
    }
}
