//! The console's scripts and styles, embedded in the binary and served under names carrying a
//! hash of their content, so a browser may cache them for good: a new build with changed
//! assets has new names.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
struct Asset {
    stem: &'static str,
    extension: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        stem: "console",
        extension: "css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/console.css"),
    },
    Asset {
        stem: "console",
        extension: "js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/console.js"),
    },
    Asset {
        stem: "favicon",
        extension: "svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/favicon.svg"),
    },
];

/// Each asset's served name (`console.<hash>.css`).
static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            format!(
                "{}.{:016x}.{}",
                a.stem,
                fnv1a(a.body.as_bytes()),
                a.extension
            )
        })
        .collect()
});

/// FNV-1a, 64 bits: stable across builds and toolchains (unlike `std`'s hasher), enough to
/// tell versions of a file apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The URL of the asset `stem.extension`.
pub(crate) fn url(stem: &str, extension: &str) -> String {
    ASSETS
        .iter()
        .zip(NAMES.iter())
        .find(|(a, _)| a.stem == stem && a.extension == extension)
        .map_or_else(String::new, |(_, name)| format!("/ui/assets/{name}"))
}

/// `GET /ui/assets/{file}`: the asset by its hashed name, cacheable for a year.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS
        .iter()
        .zip(NAMES.iter())
        .find(|(_, name)| **name == file)
        .map(|(a, _)| a)
    else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_a_hash_of_the_content() {
        let css = url("console", "css");
        assert!(
            css.starts_with("/ui/assets/console.") && css.ends_with(".css"),
            "{css}"
        );
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        // FNV-1a's published test vector: the hash must not change between builds.
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }

    #[tokio::test]
    async fn an_asset_is_served_cacheable_and_an_unknown_one_is_not_found() {
        let name = url("console", "js")
            .trim_start_matches("/ui/assets/")
            .to_owned();
        let found = serve(Path(name)).await;
        assert_eq!(found.status(), StatusCode::OK);
        assert_eq!(
            found
                .headers()
                .get(header::CACHE_CONTROL)
                .map(|v| v.as_bytes()),
            Some(&b"public, max-age=31536000, immutable"[..])
        );
        let missing = serve(Path("console.0000000000000000.js".into())).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
