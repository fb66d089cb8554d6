//! Flag evaluation: pure, in memory, no I/O and no allocation on the path (semver constraints aside), the same
//! answer on every instance and after restarts.
//!
//! Order: kill switch (`enabled: false` → `DISABLED`) → targeting rules in order (the first whose constraints all
//! hold, and whose own rollout takes the user if it has one, decides: `TARGETING_MATCH`) → the percentage rollout
//! (`SPLIT`; 0 and 100 are `DEFAULT`). Buckets are Unleash's, so its published client-specification vectors apply:
//! `murmur3_x86_32("{group_id}:{stickiness value}", seed 0) % 100 + 1 ≤ percent`, variants with seed 86028157 over
//! the total weight. Raising the percentage only adds users.

use std::io::Read;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Unleash's variant seed.
const VARIANT_SEED: u32 = 86_028_157;

/// A flag as stored and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Flag {
    /// `[a-z0-9._-]`, 1 to 64 characters, e.g. `orders.list_v2`.
    pub key: String,
    #[serde(default)]
    pub description: String,
    /// The kill switch: `false` wins over everything.
    pub enabled: bool,
    /// 0 to 100: the share of users (by bucket) the flag is on for, after the rules.
    #[serde(default)]
    pub rollout_percent: u8,
    /// Whose id decides the bucket: `default` (the user id, else the anonymous id), `user_id`, `anon_id`, or an
    /// attribute's name.
    #[serde(default = "default_stickiness")]
    pub stickiness: String,
    /// Hashed with the stickiness value; unset = the key. Two flags with one group id bucket users alike.
    #[serde(default)]
    pub group_id: Option<String>,
    /// Targeting before the rollout, in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Multi-variant flags: when on, a sticky variant by weight.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Served to the mini-program (OFREP); others never leave the server.
    #[serde(default)]
    pub client_visible: bool,
    /// Bumped by every change (optimistic concurrency: `If-Match`).
    #[serde(default)]
    pub version: i64,
}

fn default_stickiness() -> String {
    "default".into()
}

/// A targeting rule: when every constraint holds (and its own rollout, if any, takes the user), it serves `serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Named in evaluations (`rule_id`).
    pub id: String,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    /// On (an allow rule) or off (a deny rule).
    #[serde(default = "yes")]
    pub serve: bool,
    /// Within the rule, only this share of its users (same buckets as the flag's rollout).
    #[serde(default)]
    pub rollout_percent: Option<u8>,
}

fn yes() -> bool {
    true
}

/// One condition on the evaluation context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    /// `user_id`, `anon_id`, `platform`, `app_version`, `current_time`, or any attribute the client sends.
    pub attribute: String,
    pub operator: Operator,
    #[serde(default)]
    pub values: Vec<String>,
    /// Negates the result.
    #[serde(default)]
    pub inverted: bool,
    /// For the string operators.
    #[serde(default)]
    pub case_insensitive: bool,
}

/// Unleash's constraint operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    NumEq,
    NumGt,
    NumGte,
    NumLt,
    NumLte,
    DateAfter,
    DateBefore,
    SemverEq,
    SemverGt,
    SemverGte,
    SemverLt,
    SemverLte,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Relative weight (Unleash uses a total of 1000).
    pub weight: u32,
    /// Any JSON the client gets with the variant.
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// Why an evaluation came out as it did (OpenFeature's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Disabled,
    TargetingMatch,
    Split,
    Default,
    /// The snapshot is older than the staleness threshold (the store or Redis is unreachable); the value is the
    /// last known one.
    Stale,
    /// No such flag (or it could not be evaluated): the caller's default.
    Error,
}

/// Who is asking: borrowed, so building one costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    pub user_id: Option<&'a str>,
    pub anon_id: Option<&'a str>,
    /// Other attributes (`platform`, `app_version`, `current_time` …).
    pub properties: &'a [(&'a str, &'a str)],
    /// For `current_time` when the context does not carry one (epoch ms).
    pub now_ms: i64,
}

impl<'a> Context<'a> {
    fn get(&self, attribute: &str) -> Option<&'a str> {
        match attribute {
            "user_id" | "userId" => self.user_id,
            "anon_id" | "sessionId" => self.anon_id,
            _ => self.properties.iter().find(|(k, _)| *k == attribute).map(|(_, v)| *v),
        }
    }
}

/// The outcome of one evaluation, borrowing from the flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation<'a> {
    pub enabled: bool,
    pub variant: Option<&'a Variant>,
    pub reason: Reason,
    pub version: i64,
    pub rule_id: Option<&'a str>,
    /// The 1–100 number the rollout compares, when the context has a stickiness value.
    pub bucket: Option<u32>,
}

/// `murmur3_x86_32("{group}:{id}", seed) % modulus + 1`, hashed from the pieces (no string is built).
pub fn normalized(group: &str, id: &str, seed: u32, modulus: u32) -> u32 {
    let mut input = group.as_bytes().chain(&b":"[..]).chain(id.as_bytes());
    let hash = murmur3::murmur3_32(&mut input, seed).expect("reading from memory cannot fail");
    hash % modulus + 1
}

impl Flag {
    pub fn group(&self) -> &str {
        self.group_id.as_deref().unwrap_or(&self.key)
    }

    fn stickiness_value<'c>(&self, ctx: &Context<'c>) -> Option<&'c str> {
        match self.stickiness.as_str() {
            "default" => ctx.user_id.or(ctx.anon_id),
            other => ctx.get(other),
        }
    }

    /// The bucket (1–100) of this context, when it has a stickiness value.
    pub fn bucket(&self, ctx: &Context<'_>) -> Option<u32> {
        self.stickiness_value(ctx).map(|id| normalized(self.group(), id, 0, 100))
    }

    pub fn evaluate(&self, ctx: &Context<'_>) -> Evaluation<'_> {
        let bucket = self.bucket(ctx);
        let mut result = Evaluation {
            enabled: false,
            variant: None,
            reason: Reason::Disabled,
            version: self.version,
            rule_id: None,
            bucket,
        };
        if !self.enabled {
            return result;
        }
        // Without a stickiness value only 100% takes the user, and only with `default` stickiness (Unleash: an
        // explicit stickiness attribute that is missing never matches).
        let takes = |percent: u8| match bucket {
            Some(b) => b <= percent as u32,
            None => percent >= 100 && self.stickiness == "default",
        };
        let decided = self
            .rules
            .iter()
            .find(|rule| rule.constraints.iter().all(|c| c.holds(ctx)) && rule.rollout_percent.is_none_or(takes));
        match decided {
            Some(rule) => {
                result.enabled = rule.serve;
                result.reason = Reason::TargetingMatch;
                result.rule_id = Some(&rule.id);
            }
            None => {
                result.enabled = takes(self.rollout_percent);
                result.reason = match (self.rollout_percent, bucket) {
                    (1..=99, Some(_)) => Reason::Split,
                    _ => Reason::Default,
                };
            }
        }
        if result.enabled {
            result.variant = self.variant(ctx);
        }
        result
    }

    /// The sticky variant by weight (none without variants). Hashed on the key, as Unleash hashes feature
    /// variants on the feature's name; without a stickiness value (where Unleash draws at random) the first.
    fn variant(&self, ctx: &Context<'_>) -> Option<&Variant> {
        let total: u32 = self.variants.iter().map(|v| v.weight).sum();
        if total == 0 {
            return None;
        }
        let point = self.stickiness_value(ctx).map_or(1, |id| normalized(&self.key, id, VARIANT_SEED, total));
        let mut cumulative = 0;
        self.variants.iter().find(|v| {
            cumulative += v.weight;
            point <= cumulative
        })
    }
}

impl Constraint {
    fn holds(&self, ctx: &Context<'_>) -> bool {
        let value = ctx.get(&self.attribute);
        let result = match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|c| self.text_eq(v, c))),
            // NOT_IN holds for a missing value (Unleash).
            Operator::NotIn => !value.is_some_and(|v| self.values.iter().any(|c| self.text_eq(v, c))),
            Operator::StartsWith | Operator::EndsWith | Operator::Contains => {
                value.is_some_and(|v| self.values.iter().any(|c| self.text(v, c)))
            }
            Operator::NumEq | Operator::NumGt | Operator::NumGte | Operator::NumLt | Operator::NumLte => {
                let (Some(v), Some(c)) = (
                    value.and_then(|v| v.trim().parse::<f64>().ok()),
                    self.first().and_then(|c| c.parse::<f64>().ok()),
                ) else {
                    return false;
                };
                match self.operator {
                    Operator::NumEq => v == c,
                    Operator::NumGt => v > c,
                    Operator::NumGte => v >= c,
                    Operator::NumLt => v < c,
                    _ => v <= c,
                }
            }
            Operator::DateAfter | Operator::DateBefore => {
                let now = match value {
                    Some(v) => match parse_time(v) {
                        Some(t) => t,
                        None => return false,
                    },
                    None => ctx.now_ms,
                };
                let Some(at) = self.first().and_then(parse_time) else { return false };
                if self.operator == Operator::DateAfter {
                    now > at
                } else {
                    now < at
                }
            }
            Operator::SemverEq
            | Operator::SemverGt
            | Operator::SemverGte
            | Operator::SemverLt
            | Operator::SemverLte => {
                let (Some(v), Some(c)) = (
                    value.and_then(|v| semver::Version::parse(v).ok()),
                    self.first().and_then(|c| semver::Version::parse(c).ok()),
                ) else {
                    return false;
                };
                match self.operator {
                    Operator::SemverEq => v == c,
                    Operator::SemverGt => v > c,
                    Operator::SemverGte => v >= c,
                    Operator::SemverLt => v < c,
                    _ => v <= c,
                }
            }
        };
        result != self.inverted
    }

    fn first(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    fn text_eq(&self, value: &str, candidate: &str) -> bool {
        if self.case_insensitive {
            value.eq_ignore_ascii_case(candidate)
        } else {
            value == candidate
        }
    }

    /// `starts_with` / `ends_with` / `contains`, optionally ignoring ASCII case (no allocation).
    fn text(&self, value: &str, candidate: &str) -> bool {
        let (value, candidate) = (value.as_bytes(), candidate.as_bytes());
        let same = |a: &[u8], b: &[u8]| if self.case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        if candidate.len() > value.len() {
            return false;
        }
        match self.operator {
            Operator::StartsWith => same(&value[..candidate.len()], candidate),
            Operator::EndsWith => same(&value[value.len() - candidate.len()..], candidate),
            _ => candidate.is_empty() || value.windows(candidate.len()).any(|w| same(w, candidate)),
        }
    }
}

/// RFC 3339 → epoch ms.
fn parse_time(value: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}
