//! Hot spots (热点): group recent tickets by what they are about and flag groups that grow faster
//! than their own baseline.
//!
//! Clustering is single-pass "leader" clustering (an item is compared with each cluster's first
//! member, so clusters cannot drift into one) on vectors made of the hashed character n-grams
//! and the e5 embedding of each ticket (each half unit length, the whole normalised, so the
//! similarity is the mean of the lexical and the semantic cosine: e5 alone rates most short
//! Chinese complaints alike): an item joins the most similar cluster centroid at or above `similarity`, with a
//! small bonus for the same district, else starts a new cluster. Bursts compare each cluster's
//! count in the recent window with its rate over the preceding baseline window (Poisson z-score).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HotspotConfig {
    /// Cosine similarity to join a cluster.
    pub similarity: f32,
    /// Added to the similarity when both items name the same district.
    pub region_bonus: f32,
    /// Recent window (days) whose counts are tested for a burst.
    pub window_days: i64,
    /// Baseline window (days) before the recent window.
    pub baseline_days: i64,
    /// z-score at or above which a cluster is flagged as a burst.
    pub burst_z: f64,
    /// Smallest recent count that can be a burst.
    pub burst_min: u64,
    /// The first this-many dimensions of each vector are n-gram counts: they are re-weighted by
    /// inverse document frequency over the batch (words every message uses stop counting) and
    /// re-normalised; the rest (the embedding) is kept as is.
    pub idf_prefix: usize,
}

impl Default for HotspotConfig {
    fn default() -> Self {
        HotspotConfig { similarity: 0.6, region_bonus: 0.02, window_days: 7, baseline_days: 56, burst_z: 3.0, burst_min: 3, idf_prefix: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub at: DateTime<Utc>,
    pub district: Option<String>,
    /// Support (likes, repeated calls); counts toward heat.
    pub weight: f64,
    /// Unit vector.
    pub vector: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub members: Vec<String>,
    /// The member closest to the centroid.
    pub representative: String,
    pub size: u64,
    pub weight: f64,
    /// size + log2(1 + weight): more messages count most, support adds.
    pub heat: f64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub districts: Vec<String>,
    pub recent: u64,
    pub baseline_per_window: f64,
    pub burst_z: f64,
    pub burst: bool,
    /// Mean cosine of members to the centroid.
    pub cohesion: f32,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalise(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Cluster `items` (any order; processed oldest first) and rank clusters by heat. `now` ends
/// the recent window.
pub fn cluster(items: &[Item], cfg: &HotspotConfig, now: DateTime<Utc>) -> Vec<Cluster> {
    // IDF over the batch for the n-gram part, then unit vectors whatever the caller passed.
    let k = cfg.idf_prefix;
    let mut idf = vec![1f32; k];
    if k > 0 {
        let mut df = vec![0u32; k];
        for it in items {
            for (d, x) in df.iter_mut().zip(&it.vector[..k.min(it.vector.len())]) {
                *d += u32::from(*x > 0.0);
            }
        }
        let n = items.len() as f32;
        for (w, d) in idf.iter_mut().zip(&df) {
            // Smoothed: words in every message still count once, rare ones several times.
            *w = ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0;
        }
    }
    let units: Vec<Vec<f32>> = items
        .iter()
        .map(|it| {
            let mut v = it.vector.clone();
            if k > 0 && v.len() >= k {
                let (ng, rest) = v.split_at_mut(k);
                let before = dot(ng, ng).sqrt();
                ng.iter_mut().zip(&idf).for_each(|(x, w)| *x *= w);
                let after = dot(ng, ng).sqrt();
                if after > 0.0 {
                    ng.iter_mut().for_each(|x| *x *= before / after);
                }
                let _ = rest;
            }
            normalise(&mut v);
            v
        })
        .collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].at, i));
    struct Acc {
        sum: Vec<f32>,
        centroid: Vec<f32>,
        /// The first member: new items are compared with it, so a cluster cannot drift.
        leader: Vec<f32>,
        members: Vec<usize>,
        district: Option<String>,
    }
    let mut acc: Vec<Acc> = Vec::new();
    for &i in &order {
        let it = &items[i];
        let vec = &units[i];
        let mut best: Option<(usize, f32)> = None;
        for (c, a) in acc.iter().enumerate() {
            let mut s = dot(vec, &a.leader);
            if it.district.is_some() && it.district == a.district {
                s += cfg.region_bonus;
            }
            if s >= cfg.similarity && best.is_none_or(|(_, b)| s > b) {
                best = Some((c, s));
            }
        }
        match best {
            Some((c, _)) => {
                let a = &mut acc[c];
                a.sum.iter_mut().zip(vec).for_each(|(s, x)| *s += x);
                a.centroid = a.sum.clone();
                normalise(&mut a.centroid);
                a.members.push(i);
            }
            None => acc.push(Acc { sum: vec.clone(), centroid: vec.clone(), leader: vec.clone(), members: vec![i], district: it.district.clone() }),
        }
    }
    let recent_from = now - Duration::days(cfg.window_days);
    let base_from = recent_from - Duration::days(cfg.baseline_days);
    let windows = (cfg.baseline_days as f64 / cfg.window_days.max(1) as f64).max(1.0);
    let mut out: Vec<Cluster> = acc
        .into_iter()
        .map(|a| {
            let sims: Vec<f32> = a.members.iter().map(|&i| dot(&units[i], &a.centroid)).collect();
            let rep = a.members[sims.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).map(|(k, _)| k).unwrap_or(0)];
            let weight: f64 = a.members.iter().map(|&i| items[i].weight.max(0.0)).sum();
            let size = a.members.len() as u64;
            let recent = a.members.iter().filter(|&&i| items[i].at > recent_from && items[i].at <= now).count() as u64;
            let base = a.members.iter().filter(|&&i| items[i].at > base_from && items[i].at <= recent_from).count() as f64 / windows;
            let z = (recent as f64 - base) / (base + 1.0).sqrt();
            let mut districts: Vec<String> = a.members.iter().filter_map(|&i| items[i].district.clone()).collect();
            districts.sort();
            districts.dedup();
            Cluster {
                members: a.members.iter().map(|&i| items[i].id.clone()).collect(),
                representative: items[rep].id.clone(),
                size,
                weight,
                heat: size as f64 + (1.0 + weight).log2(),
                first: a.members.iter().map(|&i| items[i].at).min().unwrap_or(now),
                last: a.members.iter().map(|&i| items[i].at).max().unwrap_or(now),
                districts,
                recent,
                baseline_per_window: base,
                burst_z: z,
                burst: recent >= cfg.burst_min && z >= cfg.burst_z,
                cohesion: sims.iter().sum::<f32>() / sims.len().max(1) as f32,
            }
        })
        .collect();
    out.sort_by(|a, b| b.heat.total_cmp(&a.heat).then_with(|| a.first.cmp(&b.first)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, days_ago: i64, v: [f32; 3], now: DateTime<Utc>) -> Item {
        let mut v = v.to_vec();
        normalise(&mut v);
        Item { id: id.into(), at: now - Duration::days(days_ago), district: None, weight: 1.0, vector: v }
    }

    #[test]
    fn similar_items_cluster_and_a_recent_surge_is_a_burst() {
        let now = Utc::now();
        let mut items = Vec::new();
        // Topic A: steady, one a fortnight over the baseline; topic B: six in the last week.
        for k in 0..4 {
            items.push(item(&format!("a{k}"), 10 + 14 * k, [1.0, 0.05 * k as f32, 0.0], now));
        }
        for k in 0..6 {
            items.push(item(&format!("b{k}"), k % 5, [0.0, 1.0, 0.02 * k as f32], now));
        }
        items.push(item("lonely", 3, [0.0, 0.0, 1.0], now));
        let c = cluster(&items, &HotspotConfig::default(), now);
        assert_eq!(c.len(), 3, "{c:#?}");
        assert_eq!(c[0].size, 6);
        assert!(c[0].members.iter().all(|m| m.starts_with('b')));
        assert!(c[0].burst, "six in a week against no baseline: {:?}", c[0].burst_z);
        let a = c.iter().find(|x| x.members.contains(&"a0".to_string())).unwrap();
        assert_eq!(a.size, 4);
        assert!(!a.burst);
        assert!(c.iter().any(|x| x.members == vec!["lonely".to_string()]));
    }
}
