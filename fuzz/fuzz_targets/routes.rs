//! Route matching: lines are routes, the last line the request path. A match is one of
//! the routes added, and its path info is a suffix of the path, segment by segment (empty
//! segments, as in `/a//b`, do not count), for the paths requests carry, which start
//! with `/`; `*` of `OPTIONS *` is only checked not to panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wisp_trigger_http::{RouteTarget, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let path = lines.pop().unwrap_or("/");
    let routes: Vec<&str> = lines.into_iter().filter(|r| r.starts_with('/')).collect();
    let mut router = Router::default();
    for (index, route) in routes.iter().enumerate() {
        router.add(route, RouteTarget::Component(index.to_string()));
    }
    let Some(matched) = router.route(path) else {
        return;
    };
    if path.starts_with('/') {
        assert!(routes.contains(&matched.raw_route), "{matched:?}");
        let segments = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert!(
            segments(path).ends_with(&segments(&matched.path_info)),
            "{matched:?} for {path:?}"
        );
    }
});
