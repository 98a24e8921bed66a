//! Segments in S3-compatible object storage, shared by any number of collectors:
//!
//! ```text
//! s3://BUCKET/PREFIX/spans/hour=YYYY-MM-DDTHH/COLLECTOR/seg-{lo:012}-{hi:012}.parquet
//! ```
//!
//! A segment's name is the one it has in its collector's data directory, under that collector's id: flush
//! numbers are per data directory, so collectors never write the same key and need no coordination. Within
//! one collector's prefix a compacted segment covers the flush segments it merged ([`Flushes`]), exactly as
//! on disk. Collectors upload ([`upload`]); readers mirror the live segments of a range into a local cache
//! ([`mirror`]) and read them as they read a data directory: segments never change once written, so a
//! cached copy never goes stale.

mod mirror;
pub mod upload;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig};

use crate::error::{Result, StoreError};
use crate::segment::{Flushes, Hour, Segment, SPANS_DIR};

pub use mirror::cache_root;

/// An `s3://bucket/prefix` store. Cheap to clone; the client is made on first use, from the `AWS_*`
/// variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, …).
#[derive(Clone)]
pub struct Bucket(Arc<Inner>);

struct Inner {
    url: String,
    bucket: String,
    prefix: String,
    /// `AWS_*`-named settings that take precedence over the environment's.
    settings: Vec<(String, String)>,
    /// Where downloaded segments are kept ([`cache_root`]).
    cache: std::path::PathBuf,
    client: OnceLock<std::result::Result<Client, String>>,
}

struct Client {
    store: Arc<dyn ObjectStore>,
    /// Object-store calls are async; the store's callers are threads. Its own runtime serves them all.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Client {
    /// The last clone of a bucket may go on a runtime's thread, where a runtime cannot wait to shut down.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One segment in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSegment {
    pub hour: Hour,
    pub collector: String,
    pub lo: u64,
    pub hi: u64,
    pub bytes: u64,
    pub key: Key,
}

impl Flushes for StoredSegment {
    fn hour(&self) -> Hour {
        self.hour
    }
    fn flushes(&self) -> (u64, u64) {
        (self.lo, self.hi)
    }
    fn writer(&self) -> &str {
        &self.collector
    }
}

impl Bucket {
    pub fn is_url(text: &str) -> bool {
        text.starts_with("s3://")
    }

    /// `s3://bucket` or `s3://bucket/some/prefix`; the client is made (and its settings checked) on first use.
    pub fn parse(url: &str) -> Result<Bucket> {
        let bad = |reason: &str| StoreError::Bucket { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("an object store is named s3://BUCKET[/PREFIX]"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the URL names no bucket"));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        let (url, bucket, settings, cache) = (url.to_owned(), bucket.to_owned(), Vec::new(), cache_root());
        Ok(Bucket(Arc::new(Inner { url, bucket, prefix, settings, cache, client: OnceLock::new() })))
    }

    /// [`Bucket::parse`], with settings named as the variables are (`AWS_ENDPOINT`, …, `HOPTRACE_CACHE`)
    /// taking precedence over the environment: for a process that talks to more than one server.
    pub fn with_settings(url: &str, settings: &[(&str, String)]) -> Result<Bucket> {
        let parsed = Bucket::parse(url)?;
        let Inner { url, bucket, prefix, mut cache, .. } =
            Arc::into_inner(parsed.0).expect("a bucket just made is not shared");
        let mut aws = Vec::new();
        for (key, value) in settings {
            match *key {
                "HOPTRACE_CACHE" => cache = value.into(),
                _ => aws.push((key.to_ascii_lowercase(), value.clone())),
            }
        }
        Ok(Bucket(Arc::new(Inner { url, bucket, prefix, settings: aws, cache, client: OnceLock::new() })))
    }

    fn setting(&self, name: &str) -> Option<String> {
        let own = self.0.settings.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        own.or_else(|| std::env::var(name).ok())
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    fn client(&self) -> Result<&Client> {
        let client = self.0.client.get_or_init(|| {
            let mut builder = AmazonS3Builder::from_env();
            for (key, value) in &self.0.settings {
                let key = key.parse().map_err(|e: object_store::Error| e.to_string())?;
                builder = builder.with_config(key, value);
            }
            builder = builder.with_bucket_name(&self.0.bucket).with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            });
            // An endpoint the user named as http:// (a local S3-compatible server) is meant as such.
            let endpoint = self.setting("AWS_ENDPOINT_URL").or_else(|| self.setting("AWS_ENDPOINT"));
            if endpoint.is_some_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            if self.setting("AWS_REGION").is_none() && self.setting("AWS_DEFAULT_REGION").is_none() {
                builder = builder.with_region("us-east-1");
            }
            let store = builder.build().map_err(|e| e.to_string())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the object store's runtime: {e}"))?;
            Ok(Client { store: Arc::new(store), runtime: Some(runtime) })
        });
        client.as_ref().map_err(|reason| StoreError::Bucket { url: self.0.url.clone(), reason: reason.clone() })
    }

    /// Runs an object-store call to completion from a thread — on another thread when the caller is itself
    /// on a runtime, where blocking on one would panic.
    fn run<T: Send>(&self, call: impl AsyncFnOnce(&dyn ObjectStore) -> Result<T> + Send) -> Result<T> {
        let client = self.client()?;
        let runtime = client.runtime.as_ref().expect("a client has its runtime until dropped");
        let work = || runtime.block_on(call(client.store.as_ref()));
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| s.spawn(work).join().expect("an object-store call does not panic"))
        } else {
            work()
        }
    }

    /// The key of `relative` under the prefix.
    fn key(&self, relative: &str) -> Key {
        if self.0.prefix.is_empty() {
            Key::from(relative)
        } else {
            Key::from(format!("{}/{relative}", self.0.prefix))
        }
    }

    fn partition_key(&self, hour: Hour) -> Key {
        self.key(&format!("{SPANS_DIR}/{}", hour.dir_name()))
    }

    /// Where `collector` keeps a segment of its data directory.
    pub fn segment_key(&self, collector: &str, segment: &Segment) -> Key {
        self.key(&format!(
            "{SPANS_DIR}/{}/{collector}/{}",
            segment.hour.dir_name(),
            Segment::file_name(segment.lo, segment.hi)
        ))
    }

    /// The hour partitions in the bucket, oldest first.
    pub fn partitions(&self) -> Result<Vec<Hour>> {
        let root = self.key(SPANS_DIR);
        let listed = self.run(async |store| match store.list_with_delimiter(Some(&root)).await {
            Ok(listed) => Ok(listed.common_prefixes),
            // A bucket nobody has written to yet holds no partitions.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(StoreError::ObjectStore { op: "list", key: root.to_string(), source }),
        })?;
        let mut hours: Vec<Hour> = listed.iter().filter_map(|p| p.filename().and_then(Hour::parse_dir_name)).collect();
        hours.sort();
        Ok(hours)
    }

    /// Every segment of one hour partition, of every collector (or of `collector` alone), live and obsolete.
    pub fn segments(&self, hour: Hour, collector: Option<&str>) -> Result<Vec<StoredSegment>> {
        let partition = self.partition_key(hour);
        let root = match collector {
            Some(collector) => partition.clone().join(collector),
            None => partition.clone(),
        };
        let objects = self.run(async |store| match store.list(Some(&root)).try_collect::<Vec<_>>().await {
            Ok(objects) => Ok(objects),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(source) => Err(StoreError::ObjectStore { op: "list", key: root.to_string(), source }),
        })?;
        let mut out: Vec<StoredSegment> = objects
            .into_iter()
            .filter_map(|meta| {
                let (collector, (lo, hi)) = {
                    let mut parts = meta.location.prefix_match(&partition)?;
                    let collector = parts.next()?.as_ref().to_owned();
                    let flushes = Segment::parse_file_name(parts.next()?.as_ref())?;
                    parts.next().is_none().then_some((collector, flushes))?
                };
                Some(StoredSegment { hour, collector, lo, hi, bytes: meta.size, key: meta.location })
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.collector, a.lo, std::cmp::Reverse(a.hi)).cmp(&(&b.collector, b.lo, std::cmp::Reverse(b.hi)))
        });
        Ok(out)
    }

    /// The live segments holding spans that start in `range`: only the partitions the range touches.
    pub fn live_segments(&self, range: crate::TimeRange) -> Result<Vec<StoredSegment>> {
        let hours = range.hours();
        let mut live = Vec::new();
        for hour in self.partitions()?.into_iter().filter(|h| hours.contains(h)) {
            live.extend(crate::segment::split_obsolete(self.segments(hour, None)?).0);
        }
        Ok(live)
    }

    /// Uploads a segment of `collector`'s data directory to its key; returns the bytes sent.
    pub fn upload(&self, collector: &str, segment: &Segment) -> Result<u64> {
        let bytes = bytes::Bytes::from(std::fs::read(&segment.path).map_err(StoreError::io("read", &segment.path))?);
        let (key, size) = (self.segment_key(collector, segment), bytes.len() as u64);
        self.run(async |store| store.put(&key, bytes.into()).await.map_err(object_error("upload", &key)))?;
        Ok(size)
    }

    /// Deletes an object; one already gone is not an error.
    pub(crate) fn delete(&self, key: &Key) -> Result<()> {
        self.run(async |store| match store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::ObjectStore { op: "delete", key: key.to_string(), source }),
        })
    }

    /// Runs several downloads at once (a reader's mirror), each to completion or error.
    pub(crate) fn run_all<T: Send>(
        &self,
        calls: Vec<impl Future<Output = Result<T>> + Send>,
        at_once: usize,
    ) -> Result<Vec<T>> {
        use futures_util::StreamExt;
        self.run(async move |_| futures_util::stream::iter(calls).buffered(at_once).try_collect::<Vec<T>>().await)
    }

    pub(crate) fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(Arc::clone(&self.client()?.store))
    }
}

fn object_error(op: &'static str, key: &Key) -> impl FnOnce(object_store::Error) -> StoreError {
    let key = key.to_string();
    move |source| StoreError::ObjectStore { op, key, source }
}

impl PartialEq for Bucket {
    fn eq(&self, other: &Bucket) -> bool {
        self.0.url == other.0.url
    }
}

impl Eq for Bucket {}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Bucket").field(&self.0.url).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let b = Bucket::parse("s3://spans/team-a/prod/").unwrap();
        let seg = Segment { hour: Hour(490_000), lo: 3, hi: 9, path: "x".into(), bytes: 0 };
        assert_eq!(
            b.segment_key("c1", &seg).as_ref(),
            "team-a/prod/spans/hour=2025-11-24T16/c1/seg-000000000003-000000000009.parquet"
        );
        let bare = Bucket::parse("s3://spans").unwrap();
        assert_eq!(
            bare.segment_key("c1", &seg).as_ref(),
            "spans/hour=2025-11-24T16/c1/seg-000000000003-000000000009.parquet"
        );
        assert!(Bucket::parse("s3:///x").is_err());
        assert!(Bucket::parse("/data").is_err());
    }
}
