//! Component sources given as `source = { url, digest }`: downloaded once into the content
//! cache, verified against the digest while they stream to disk, then used like local files.

use crate::cache::Cache;
use crate::{OciError, Result};
use futures::StreamExt as _;
use std::path::PathBuf;

/// Returns the cached copy of the component named by `digest`, downloading it from `url`
/// first when the cache does not hold it. Nothing that fails the digest check, or is larger
/// than `limit` bytes, is cached.
pub async fn fetch_url_source(
    cache: &Cache,
    url: &str,
    digest: &str,
    limit: u64,
) -> Result<PathBuf> {
    let path = cache.blob_path(digest)?;
    // Blobs are verified before they get their name, so a present one is the content.
    if path.is_file() {
        return Ok(path);
    }
    let download = |message: String| OciError::Download {
        url: url.to_owned(),
        message,
    };
    let client = crate::client::http_client()
        .map_err(|e| download(format!("cannot set up an HTTP client: {e}")))?;
    let response = client.get(url).send().await.map_err(|e| {
        download(format!(
            "{}; check the URL and that the server is reachable",
            crate::error_chain(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(download(format!(
            "the server answered {status}; check the URL"
        )));
    }
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(download(format!(
            "it is {length} bytes, over the {limit}-byte limit on component sources (--max-component-size-mb)"
        )));
    }
    let mut writer = cache.blob_writer(digest).await?;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| download(crate::error_chain(&e)))?;
        writer.write(&chunk).await?;
        if writer.len() > limit {
            return Err(download(format!(
                "it is over the {limit}-byte limit on component sources (--max-component-size-mb)"
            )));
        }
    }
    let actual = writer.digest_so_far();
    if actual != digest {
        return Err(OciError::UrlDigestMismatch {
            url: url.to_owned(),
            expected: digest.to_owned(),
            actual,
        });
    }
    writer.finish().await
}
