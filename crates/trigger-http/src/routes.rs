//! The route table: exact routes, `:param` segments, trailing `/...` wildcards. The most
//! specific match wins: more literal segments first, then more segments, then exact over
//! wildcard.

/// What a route leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// A component, by id.
    Component(String),
    /// A static response, by index into the trigger's static responses.
    Static(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Route {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    target: RouteTarget,
}

/// A matched route with everything the Spin headers need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// Where the request goes.
    pub target: &'a RouteTarget,
    /// The route as written in the manifest (`/static/...`).
    pub raw_route: &'a str,
    /// The route without its wildcard (`/static`).
    pub component_route: String,
    /// The part of the path after the matched prefix (`/css/a.css`, or empty).
    pub path_info: String,
    /// `:name` parameters and their values, in route order.
    pub params: Vec<(&'a str, String)>,
}

/// All routes of an app.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Adds a route. Route syntax is validated by the manifest; this accepts anything that
    /// starts with `/`.
    pub fn add(&mut self, raw: &str, target: RouteTarget) {
        let trimmed = raw.trim_end_matches('/');
        let (body, wildcard) = match trimmed.strip_suffix("/...") {
            Some(body) => (body, true),
            None if trimmed == "..." || raw == "/..." => ("", true),
            None => (trimmed, false),
        };
        let segments = body
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(s.to_owned()),
            })
            .collect();
        self.routes.push(Route {
            raw: raw.to_owned(),
            segments,
            wildcard,
            target,
        });
        // Most specific first, so the first match is the best one.
        self.routes.sort_by_key(|r| {
            let literals = r
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            std::cmp::Reverse((literals, r.segments.len(), !r.wildcard))
        });
    }

    /// Finds the best route for a request path (without query).
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes.iter().find_map(|route| {
            if parts.len() < route.segments.len()
                || (!route.wildcard && parts.len() != route.segments.len())
            {
                return None;
            }
            let mut params = Vec::new();
            for (segment, part) in route.segments.iter().zip(&parts) {
                match segment {
                    Segment::Literal(lit) if lit == part => {}
                    Segment::Literal(_) => return None,
                    Segment::Param(name) => params.push((name.as_str(), (*part).to_owned())),
                }
            }
            let component_route = route
                .raw
                .trim_end_matches('/')
                .strip_suffix("/...")
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    if route.raw == "/..." {
                        String::new()
                    } else {
                        route.raw.clone()
                    }
                });
            let rest = &parts[route.segments.len()..];
            let mut path_info = String::new();
            for part in rest {
                path_info.push('/');
                path_info.push_str(part);
            }
            // As Spin: a trailing slash is kept, so `/foo/` on `/foo/...` gives `/`.
            if route.wildcard && path.ends_with('/') {
                path_info.push('/');
            }
            Some(RouteMatch {
                target: &route.target,
                raw_route: &route.raw,
                component_route,
                path_info,
                params,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::default();
        r.add("/...", RouteTarget::Component("fallback".into()));
        r.add("/hello", RouteTarget::Component("hello".into()));
        r.add("/static/...", RouteTarget::Component("files".into()));
        r.add("/users/:id", RouteTarget::Component("user".into()));
        r.add("/users/me", RouteTarget::Component("me".into()));
        r.add(
            "/users/:id/posts/...",
            RouteTarget::Component("posts".into()),
        );
        r.add("/gone", RouteTarget::Static(0));
        r
    }

    fn target(r: &Router, path: &str) -> RouteTarget {
        r.route(path).unwrap().target.clone()
    }

    #[test]
    fn exact_beats_wildcard_and_literal_beats_param() {
        let r = router();
        assert_eq!(target(&r, "/hello"), RouteTarget::Component("hello".into()));
        assert_eq!(
            target(&r, "/hello/"),
            RouteTarget::Component("hello".into())
        );
        assert_eq!(
            target(&r, "/hello/x"),
            RouteTarget::Component("fallback".into())
        );
        assert_eq!(target(&r, "/users/me"), RouteTarget::Component("me".into()));
        assert_eq!(
            target(&r, "/users/42"),
            RouteTarget::Component("user".into())
        );
        assert_eq!(target(&r, "/gone"), RouteTarget::Static(0));
        assert_eq!(target(&r, "/"), RouteTarget::Component("fallback".into()));
    }

    #[test]
    fn match_details_feed_the_spin_headers() {
        let r = router();
        let m = r.route("/static/css/a.css").unwrap();
        assert_eq!(m.raw_route, "/static/...");
        assert_eq!(m.component_route, "/static");
        assert_eq!(m.path_info, "/css/a.css");

        let m = r.route("/users/7/posts/2024/x").unwrap();
        assert_eq!(m.target, &RouteTarget::Component("posts".into()));
        assert_eq!(m.params, vec![("id", "7".to_owned())]);
        assert_eq!(m.path_info, "/2024/x");

        let m = r.route("/hello").unwrap();
        assert_eq!(m.component_route, "/hello");
        assert_eq!(m.path_info, "");

        let m = r.route("/a/b").unwrap();
        assert_eq!(m.raw_route, "/...");
        assert_eq!(m.component_route, "");
        assert_eq!(m.path_info, "/a/b");

        // Trailing slashes as Spin keeps them (its routes tests).
        for (path, info) in [
            ("/static", ""),
            ("/static/", "/"),
            ("/static/css", "/css"),
            ("/static/css/", "/css/"),
            ("/", "/"),
        ] {
            assert_eq!(r.route(path).unwrap().path_info, info, "{path}");
        }
    }

    #[test]
    fn no_match_without_fallback() {
        let mut r = Router::default();
        r.add("/only", RouteTarget::Component("only".into()));
        assert!(r.route("/other").is_none());
        assert!(r.route("/only/deeper").is_none());
    }
}
