//! Carving a port range for an unknown service type name (the original Styxy's auto-allocation,
//! with its defects fixed: names are checked first, `min_port` and `max_port`
//! bound every placement, nested ranges are merged, chunk 1 is fine, and the
//! result never overlaps a range in use).
//!
//! [`plan`] is pure: the caller passes every range in use and holds the state
//! write lock while it plans and records the result, so concurrent callers
//! cannot be handed the same range.

use crate::config::{AutoAllocation, Placement, Rule, valid_type_name};

/// The first rule whose pattern matches the whole name.
pub fn rule_for<'a>(rules: &'a [Rule], name: &str) -> Option<&'a Rule> {
    rules.iter().find(|rule| glob_matches(&rule.pattern, name))
}

/// `*` matches any run of characters (including none); every other
/// character matches only itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen, and where in the text its run currently ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&'*') {
            star = Some((p, t));
            p += 1;
        } else if pattern.get(p) == Some(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            // Let the `*` swallow one more character and retry.
            star = Some((star_p, star_t + 1));
            p = star_p + 1;
            t = star_t + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Where a new type's range goes and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Inclusive.
    pub range: [u16; 2],
    pub chunk_size: u16,
    pub placement: Placement,
    /// The pattern of the rule that applied, if any.
    pub rule: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoAllocError {
    #[error(
        "unknown service type '{name}' and auto-allocation is disabled \
         (enable it with `styxy config auto-allocation enable`)"
    )]
    Disabled { name: String },
    #[error("invalid service type name '{name}': use 1 to 50 ASCII letters, digits or '-'")]
    InvalidName { name: String },
    #[error("chunk size 0 cannot hold a port (from {source_of_chunk})")]
    ZeroChunk { source_of_chunk: String },
    #[error("no room for {chunk} ports above the highest range without passing max_port {max_port}")]
    Exhausted { chunk: u16, max_port: u16 },
    #[error("no room for {chunk} ports below the lowest range without going under min_port {min_port}")]
    BelowMin { chunk: u16, min_port: u16 },
    #[error("no free gap of {chunk} ports (plus gaps) between min_port {min_port} and max_port {max_port}")]
    NoGap { chunk: u16, min_port: u16, max_port: u16 },
}

/// Plans the range for the unknown type `name`, given every range in use
/// (built-in, configured and already auto-allocated types).
pub fn plan(cfg: &AutoAllocation, existing: &[[u16; 2]], name: &str) -> Result<Plan, AutoAllocError> {
    if !valid_type_name(name) {
        return Err(AutoAllocError::InvalidName { name: name.to_owned() });
    }
    if !cfg.enabled {
        return Err(AutoAllocError::Disabled { name: name.to_owned() });
    }
    let rule = rule_for(&cfg.rules, name);
    let chunk_size = rule.and_then(|r| r.chunk_size).unwrap_or(cfg.default_chunk_size);
    let placement = rule.and_then(|r| r.placement).unwrap_or(cfg.placement);
    if chunk_size == 0 {
        let source_of_chunk = match rule.filter(|r| r.chunk_size.is_some()) {
            Some(r) => format!("rule '{}'", r.pattern),
            None => "default_chunk_size".to_owned(),
        };
        return Err(AutoAllocError::ZeroChunk { source_of_chunk });
    }
    let window = Window {
        low: u32::from(cfg.min_port),
        high: u32::from(cfg.max_port),
        chunk: u32::from(chunk_size),
        gap: if cfg.preserve_gaps { u32::from(cfg.gap_size) } else { 0 },
        used: merged(existing),
    };
    let start = match placement {
        Placement::After => window.after(),
        Placement::Before => window.before(),
        Placement::Smart => window.smart(),
    }
    .ok_or(match placement {
        Placement::After => AutoAllocError::Exhausted { chunk: chunk_size, max_port: cfg.max_port },
        Placement::Before => AutoAllocError::BelowMin { chunk: chunk_size, min_port: cfg.min_port },
        Placement::Smart => AutoAllocError::NoGap { chunk: chunk_size, min_port: cfg.min_port, max_port: cfg.max_port },
    })?;
    // `start + chunk - 1 <= high <= u16::MAX` holds for every placement.
    let end = start + window.chunk - 1;
    Ok(Plan { range: [start as u16, end as u16], chunk_size, placement, rule: rule.map(|r| r.pattern.clone()) })
}

/// Ranges in use, sorted, with overlapping, nested and touching ones merged
/// (so a range inside another cannot hide it). Reversed ends are tolerated.
fn merged(existing: &[[u16; 2]]) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> =
        existing.iter().map(|&[a, b]| (u32::from(a.min(b)), u32::from(a.max(b)))).collect();
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 + 1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// The allowed window `[low, high]`, the request, and the ranges in use.
/// Each placement returns the start of a free run of `chunk` ports inside
/// the window, at least `gap` ports away from the ranges it was placed
/// against, or `None`.
struct Window {
    low: u32,
    high: u32,
    chunk: u32,
    gap: u32,
    used: Vec<(u32, u32)>,
}

impl Window {
    fn fits(&self, start: u32, last_allowed: u32) -> Option<u32> {
        (start >= self.low && start + self.chunk - 1 <= last_allowed.min(self.high)).then_some(start)
    }

    /// Above the highest range that reaches into the window.
    fn after(&self) -> Option<u32> {
        let top = self
            .used
            .iter()
            .filter(|(start, end)| *end >= self.low && *start <= self.high)
            .map(|(_, end)| end + self.gap + 1)
            .max();
        self.fits(top.unwrap_or(self.low).max(self.low), self.high)
    }

    /// Just below the lowest range starting in the window (or at the top of
    /// an empty window), staying clear of a range straddling `min_port`.
    fn before(&self) -> Option<u32> {
        let ceiling = match self.used.iter().find(|(start, _)| *start >= self.low && *start <= self.high) {
            // `checked_sub`: no room at all below a range near port 0.
            Some((start, _)) => start.checked_sub(self.gap + 1)?,
            None => self.high,
        };
        let floor = self
            .used
            .iter()
            .filter(|(start, end)| *start < self.low && *end >= self.low)
            .map(|(_, end)| end + self.gap + 1)
            .fold(self.low, u32::max);
        let start = (ceiling + 1).checked_sub(self.chunk)?;
        (start >= floor).then_some(start).and_then(|s| self.fits(s, ceiling))
    }

    /// The lowest free run in the window with `gap` ports on each side
    /// that borders a range.
    fn smart(&self) -> Option<u32> {
        let mut lowest_free = self.low;
        for (start, end) in &self.used {
            let free_end = start.checked_sub(self.gap + 1);
            if let Some(found) = free_end.and_then(|free_end| self.fits(lowest_free, free_end)) {
                return Some(found);
            }
            lowest_free = lowest_free.max(end + self.gap + 1);
        }
        self.fits(lowest_free, self.high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn enabled() -> AutoAllocation {
        AutoAllocation { enabled: true, ..Config::builtin().auto_allocation }
    }

    fn builtin_ranges() -> Vec<[u16; 2]> {
        Config::builtin().service_types.values().map(|t| t.range).collect()
    }

    fn with_placement(placement: Placement) -> AutoAllocation {
        AutoAllocation { placement, rules: Vec::new(), ..enabled() }
    }

    fn rule(pattern: &str) -> Rule {
        Rule { pattern: pattern.into(), chunk_size: None, placement: None }
    }

    #[test]
    fn globs_match_whole_names_and_nothing_is_a_metacharacter_but_star() {
        let cases = [
            ("monitoring-*", "monitoring-grafana", true),
            ("monitoring-*", "monitoring-", true),
            ("monitoring-*", "my-monitoring", false),
            ("monitoring-*", "monitoring", false),
            ("a.b-*", "a.b-1", true),
            ("a.b-*", "axb-1", false),
            ("a+-*", "aa-1", false),
            ("a+-*", "a+-1", true),
            ("(x|y)", "x", false),
            ("db[0-9]", "db1", false),
            ("*", "anything", true),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("*-cache", "redis-cache", true),
            ("*-cache", "redis-cache-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXcYYb", false),
            ("a*a", "aaa", true),
            ("**x", "yx", true),
        ];
        for (pattern, name, matches) in cases {
            assert_eq!(glob_matches(pattern, name), matches, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = [rule("api-*"), rule("*"), rule("api-v2")];
        assert_eq!(rule_for(&rules, "api-v2").unwrap().pattern, "api-*");
        assert_eq!(rule_for(&rules, "web").unwrap().pattern, "*");
        assert!(rule_for(&rules[..1], "web").is_none());
    }

    #[test]
    fn after_lands_above_the_builtin_types_as_in_the_original() {
        let first = plan(&enabled(), &builtin_ranges(), "grafana").unwrap();
        assert_eq!(first, Plan { range: [11510, 11519], chunk_size: 10, placement: Placement::After, rule: None });
        let mut existing = builtin_ranges();
        existing.push(first.range);
        assert_eq!(plan(&enabled(), &existing, "loki").unwrap().range, [11530, 11539]);
    }

    #[test]
    fn rules_set_chunk_and_placement() {
        let monitoring = plan(&enabled(), &builtin_ranges(), "monitoring-grafana").unwrap();
        assert_eq!(
            monitoring,
            Plan {
                range: [10000, 10019],
                chunk_size: 20,
                placement: Placement::Smart,
                rule: Some("monitoring-*".into()),
            }
        );
        let database = plan(&enabled(), &builtin_ranges(), "database-mongo").unwrap();
        assert_eq!(database.range, [11510, 11514]);
        assert_eq!(database.placement, Placement::After);
    }

    #[test]
    fn after_respects_min_port() {
        let plan = plan(&enabled(), &[[3000, 3099]], "x").unwrap();
        assert_eq!(plan.range, [10000, 10009]);
        let plan_empty = super::plan(&enabled(), &[], "x").unwrap();
        assert_eq!(plan_empty.range, [10000, 10009]);
    }

    #[test]
    fn after_ignores_ranges_beyond_max_port() {
        let plan = plan(&enabled(), &[[60000, 60099], [12000, 12009]], "x").unwrap();
        assert_eq!(plan.range, [12020, 12029]);
    }

    #[test]
    fn before_lands_below_the_lowest_range_above_min_port() {
        let cfg = with_placement(Placement::Before);
        assert_eq!(plan(&cfg, &builtin_ranges(), "x").unwrap().range, [11380, 11389]);
        // Nothing in the window: fill from the top down.
        assert_eq!(plan(&cfg, &[[3000, 3099]], "x").unwrap().range, [49142, 49151]);
        // A range straddling min_port keeps its gap too.
        assert_eq!(plan(&cfg, &[[9990, 10005], [10036, 10100]], "x").unwrap().range, [10016, 10025]);
        assert_eq!(
            plan(&cfg, &[[9990, 10005], [10035, 10100]], "x"),
            Err(AutoAllocError::BelowMin { chunk: 10, min_port: 10000 })
        );
    }

    #[test]
    fn before_stops_at_min_port() {
        let cfg = AutoAllocation { min_port: 11390, ..with_placement(Placement::Before) };
        let err = plan(&cfg, &builtin_ranges(), "x").unwrap_err();
        assert_eq!(err, AutoAllocError::BelowMin { chunk: 10, min_port: 11390 });
        assert_eq!(err.to_string(), "no room for 10 ports below the lowest range without going under min_port 11390");
        let cfg = AutoAllocation { min_port: 11380, ..with_placement(Placement::Before) };
        assert_eq!(plan(&cfg, &builtin_ranges(), "x").unwrap().range, [11380, 11389]);
    }

    #[test]
    fn smart_takes_the_lowest_gap_inside_the_window() {
        let cfg = with_placement(Placement::Smart);
        // The original found gaps below 10000 (after 3199); the window forbids that.
        assert_eq!(plan(&cfg, &builtin_ranges(), "x").unwrap().range, [10000, 10009]);
        // Exactly gap + chunk + gap between two ranges fits; one port less does not.
        assert_eq!(plan(&cfg, &[[10000, 10009], [10040, 10049]], "x").unwrap().range, [10020, 10029]);
        assert_eq!(plan(&cfg, &[[10000, 10009], [10039, 10049]], "x").unwrap().range, [10060, 10069]);
    }

    #[test]
    fn smart_sees_ranges_nested_inside_others() {
        let cfg = with_placement(Placement::Smart);
        let existing = [[10000, 20000], [10005, 10010], [15000, 15010]];
        assert_eq!(plan(&cfg, &existing, "x").unwrap().range, [20011, 20020]);
    }

    #[test]
    fn smart_reports_a_full_window() {
        let cfg = AutoAllocation { min_port: 10000, max_port: 10030, ..with_placement(Placement::Smart) };
        let err = plan(&cfg, &[[10005, 10020]], "x").unwrap_err();
        assert_eq!(err, AutoAllocError::NoGap { chunk: 10, min_port: 10000, max_port: 10030 });
    }

    #[test]
    fn gaps_can_be_resized_or_dropped() {
        let no_gaps = AutoAllocation { preserve_gaps: false, ..enabled() };
        assert_eq!(plan(&no_gaps, &builtin_ranges(), "x").unwrap().range, [11500, 11509]);
        let zero_gap = AutoAllocation { gap_size: 0, ..enabled() };
        assert_eq!(plan(&zero_gap, &builtin_ranges(), "x").unwrap().range, [11500, 11509]);
        let wide = AutoAllocation { gap_size: 25, ..enabled() };
        assert_eq!(plan(&wide, &builtin_ranges(), "x").unwrap().range, [11525, 11534]);
    }

    #[test]
    fn a_chunk_of_one_port_is_a_valid_range() {
        let cfg = AutoAllocation { default_chunk_size: 1, ..enabled() };
        for placement in [Placement::After, Placement::Before, Placement::Smart] {
            let plan = plan(&AutoAllocation { placement, ..cfg.clone() }, &builtin_ranges(), "x").unwrap();
            assert_eq!(plan.range[0], plan.range[1], "{placement}");
            assert_eq!(plan.chunk_size, 1);
        }
    }

    #[test]
    fn after_stops_at_max_port() {
        let exact = AutoAllocation { max_port: 11519, ..enabled() };
        assert_eq!(plan(&exact, &builtin_ranges(), "x").unwrap().range, [11510, 11519]);
        let short = AutoAllocation { max_port: 11518, ..enabled() };
        let err = plan(&short, &builtin_ranges(), "x").unwrap_err();
        assert_eq!(err, AutoAllocError::Exhausted { chunk: 10, max_port: 11518 });
        assert_eq!(err.to_string(), "no room for 10 ports above the highest range without passing max_port 11518");
        // The top of the port space does not overflow.
        let top = AutoAllocation { min_port: 65000, max_port: 65535, ..enabled() };
        assert_eq!(plan(&top, &[[65000, 65525]], "x"), Err(AutoAllocError::Exhausted { chunk: 10, max_port: 65535 }));
        let no_gap_top = AutoAllocation { preserve_gaps: false, ..top };
        assert_eq!(plan(&no_gap_top, &[[65000, 65525]], "x").unwrap().range, [65526, 65535]);
    }

    #[test]
    fn names_and_the_switch_are_checked_before_anything_else() {
        let err = plan(&enabled(), &[], "Bad Type!").unwrap_err();
        assert_eq!(err, AutoAllocError::InvalidName { name: "Bad Type!".into() });
        let disabled = AutoAllocation { enabled: false, ..enabled() };
        assert_eq!(plan(&disabled, &[], "grafana"), Err(AutoAllocError::Disabled { name: "grafana".into() }));
        let zero = AutoAllocation { default_chunk_size: 0, ..enabled() };
        assert_eq!(
            plan(&zero, &[], "x").unwrap_err().to_string(),
            "chunk size 0 cannot hold a port (from default_chunk_size)"
        );
    }

    /// Deterministic xorshift, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Whether some run of `chunk` ports in the window keeps `gap` ports
    /// from every range in use (the condition smart promises to find).
    fn some_gap_fits(cfg: &AutoAllocation, existing: &[[u16; 2]], chunk: u32, gap: u32) -> bool {
        (u32::from(cfg.min_port)..=u32::from(cfg.max_port) + 1 - chunk).any(|start| {
            let end = start + chunk - 1;
            existing.iter().all(|&[a, b]| {
                let (a, b) = (u32::from(a), u32::from(b));
                end + gap < a || b + gap < start
            })
        })
    }

    #[test]
    fn successive_plans_never_overlap_and_stay_in_the_window() {
        for placement in [Placement::After, Placement::Before, Placement::Smart] {
            for seed in 1..=4u64 {
                let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let cfg = AutoAllocation {
                    placement,
                    min_port: 10000,
                    max_port: 10000 + 2000 + rng.below(4000) as u16,
                    preserve_gaps: rng.below(4) != 0,
                    gap_size: rng.below(20) as u16,
                    rules: Vec::new(),
                    ..enabled()
                };
                let gap = if cfg.preserve_gaps { u32::from(cfg.gap_size) } else { 0 };
                // Built-ins plus scattered ranges, some straddling the window's edges.
                let mut existing = builtin_ranges();
                if rng.below(2) == 0 {
                    existing.push([9950, 10000 + rng.below(100) as u16]);
                }
                for _ in 0..rng.below(8) {
                    let start = 11600 + rng.below(6000) as u16;
                    existing.push([start, start + rng.below(150) as u16]);
                }
                let mut placed = 0;
                for i in 0..200 {
                    let chunk = 1 + rng.below(40) as u16;
                    let cfg = AutoAllocation { default_chunk_size: chunk, ..cfg.clone() };
                    match plan(&cfg, &existing, &format!("t{i}")) {
                        Ok(p) => {
                            let [start, end] = p.range;
                            assert_eq!(u32::from(end - start) + 1, u32::from(chunk));
                            assert!(start >= cfg.min_port && end <= cfg.max_port, "{placement}: {p:?} leaves {cfg:?}");
                            for &[a, b] in &existing {
                                assert!(end < a || b < start, "{placement}: {p:?} overlaps [{a}, {b}]");
                            }
                            if placement == Placement::Smart {
                                for &[a, b] in &existing {
                                    let (a, b, s, e) = (u32::from(a), u32::from(b), u32::from(start), u32::from(end));
                                    assert!(e + gap < a || b + gap < s, "{p:?} closer than {gap} to [{a}, {b}]");
                                }
                            }
                            existing.push(p.range);
                            placed += 1;
                        }
                        Err(AutoAllocError::NoGap { .. }) => {
                            assert!(!some_gap_fits(&cfg, &existing, u32::from(chunk), gap), "smart missed a gap");
                        }
                        Err(AutoAllocError::Exhausted { .. }) => {
                            assert_eq!(placement, Placement::After)
                        }
                        Err(AutoAllocError::BelowMin { .. }) => {
                            assert_eq!(placement, Placement::Before)
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                assert!(placed > 10, "{placement}: only {placed} plans succeeded");
            }
        }
    }
}
