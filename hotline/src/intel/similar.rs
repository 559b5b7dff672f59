//! Similar past tickets for the co-pilot and the dispatcher, from an in-memory index.
//!
//! Before, every co-pilot update and every dispatch suggestion listed the 300 newest tickets
//! from the store and turned each into an n-gram vector: a store scan and 300 vectorisations per
//! keystroke batch, and nothing older than the 300th ticket was ever found. The index holds the
//! handled tickets (replied, called back, closed: those with a final department) as sparse
//! n-gram vectors, rebuilt from the store at most every 30 s ([`SimilarIndex::REFRESH`]; a ticket's
//! vector is computed once and kept while its department stays the same), and answers a query
//! with one pass over the sparse vectors. A ticket handled a moment ago appears at the next
//! refresh.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::intel::dispatch::SimilarCase;
use crate::intel::features::ngram_vector;
use crate::tickets::model::{Status, Ticket};
use crate::tickets::store::{PageRequest, StoreError, TicketFilter, TicketStore};

/// Hash buckets, longest n-gram and characters read: as the similarity always was computed.
const BUCKETS: usize = 4096;
const NGRAM_MAX: usize = 2;
const MAX_CHARS: usize = 400;
/// Cosine similarity below which a ticket is not "similar".
const MIN_SIMILARITY: f32 = 0.3;
/// Returned per query.
const TOP_K: usize = 5;

/// Non-zero entries of an L2-normalised n-gram vector, by bucket.
type Sparse = Vec<(u16, f32)>;

fn sparse(text: &str) -> Sparse {
    ngram_vector(text, BUCKETS, NGRAM_MAX, MAX_CHARS).into_iter().enumerate().filter(|(_, x)| *x != 0.0).map(|(i, x)| (i as u16, x)).collect()
}

/// Dot product of two sparse vectors sorted by bucket.
fn dot(a: &Sparse, b: &Sparse) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

struct Entry {
    ticket: Arc<Ticket>,
    dept: String,
    vector: Sparse,
}

#[derive(Default)]
struct State {
    entries: HashMap<i64, Entry>,
    built: Option<Instant>,
}

/// The handled tickets as sparse n-gram vectors (see the module docs).
pub struct SimilarIndex {
    state: tokio::sync::Mutex<State>,
    /// At most this many handled tickets, newest first.
    capacity: usize,
    /// How stale the index may get before a query rebuilds it from the store.
    refresh: Duration,
}

impl Default for SimilarIndex {
    fn default() -> Self {
        SimilarIndex::new(SimilarIndex::CAPACITY, SimilarIndex::REFRESH)
    }
}

impl SimilarIndex {
    pub const REFRESH: Duration = Duration::from_secs(30);
    pub const CAPACITY: usize = 5000;

    pub fn new(capacity: usize, refresh: Duration) -> SimilarIndex {
        SimilarIndex { state: tokio::sync::Mutex::new(State::default()), capacity, refresh }
    }

    /// How many tickets are indexed.
    pub async fn len(&self) -> usize {
        self.state.lock().await.entries.len()
    }

    /// Handled tickets most similar to `text` (at most 5, similarity ≥ 0.3, best first),
    /// rebuilding the index from `store` first when it is older than its refresh period.
    /// Queries wait while a rebuild runs; a query's pass over the sparse vectors takes about a
    /// millisecond for 5000 tickets.
    pub async fn query(&self, store: &dyn TicketStore, text: &str, skip_id: Option<i64>) -> Result<Vec<(SimilarCase, Ticket)>, StoreError> {
        let mut state = self.state.lock().await;
        if state.built.is_none_or(|t| t.elapsed() >= self.refresh) {
            self.rebuild(&mut state, store).await?;
        }
        let q = sparse(text);
        let candidates: Vec<(i64, f32)> = state
            .entries
            .iter()
            .filter(|(id, _)| Some(**id) != skip_id)
            .map(|(id, e)| (*id, dot(&q, &e.vector)))
            .filter(|(_, s)| *s >= MIN_SIMILARITY)
            .collect();
        let mut found: Vec<(SimilarCase, Ticket)> = candidates
            .into_iter()
            .filter_map(|(id, s)| state.entries.get(&id).map(|e| (SimilarCase { ticket_id: id, dept: e.dept.clone(), similarity: s }, (*e.ticket).clone())))
            .collect();
        found.sort_by(|a, b| b.0.similarity.total_cmp(&a.0.similarity).then_with(|| b.0.ticket_id.cmp(&a.0.ticket_id)));
        found.truncate(TOP_K);
        Ok(found)
    }

    async fn rebuild(&self, state: &mut State, store: &dyn TicketStore) -> Result<(), StoreError> {
        // The newest `capacity` of each handled status (pages are newest first), then the newest
        // `capacity` of those together.
        let mut handled: Vec<Ticket> = Vec::new();
        for status in [Status::Replied, Status::CallbackDone, Status::Closed] {
            let filter = TicketFilter { status: Some(status), ..Default::default() };
            let (mut cursor, mut read) = (None, 0usize);
            while read < self.capacity {
                let page = store.list(&filter, PageRequest { limit: 500, cursor }, Utc::now()).await?;
                read += page.data.len();
                handled.extend(page.data);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        handled.sort_by(|a, b| b.id.cmp(&a.id));
        handled.truncate(self.capacity);
        let mut old = std::mem::take(&mut state.entries);
        for t in handled {
            let Some(dept) = t.body.lead_dept.clone() else { continue };
            // Keep the vector of a ticket already indexed with the same department and text: only
            // tickets handled since the last rebuild are vectorised (all 5000 take about 0.1 s).
            let vector = match old.remove(&t.id) {
                Some(e) if e.dept == dept && e.ticket.body.text == t.body.text && e.ticket.body.summary == t.body.summary => e.vector,
                _ => sparse(&Ticket::search_text(&t.body)),
            };
            state.entries.insert(t.id, Entry { ticket: Arc::new(t), dept, vector });
        }
        state.built = Some(Instant::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_dot_matches_the_dense_cosine() {
        let (a, b) = ("小区电梯坏了一个礼拜没人修", "电梯坏了好几天了物业不修");
        let dense: f32 = ngram_vector(a, BUCKETS, NGRAM_MAX, MAX_CHARS).iter().zip(ngram_vector(b, BUCKETS, NGRAM_MAX, MAX_CHARS)).map(|(x, y)| x * y).sum();
        assert!((dot(&sparse(a), &sparse(b)) - dense).abs() < 1e-5);
        assert!((dot(&sparse(a), &sparse(a)) - 1.0).abs() < 1e-4);
        assert_eq!(dot(&sparse(a), &Vec::new()), 0.0);
    }
}
