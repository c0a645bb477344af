//! The browser call page served at `/`: static files from `media-node/web/` compiled into the
//! binary (a pod needs nothing else), each with its content type, a Content-Security-Policy
//! that allows only the page's own scripts and styles plus WebSocket signaling to any node, and
//! no caching across upgrades of the node.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Policy of every page file: own scripts and styles only, signaling over `ws:`/`wss:` to any
/// media node of the pool (the page follows redirects between nodes), no plugins or framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One file of the page.
pub struct Asset {
    /// URL path.
    pub path: &'static str,
    /// Content type.
    pub content_type: &'static str,
    /// The file.
    pub body: &'static str,
}

/// The page's files.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/style.css"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "/call.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/call.js"),
    },
    Asset {
        path: "/signaling.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/signaling.js"),
    },
    Asset {
        path: "/devices.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/devices.js"),
    },
    Asset {
        path: "/view.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/view.js"),
    },
    Asset {
        path: "/level.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/level.js"),
    },
];

fn respond(asset: &'static Asset) -> Response {
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Routes for the page's files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { respond(asset) }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_page_imports_is_served() {
        let served: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let path = from.trim_start_matches('.');
                assert!(
                    from.starts_with("./"),
                    "{} imports {from}: use ./",
                    asset.path
                );
                assert!(
                    served.contains(&path),
                    "{} imports unserved {from}",
                    asset.path
                );
            }
        }
        let page = ASSETS[0].body;
        // Relative, so the page also works under a path prefix.
        assert!(page.contains("src=\"app.js\""));
        assert!(page.contains("href=\"style.css\""));
    }
}
