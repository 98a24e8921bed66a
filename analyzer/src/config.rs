//! Categories, hop rules and targets as data: a TOML file (the built-in `categories.toml`, or the user's).
//!
//! The file is read into plain serde types that refuse unknown keys, then checked rule by rule, so an
//! error names the key and the reason: `category "worker_execution" hop "claim": target "p99 > 5ms":
//! a target is a percentile below a duration, such as "p99 < 50ms"`.

use std::collections::BTreeMap;
use std::time::Duration;

use hoptrace_otlp::SpanKind;
use serde::Deserialize;

/// The categories of the reference workflow system, used when no `--config` is given.
pub const BUILT_IN: &str = include_str!("../categories.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub categories: Vec<Category>,
    pub validation: Validation,
    /// Keys that tie the traces of one lifecycle together where trace context was lost.
    pub joins: Vec<Join>,
    /// Spans left out of every analysis (a system's own plumbing, such as its exporter's HTTP/2 frames).
    pub exclude: Vec<Selector>,
    /// The hop whose samples are the units of work worker instances take, as (category, hop) indices:
    /// the report's fairness counts them per instance.
    pub fairness: Option<(usize, usize)>,
}

/// A correlation key: spans whose sources give equal values belong to one lifecycle, whatever their
/// traces. Values may be composite (a queue name and a message id).
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub name: String,
    pub sources: Vec<JoinSource>,
    /// Each value is handled once: a second span of the same service and name carrying it is a duplicate.
    pub once: bool,
}

/// Where a join key's value is read: on spans matching `span` (any span when `None`), its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinSource {
    pub span: Option<Selector>,
    pub parts: Vec<Part>,
}

/// One part of a key's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A span attribute.
    Attribute(String),
    /// An attribute of the span's resource.
    Resource(String),
    /// An attribute of the span's first event that carries it.
    Event(String),
    /// Captured from the name (the text) of the span's first event it matches: the first group, or the
    /// whole match when the pattern has no group.
    EventText(String),
}

impl Part {
    /// The field of the span table that holds this part (see [`crate::spans::Field`]).
    pub fn field(&self) -> String {
        match self {
            Part::Attribute(key) => key.clone(),
            Part::Resource(key) => format!("{}{key}", crate::spans::RESOURCE_PREFIX),
            Part::Event(key) => format!("{}{key}", crate::spans::EVENT_PREFIX),
            Part::EventText(pattern) => format!("{}{pattern}", crate::spans::EVENT_TEXT_PREFIX),
        }
    }
}

/// What `analyzer validate` checks beyond the structural rules every trace must pass.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    /// Spans carrying the same value of this attribute must all be in one trace.
    pub correlation_key: Option<String>,
    /// How far a synchronous child may stick out of its parent (clocks of different hosts).
    pub clock_skew_bound: Duration,
    pub lifecycles: Vec<Lifecycle>,
}

/// A kind of trace: its expected entry span and, per variant, how many spans of each name it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub name: String,
    pub root: Selector,
    pub group_by: Option<String>,
    /// Variant (`*` for any other) → span name → count.
    pub expect: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Lifecycle {
    pub fn expected(&self, variant: Option<&str>) -> Option<&BTreeMap<String, usize>> {
        variant.and_then(|v| self.expect.get(v)).or_else(|| self.expect.get("*"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub name: String,
    pub description: String,
    /// The attribute whose values split the category into variants.
    pub group_by: Option<String>,
    pub hops: Vec<HopRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HopRule {
    pub name: String,
    pub measure: Measure,
    /// Applies to every variant without a target of its own.
    pub target: Option<Target>,
    pub targets: BTreeMap<String, Target>,
}

impl HopRule {
    pub fn target_for(&self, variant: &str) -> Option<&Target> {
        self.targets.get(variant).or(self.target.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Duration(Selector),
    SelfTime(Selector),
    /// `pair`: the join whose equal values pair `from` with `to`, instead of a parent or link.
    Gap {
        from: Selector,
        to: Selector,
        from_edge: Edge,
        pair: Option<String>,
    },
    Interval {
        from: Selector,
        to: Selector,
    },
    Difference {
        outer: Selector,
        inner: Selector,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// Which spans a rule applies to; every field given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    pub name: Option<NamePattern>,
    pub kind: Option<SpanKind>,
    pub service: Option<String>,
    pub attributes: Vec<(String, String)>,
    pub parent: Option<Box<Selector>>,
}

/// An exact span name, or a glob where `*` stands for any text.
#[derive(Debug, Clone, PartialEq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn new(pattern: &str) -> NamePattern {
        NamePattern(pattern.to_owned())
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.iter().position(|&c| c == b'*') {
        None => pattern == text,
        Some(star) => {
            let (head, rest) = (&pattern[..star], &pattern[star + 1..]);
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|skip| glob_match(rest, &text[head.len() + skip..]))
        }
    }
}

/// Conditions on percentiles, all of which must hold: `p50 < 5ms, p99 < 20ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub text: String,
    pub limits: Vec<(Percentile, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Percentile {
    P50,
    P95,
    P99,
}

impl Percentile {
    pub fn label(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P95 => "p95",
            Percentile::P99 => "p99",
        }
    }
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        let bad = || {
            format!("{text:?}: a target is percentiles below durations, such as \"p99 < 50ms\" or \"p50 < 5ms, p99 < 20ms\"")
        };
        let mut limits = Vec::new();
        for condition in text.split(',') {
            let (percentile, limit) = condition.split_once('<').ok_or_else(bad)?;
            let percentile = match percentile.trim() {
                "p50" => Percentile::P50,
                "p95" => Percentile::P95,
                "p99" => Percentile::P99,
                _ => return Err(bad()),
            };
            let limit = humantime::parse_duration(limit.trim()).map_err(|_| bad())?;
            limits.push((percentile, limit));
        }
        Ok(Target { text: text.to_owned(), limits })
    }
}

impl Config {
    pub fn built_in() -> Config {
        Config::parse(BUILT_IN).expect("the built-in categories are valid")
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let mut categories = Vec::new();
        for (i, category) in raw.category.into_iter().enumerate() {
            let at = format!("category {:?}", category.name);
            if category.name.is_empty() {
                return Err(invalid(format!("category[{i}].name"), "must not be empty"));
            }
            if categories.iter().any(|c: &Category| c.name == category.name) {
                return Err(invalid(at, "is defined twice"));
            }
            if category.hop.is_empty() {
                return Err(invalid(at, "has no [[category.hop]]"));
            }
            let mut hops: Vec<HopRule> = Vec::new();
            for hop in category.hop {
                let at = format!("{at} hop {:?}", hop.name);
                if hops.iter().any(|h| h.name == hop.name) {
                    return Err(invalid(at, "is defined twice in its category"));
                }
                hops.push(hop.check(&at)?);
            }
            categories.push(Category {
                name: category.name,
                description: category.description,
                group_by: category.group_by,
                hops,
            });
        }
        if categories.is_empty() {
            return Err(invalid("the file".into(), "defines no [[category]]"));
        }
        let validation = raw.validation.map(RawValidation::check).transpose()?.unwrap_or_default();
        let mut joins: Vec<Join> = Vec::new();
        for join in raw.join {
            let at = format!("join {:?}", join.name);
            if joins.iter().any(|j| j.name == join.name) {
                return Err(invalid(at, "is defined twice"));
            }
            joins.push(join.check(&at)?);
        }
        for category in &categories {
            for hop in &category.hops {
                if let Measure::Gap { pair: Some(pair), .. } = &hop.measure {
                    if !joins.iter().any(|j| &j.name == pair) {
                        return Err(invalid(
                            format!("category {:?} hop {:?}: pair", category.name, hop.name),
                            format!("{pair:?} is not a [[join]] of this file"),
                        ));
                    }
                }
            }
        }
        let exclude = raw
            .exclude
            .into_iter()
            .enumerate()
            .map(|(i, s)| s.check(&format!("exclude[{i}]")))
            .collect::<Result<_, _>>()?;
        let fairness = raw.fairness.map(|f| f.check(&categories)).transpose()?;
        Ok(Config { categories, validation, joins, exclude, fairness })
    }
}

fn invalid(at: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { at, reason: reason.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    category: Vec<RawCategory>,
    validation: Option<RawValidation>,
    #[serde(default)]
    join: Vec<RawJoin>,
    #[serde(default)]
    exclude: Vec<RawSelector>,
    fairness: Option<RawFairness>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFairness {
    category: String,
    hop: String,
}

impl RawFairness {
    fn check(self, categories: &[Category]) -> Result<(usize, usize), ConfigError> {
        let at = || "fairness".to_owned();
        let c = categories
            .iter()
            .position(|c| c.name == self.category)
            .ok_or_else(|| invalid(at(), format!("no category {:?}", self.category)))?;
        let h = categories[c]
            .hops
            .iter()
            .position(|h| h.name == self.hop)
            .ok_or_else(|| invalid(at(), format!("category {:?} has no hop {:?}", self.category, self.hop)))?;
        Ok((c, h))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    name: String,
    #[serde(default)]
    once: bool,
    #[serde(default)]
    source: Vec<RawSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    span: Option<RawSelector>,
    #[serde(default)]
    parts: Vec<RawPart>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPart {
    attribute: Option<String>,
    resource: Option<String>,
    event: Option<String>,
    event_text: Option<String>,
}

impl RawJoin {
    fn check(self, at: &str) -> Result<Join, ConfigError> {
        if self.source.is_empty() {
            return Err(invalid(at.to_owned(), "has no [[join.source]]"));
        }
        let mut sources: Vec<JoinSource> = Vec::new();
        for (i, source) in self.source.into_iter().enumerate() {
            let at = format!("{at}: source[{i}]");
            if source.parts.is_empty() {
                return Err(invalid(format!("{at}.parts"), "is empty: name at least one part"));
            }
            let parts = source
                .parts
                .into_iter()
                .enumerate()
                .map(|(k, part)| part.check(&format!("{at}.parts[{k}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(first) = sources.first() {
                if first.parts.len() != parts.len() {
                    return Err(invalid(
                        format!("{at}.parts"),
                        format!(
                            "has {} parts, source[0] {}: a key's sources give values of one shape",
                            parts.len(),
                            first.parts.len()
                        ),
                    ));
                }
            }
            let span = source.span.map(|s| s.check(&format!("{at}.span"))).transpose()?;
            sources.push(JoinSource { span, parts });
        }
        Ok(Join { name: self.name, sources, once: self.once })
    }
}

impl RawPart {
    fn check(self, at: &str) -> Result<Part, ConfigError> {
        let given: Vec<Part> = [
            self.attribute.map(Part::Attribute),
            self.resource.map(Part::Resource),
            self.event.map(Part::Event),
            self.event_text.map(Part::EventText),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [part] = <[Part; 1]>::try_from(given)
            .map_err(|_| invalid(at.to_owned(), "give exactly one of attribute, resource, event or event_text"))?;
        if let Part::EventText(pattern) = &part {
            let regex = regex::Regex::new(pattern)
                .map_err(|e| invalid(format!("{at}.event_text"), format!("{pattern:?} is not a pattern: {e}")))?;
            if regex.captures_len() > 2 {
                return Err(invalid(format!("{at}.event_text"), format!("{pattern:?} has more than one group")));
            }
        }
        Ok(part)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValidation {
    correlation_key: Option<String>,
    clock_skew_bound: Option<String>,
    #[serde(default)]
    lifecycle: Vec<RawLifecycle>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    name: String,
    root: RawSelector,
    group_by: Option<String>,
    #[serde(default)]
    expect: BTreeMap<String, BTreeMap<String, usize>>,
}

impl RawValidation {
    fn check(self) -> Result<Validation, ConfigError> {
        let clock_skew_bound = match &self.clock_skew_bound {
            None => Duration::from_millis(5),
            Some(text) => humantime::parse_duration(text).map_err(|_| {
                invalid("validation.clock_skew_bound".into(), format!("{text:?} is not a duration such as \"5ms\""))
            })?,
        };
        let mut lifecycles: Vec<Lifecycle> = Vec::new();
        for lifecycle in self.lifecycle {
            let at = format!("validation lifecycle {:?}", lifecycle.name);
            if lifecycles.iter().any(|l| l.name == lifecycle.name) {
                return Err(invalid(at, "is defined twice"));
            }
            if lifecycle.group_by.is_none() && lifecycle.expect.keys().any(|k| k != "*") {
                return Err(invalid(
                    format!("{at}: expect"),
                    "names variants, but the lifecycle has no group_by (use expect.\"*\")",
                ));
            }
            lifecycles.push(Lifecycle {
                root: lifecycle.root.check(&format!("{at}: root"))?,
                name: lifecycle.name,
                group_by: lifecycle.group_by,
                expect: lifecycle.expect,
            });
        }
        Ok(Validation { correlation_key: self.correlation_key, clock_skew_bound, lifecycles })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: String,
    #[serde(default)]
    description: String,
    group_by: Option<String>,
    #[serde(default)]
    hop: Vec<RawHop>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHop {
    name: String,
    measure: String,
    span: Option<RawSelector>,
    from: Option<RawSelector>,
    to: Option<RawSelector>,
    from_edge: Option<String>,
    outer: Option<RawSelector>,
    inner: Option<RawSelector>,
    pair: Option<String>,
    target: Option<String>,
    #[serde(default)]
    targets: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    name: Option<String>,
    kind: Option<String>,
    service: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    parent: Option<Box<RawSelector>>,
}

impl RawHop {
    fn check(self, at: &str) -> Result<HopRule, ConfigError> {
        let RawHop { name, measure, span, from, to, from_edge, outer, inner, pair, target, targets } = self;
        let given: Vec<&str> = [
            ("span", span.is_some()),
            ("from", from.is_some()),
            ("to", to.is_some()),
            ("from_edge", from_edge.is_some()),
            ("pair", pair.is_some()),
            ("outer", outer.is_some()),
            ("inner", inner.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        let wants: &[&str] = match measure.as_str() {
            "duration" | "self_time" => &["span"],
            "gap" => &["from", "to", "from_edge", "pair"],
            "interval" => &["from", "to"],
            "difference" => &["outer", "inner"],
            other => {
                return Err(invalid(
                    format!("{at}: measure"),
                    format!("{other:?} is not a measure: duration, self_time, gap, interval or difference"),
                ))
            }
        };
        if let Some(extra) = given.iter().find(|key| !wants.contains(key)) {
            return Err(invalid(format!("{at}: {extra}"), format!("does not apply to measure {measure:?}")));
        }
        let need = |selector: Option<RawSelector>, key: &str| {
            selector
                .ok_or_else(|| invalid(format!("{at}: {key}"), format!("is required by measure {measure:?}")))
                .and_then(|s| s.check(&format!("{at}: {key}")))
        };
        let measure = match measure.as_str() {
            "duration" => Measure::Duration(need(span, "span")?),
            "self_time" => Measure::SelfTime(need(span, "span")?),
            "gap" => Measure::Gap {
                from: need(from, "from")?,
                to: need(to, "to")?,
                from_edge: match from_edge.as_deref() {
                    None | Some("end") => Edge::End,
                    Some("start") => Edge::Start,
                    Some(other) => {
                        return Err(invalid(
                            format!("{at}: from_edge"),
                            format!("{other:?} is neither \"start\" nor \"end\""),
                        ))
                    }
                },
                pair,
            },
            "interval" => Measure::Interval { from: need(from, "from")?, to: need(to, "to")? },
            _ => Measure::Difference { outer: need(outer, "outer")?, inner: need(inner, "inner")? },
        };
        let parse_target = |key: String, text: &str| Target::parse(text).map_err(|reason| invalid(key, reason));
        let target = target.map(|t| parse_target(format!("{at}: target"), &t)).transpose()?;
        let targets = targets
            .into_iter()
            .map(|(variant, t)| Ok((variant.clone(), parse_target(format!("{at}: targets.{variant}"), &t)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(HopRule { name, measure, target, targets })
    }
}

impl RawSelector {
    fn check(self, at: &str) -> Result<Selector, ConfigError> {
        let kind = match self.kind.as_deref() {
            None => None,
            Some(name) => Some(SpanKind::from_name(name).ok_or_else(|| {
                invalid(
                    format!("{at}.kind"),
                    format!("{name:?} is not a span kind: internal, server, client, producer or consumer"),
                )
            })?),
        };
        let parent = self.parent.map(|p| p.check(&format!("{at}.parent")).map(Box::new)).transpose()?;
        let selector = Selector {
            name: self.name.map(NamePattern),
            kind,
            service: self.service,
            attributes: self.attributes.into_iter().collect(),
            parent,
        };
        if selector == Selector::default() {
            return Err(invalid(at.to_owned(), "selects every span: give a name, kind, service, attributes or parent"));
        }
        Ok(selector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_file_has_the_six_categories_of_the_design() {
        let config = Config::built_in();
        let names: Vec<&str> = config.categories.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "task_initialization",
                "step_enqueueing",
                "worker_execution",
                "event_propagation",
                "e2e_latency",
                "handler_overhead"
            ]
        );
        let e2e = &config.categories[4].hops[0];
        assert_eq!(e2e.target_for("tree_7").unwrap().limits, vec![(Percentile::P99, Duration::from_millis(1500))]);
        assert_eq!(e2e.target_for("linear_10"), None);
    }

    #[test]
    fn the_built_in_validation_knows_the_task_and_ping_lifecycles() {
        let v = Config::built_in().validation;
        assert_eq!(v.correlation_key.as_deref(), Some("task.uuid"));
        assert_eq!(v.clock_skew_bound, Duration::from_millis(5));
        let task = &v.lifecycles[0];
        assert_eq!(task.expected(Some("tree_7")).unwrap()["process step_queue"], 7);
        assert_eq!(task.expected(Some("linear_4")), None);
        assert_eq!(v.lifecycles[1].expected(None).unwrap()["receive hoptrace_ping"], 1);
    }

    #[test]
    fn globs_match_any_text_where_the_star_is() {
        let p = |s: &str| NamePattern(s.into());
        assert!(p("execute *").matches("execute noop"));
        assert!(p("execute *").matches("execute "));
        assert!(!p("execute *").matches("execute"));
        assert!(p("*queue").matches("send step_queue"));
        assert!(p("s*d *_queue").matches("send step_queue"));
        assert!(!p("send").matches("send step_queue"));
    }

    #[test]
    fn targets_parse_and_bad_ones_say_how_to_write_them() {
        let t = Target::parse("p50 < 5ms, p99 < 1.5s").unwrap();
        assert_eq!(
            t.limits,
            vec![(Percentile::P50, Duration::from_millis(5)), (Percentile::P99, Duration::from_millis(1500))]
        );
        for bad in ["p99 > 5ms", "p98 < 5ms", "p99 < fast", ""] {
            assert!(Target::parse(bad).unwrap_err().contains("such as \"p99 < 50ms\""), "{bad}");
        }
    }

    fn error_of(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_and_the_reason() {
        let hop = |body: &str| format!("[[category]]\nname = \"c\"\n[[category.hop]]\nname = \"h\"\n{body}");
        assert_eq!(
            error_of(&hop("measure = \"duration\"\nspan = { name = \"x\" }\ntarget = \"p99 > 5ms\"")),
            "category \"c\" hop \"h\": target: \"p99 > 5ms\": a target is percentiles below durations, such as \"p99 < 50ms\" or \"p50 < 5ms, p99 < 20ms\""
        );
        assert_eq!(
            error_of(&hop("measure = \"gap\"\nfrom = { name = \"x\" }")),
            "category \"c\" hop \"h\": to: is required by measure \"gap\""
        );
        assert_eq!(
            error_of(&hop("measure = \"duration\"\nspan = { name = \"x\" }\nouter = { name = \"y\" }")),
            "category \"c\" hop \"h\": outer: does not apply to measure \"duration\""
        );
        assert_eq!(
            error_of(&hop("measure = \"latency\"")),
            "category \"c\" hop \"h\": measure: \"latency\" is not a measure: duration, self_time, gap, interval or difference"
        );
        assert_eq!(
            error_of(&hop("measure = \"duration\"\nspan = { kind = \"server\", parent = { kind = \"sever\" } }")),
            "category \"c\" hop \"h\": span.parent.kind: \"sever\" is not a span kind: internal, server, client, producer or consumer"
        );
        assert_eq!(
            error_of(&hop("measure = \"duration\"\nspan = {}")),
            "category \"c\" hop \"h\": span: selects every span: give a name, kind, service, attributes or parent"
        );
        assert!(error_of(&hop("measure = \"duration\"\nspan = { nme = \"x\" }")).contains("unknown field `nme`"));
        assert_eq!(error_of(""), "the file: defines no [[category]]");
    }

    #[test]
    fn joins_are_checked_part_by_part_and_a_pair_names_one() {
        let with = |joins: &str, pair: &str| {
            format!(
                "{joins}\n[[category]]\nname = \"c\"\n[[category.hop]]\nname = \"h\"\nmeasure = \"gap\"\nfrom = {{ name = \"a\" }}\nto = {{ name = \"b\" }}\npair = \"{pair}\""
            )
        };
        let message = "[[join]]\nname = \"m\"\n[[join.source]]\nspan = { name = \"a\" }\nparts = [{ attribute = \"q\" }, { event_text = 'ID: (\\d+)' }]\n[[join.source]]\nparts = [{ attribute = \"q\" }, { attribute = \"id\" }]";
        let config = Config::parse(&with(message, "m")).unwrap();
        assert_eq!(
            config.joins[0].sources[0].parts,
            [Part::Attribute("q".into()), Part::EventText("ID: (\\d+)".into())]
        );
        assert_eq!(config.joins[0].sources[0].parts[1].field(), "event_text:ID: (\\d+)");
        assert_eq!(
            error_of(&with(message, "n")),
            "category \"c\" hop \"h\": pair: \"n\" is not a [[join]] of this file"
        );
        let join = |source: &str| format!("[[join]]\nname = \"m\"\n{source}");
        assert_eq!(error_of(&with(&join(""), "m")), "join \"m\": has no [[join.source]]");
        assert_eq!(
            error_of(&with(&join("[[join.source]]\nparts = [{ attribute = \"a\", event = \"b\" }]"), "m")),
            "join \"m\": source[0].parts[0]: give exactly one of attribute, resource, event or event_text"
        );
        assert!(error_of(&with(&join("[[join.source]]\nparts = [{ event_text = \"(\" }]"), "m"))
            .starts_with("join \"m\": source[0].parts[0].event_text: \"(\" is not a pattern"));
        assert_eq!(
            error_of(&with(&join("[[join.source]]\nparts = [{ event_text = \"(a)(b)\" }]"), "m")),
            "join \"m\": source[0].parts[0].event_text: \"(a)(b)\" has more than one group"
        );
        assert_eq!(
            error_of(&with(&join("[[join.source]]\nparts = [{ attribute = \"a\" }]\n[[join.source]]\nparts = [{ attribute = \"a\" }, { resource = \"b\" }]"), "m")),
            "join \"m\": source[1].parts: has 2 parts, source[0] 1: a key's sources give values of one shape"
        );
        assert_eq!(error_of(&with(&format!("{message}\n{message}"), "m")), "join \"m\": is defined twice");
    }
}
