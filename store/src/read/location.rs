//! Where spans are kept, as a reader names it (`--store DIR|postgres://…|s3://…`): the embedded store's data
//! directory, a PostgreSQL database, or the bucket collectors upload their segments to. All read as polars
//! frames in the one schema of `docs/storage.md`.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::scan::{self as reader, TimeRange};
use crate::backend::postgres;
use crate::bucket::Bucket;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    Postgres(String),
    Bucket(Bucket),
}

impl Location {
    pub fn parse(text: &str) -> Result<Location> {
        Ok(if postgres::is_url(text) {
            Location::Postgres(text.to_owned())
        } else if Bucket::is_url(text) {
            Location::Bucket(Bucket::parse(text)?)
        } else {
            Location::Dir(PathBuf::from(text))
        })
    }

    /// The segment files holding spans of `range` (a bucket's, mirrored locally); `None` for a database.
    pub fn segment_paths(&self, range: TimeRange) -> Result<Option<Vec<PathBuf>>> {
        match self {
            Location::Dir(dir) => reader::segment_paths(dir, range).map(Some),
            Location::Bucket(bucket) => bucket.mirror(range).map(Some),
            Location::Postgres(_) => Ok(None),
        }
    }

    /// The spans that start in `range`, as one frame per unit a reader can hold in memory at a time:
    /// a segment of the embedded store, the whole range of a database.
    pub fn segments(&self, range: TimeRange) -> Result<Vec<LazyFrame>> {
        match self {
            Location::Dir(dir) => reader::scan_segments(dir, range),
            Location::Bucket(bucket) => reader::segments_listed(bucket.mirror(range)?, range),
            Location::Postgres(url) => Ok(vec![postgres::read_frame(url, range)?.lazy()]),
        }
    }

    /// The spans that start in `range`, as one frame.
    pub fn scan(&self, range: TimeRange) -> Result<LazyFrame> {
        match self {
            Location::Dir(dir) => reader::scan(dir, range),
            Location::Bucket(bucket) => reader::scan_listed(&bucket.mirror(range)?, range, Path::new(bucket.url())),
            Location::Postgres(url) => Ok(postgres::read_frame(url, range)?.lazy()),
        }
    }

    /// The data directory, for a store that has one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Location::Dir(dir) => Some(dir),
            Location::Postgres(_) | Location::Bucket(_) => None,
        }
    }
}

/// The directory, the database URL without its password, or the bucket's URL.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Postgres(url) => f.write_str(&redact(url)),
            Location::Bucket(bucket) => f.write_str(bucket.url()),
        }
    }
}

impl From<&Path> for Location {
    fn from(dir: &Path) -> Location {
        Location::Dir(dir.to_owned())
    }
}

impl From<PathBuf> for Location {
    fn from(dir: PathBuf) -> Location {
        Location::Dir(dir)
    }
}

impl From<&PathBuf> for Location {
    fn from(dir: &PathBuf) -> Location {
        Location::Dir(dir.clone())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

/// A database URL with its password replaced by `***`, for messages and reports.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let Some(at) = url[scheme_end..].find('@').map(|i| i + scheme_end) else { return url.to_owned() };
    match url[scheme_end..at].split_once(':') {
        Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end], &url[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_directories() {
        let parse = |text| Location::parse(text).unwrap();
        assert_eq!(parse("postgres://u@h/db"), Location::Postgres("postgres://u@h/db".into()));
        assert_eq!(parse("./hoptrace-data"), Location::Dir("./hoptrace-data".into()));
        assert_eq!(parse("s3://spans/prod").to_string(), "s3://spans/prod");
        assert!(Location::parse("s3://").is_err());
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(parse("postgresql://u:pw@h/db").to_string(), "postgresql://u:***@h/db");
    }
}
