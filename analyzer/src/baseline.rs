//! Baselines: the per-hop samples of a run, kept under a name to compare later runs with.
//!
//! A baseline is a JSON file `NAME.json` in the baselines directory (default `<store>/baselines`). Each
//! hop keeps its samples; beyond [`MAX_SAMPLES`] a uniform random subset of them (seeded, so the same
//! run saves the same baseline), which keeps every percentile the comparison reads faithful.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hops::Extraction;
use crate::Config;

pub const SCHEMA: &str = "hoptrace.baseline/v1";
pub const MAX_SAMPLES: usize = 20_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub schema: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// What was measured: the run id and/or the time range, as given.
    pub source: String,
    pub hops: Vec<HopSamples>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HopSamples {
    pub category: String,
    pub variant: Option<String>,
    pub hop: String,
    /// How many samples the run had (more than kept when it had over `MAX_SAMPLES`).
    pub count: usize,
    /// Nanoseconds.
    pub samples: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("baseline names are letters, digits, '-', '_' and '.', got {0:?}")]
    BadName(String),
    #[error("no baseline {name:?} in {dir} (analyzer baseline list shows them)")]
    Missing { name: String, dir: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a hoptrace baseline: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Baseline {
    /// The samples of every hop of `extraction`.
    pub fn from_extraction(name: &str, source: String, config: &Config, extraction: &Extraction) -> Baseline {
        let hops = extraction
            .samples
            .iter()
            .filter(|(_, s)| !s.values.is_empty())
            .map(|((c, variant, h), s)| HopSamples {
                category: config.categories[*c].name.clone(),
                variant: variant.clone(),
                hop: config.categories[*c].hops[*h].name.clone(),
                count: s.values.len(),
                samples: subsample(&s.values, MAX_SAMPLES),
            })
            .collect();
        let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        Baseline { schema: SCHEMA.into(), name: name.into(), created, source, hops }
    }
}

/// At most `max` of `values`, chosen uniformly (a partial Fisher–Yates shuffle with a fixed seed).
fn subsample(values: &[i64], max: usize) -> Vec<i64> {
    let mut kept = values.to_vec();
    if kept.len() > max {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..max {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let j = i + (state >> 33) as usize % (kept.len() - i);
            kept.swap(i, j);
        }
        kept.truncate(max);
    }
    kept
}

/// The baselines directory.
pub struct Baselines {
    pub dir: PathBuf,
}

impl Baselines {
    fn path(&self, name: &str) -> Result<PathBuf, BaselineError> {
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            return Err(BaselineError::BadName(name.into()));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Writes (or replaces) a baseline: to a temporary file, then renamed over the old one.
    pub fn save(&self, baseline: &Baseline) -> Result<PathBuf, BaselineError> {
        let path = self.path(&baseline.name)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| BaselineError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string(baseline).expect("a baseline serialises");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(path)
    }

    pub fn load(&self, name: &str) -> Result<Baseline, BaselineError> {
        let path = self.path(name)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BaselineError::Missing { name: name.into(), dir: self.dir.clone() })
            }
            Err(source) => return Err(BaselineError::Io { path, source }),
        };
        let baseline: Baseline = serde_json::from_str(&text)
            .map_err(|e| BaselineError::Invalid { path: path.clone(), reason: e.to_string() })?;
        if baseline.schema != SCHEMA {
            return Err(BaselineError::Invalid {
                path,
                reason: format!("schema {:?}, expected {SCHEMA:?}", baseline.schema),
            });
        }
        Ok(baseline)
    }

    pub fn delete(&self, name: &str) -> Result<(), BaselineError> {
        let path = self.path(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BaselineError::Missing { name: name.into(), dir: self.dir.clone() })
            }
            Err(source) => Err(BaselineError::Io { path, source }),
        }
    }

    /// Every baseline, by name.
    pub fn list(&self) -> Result<Vec<Baseline>, BaselineError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(BaselineError::Io { path: self.dir.clone(), source }),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .collect();
        names.sort();
        names.iter().map(|name| self.load(name)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subsample_is_a_uniform_deterministic_subset() {
        let values: Vec<i64> = (0..100_000).collect();
        let kept = subsample(&values, 20_000);
        assert_eq!(kept, subsample(&values, 20_000));
        assert_eq!(kept.len(), 20_000);
        let mut sorted = kept.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20_000, "no sample twice");
        // Uniform: the median of the kept is near the median of all.
        assert!((sorted[10_000] - 50_000).abs() < 1_500, "{}", sorted[10_000]);
        assert_eq!(subsample(&values[..10], 20_000), values[..10].to_vec());
    }

    #[test]
    fn names_are_checked_and_missing_baselines_named() {
        let dir = tempfile::tempdir().unwrap();
        let baselines = Baselines { dir: dir.path().join("baselines") };
        assert!(matches!(baselines.load("../etc/passwd"), Err(BaselineError::BadName(_))));
        assert!(matches!(baselines.load(".hidden"), Err(BaselineError::BadName(_))));
        let missing = baselines.load("main").unwrap_err().to_string();
        assert!(missing.contains("no baseline \"main\""), "{missing}");
        assert!(baselines.list().unwrap().is_empty());
        let b = Baseline {
            schema: SCHEMA.into(),
            name: "main".into(),
            created: "t".into(),
            source: "s".into(),
            hops: vec![],
        };
        baselines.save(&b).unwrap();
        assert_eq!(baselines.load("main").unwrap(), b);
        assert_eq!(baselines.list().unwrap(), vec![b]);
        baselines.delete("main").unwrap();
        assert!(matches!(baselines.delete("main"), Err(BaselineError::Missing { .. })));
    }
}
