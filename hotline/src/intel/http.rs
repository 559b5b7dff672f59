//! HTTP API of the hotline intelligence.
//!
//! | route | what |
//! |---|---|
//! | `POST /api/classify` | `{text}` → request type and category with calibrated confidence |
//! | `POST /api/dispatch/suggest` | `{text, exclude?}` → lead department, co-handlers, bucket, reasons |
//! | `POST /api/tickets/{id}/auto-dispatch` | run the dispatcher on a ticket; dispatches it unless the bucket is `human` |
//! | `POST /api/callback/assess` | `{turns: [{speaker: agent|citizen, text}]}` → solved, satisfaction, script compliance, reopen |
//! | `GET /api/supervisor/metrics` | volume, dispatch coverage/accuracy, 退单 rate, SLA, satisfaction (`created_from`, `created_to`, `district`, `lead_dept`) |
//! | `GET /api/hotspots` | clusters of recent tickets with burst flags (`days`, default 30) |
//! | `POST /api/copilot` | `{transcript, channel?}` → knowledge hits, similar tickets, pre-filled form with provenance, classification, dispatch suggestion, timings |
//!
//! Metrics and auto-dispatch need the agent key when one is configured.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::intel::artifact::{Artifact, Ranked};
use crate::intel::callback::{Assessment, CallbackChecker, Turn};
use crate::intel::departments::Catalogue;
use crate::intel::dispatch::{Bucket, DispatchConfig, Dispatcher, Rule, SimilarCase, Suggestion};
use crate::intel::features::{ngram_vector, Featurizer};
use crate::intel::form::FormFiller;
use crate::tickets::model::Channel;
use crate::intel::hotspots::{self, HotspotConfig};
use crate::intel::supervisor;
use crate::intel::IntelError;
use crate::tickets::http::{is_agent, parse_id, HttpError};
use crate::tickets::machine::TransitionRequest;
use crate::tickets::model::{DispatchRecord, Status, Ticket};
use crate::tickets::store::{PageRequest, StoreError, TicketFilter};
use crate::tickets::TicketService;

/// The trained models; loaded after the embedding model (see [`IntelService::set_models`]).
#[derive(Default, Clone)]
pub struct IntelModels {
    /// Request type (咨询 / 投诉求助 / 建言 …).
    pub type_model: Option<Arc<Artifact>>,
    /// First-level category.
    pub category_model: Option<Arc<Artifact>>,
    pub dispatch_model: Option<Arc<Artifact>>,
    pub callback_model: Option<Arc<Artifact>>,
    /// Turns tickets into vectors for hot spots (n-grams when `None`).
    pub hotspot_featurizer: Option<Featurizer>,
}

/// Everything the intelligence routes use.
pub struct IntelService {
    pub tickets: Arc<TicketService>,
    pub catalogue: Arc<Catalogue>,
    pub rules: Vec<Rule>,
    pub dispatch: DispatchConfig,
    pub callback: CallbackChecker,
    pub hotspots: HotspotConfig,
    models: std::sync::RwLock<IntelModels>,
    /// Knowledge-base search for the co-pilot (query, limit) → hits as JSON; set by the server.
    pub knowledge: std::sync::OnceLock<KnowledgeSearch>,
    /// The citizen chat's reading of a message, for the form's request type; set by the server.
    pub message_kind: std::sync::OnceLock<MessageKindReader>,
    pub form: FormFiller,
    pub metrics: IntelMetrics,
    /// The chat model, asked for a second opinion when a classifier is unsure.
    pub generator: std::sync::OnceLock<Arc<dyn zhengwu_core::Generator>>,
    /// Ask the chat model when the top class's confidence is below this
    /// (`ZHENGWU_SECOND_OPINION_BELOW`, default 0 = never).
    pub second_opinion_below: f32,
    /// The last hot-spot computation per range of days (see [`HOTSPOT_REUSE`]).
    hot_reuse: std::sync::Mutex<std::collections::HashMap<i64, (std::time::Instant, Arc<HotResult>)>>,
    /// Held while hot spots are computed: one computation at a time.
    hot_computing: tokio::sync::Mutex<()>,
    /// Handled tickets for "similar past tickets" (co-pilot, dispatch).
    pub similar: crate::intel::similar::SimilarIndex,
}

/// Prometheus collectors of the hotline intelligence (register them with the server's registry).
#[derive(Clone)]
pub struct IntelMetrics {
    /// Auto-dispatch decisions by bucket and deciding layer.
    pub dispatch_decisions: prometheus::IntCounterVec,
    /// Callback assessments by whether they call for a reopen.
    pub callback_assessments: prometheus::IntCounterVec,
    /// Supervisor rates over the last 30 days (refreshed every minute): `auto_dispatch_coverage`,
    /// `auto_dispatch_accuracy`, `redispatch_rate`, `sla_on_time`, `callback_satisfaction`.
    pub rates: prometheus::GaugeVec,
    /// Tickets by status over the last 30 days.
    pub tickets: prometheus::IntGaugeVec,
    pub overdue: prometheus::IntGauge,
}

impl IntelMetrics {
    pub fn new() -> IntelMetrics {
        use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};
        IntelMetrics {
            dispatch_decisions: IntCounterVec::new(Opts::new("dispatch_decisions_total", "Auto-dispatch decisions by bucket and deciding layer"), &["bucket", "decided_by"]).expect("metric"),
            callback_assessments: IntCounterVec::new(Opts::new("callback_assessments_total", "Callback assessments by reopen verdict"), &["reopen"]).expect("metric"),
            rates: GaugeVec::new(Opts::new("supervisor_rate", "Supervisor rates over the last 30 days"), &["rate"]).expect("metric"),
            tickets: IntGaugeVec::new(Opts::new("supervisor_tickets", "Tickets created in the last 30 days by status"), &["status"]).expect("metric"),
            overdue: IntGauge::new("supervisor_overdue_tickets", "Tickets created in the last 30 days and now overdue").expect("metric"),
        }
    }

    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.dispatch_decisions.clone()),
            Box::new(self.callback_assessments.clone()),
            Box::new(self.rates.clone()),
            Box::new(self.tickets.clone()),
            Box::new(self.overdue.clone()),
        ]
    }

    /// Set the gauges from a computation.
    pub fn observe(&self, m: &supervisor::SupervisorMetrics) {
        for (name, r) in [
            ("auto_dispatch_coverage", &m.auto_dispatch_coverage),
            ("auto_dispatch_accuracy", &m.auto_dispatch_accuracy),
            ("redispatch_rate", &m.redispatch_rate),
            ("sla_on_time", &m.sla_on_time),
            ("callback_satisfaction", &m.callback_satisfaction),
        ] {
            match r.rate {
                Some(v) => self.rates.with_label_values(&[name]).set(v),
                None => {
                    let _ = self.rates.remove_label_values(&[name]);
                }
            }
        }
        self.tickets.reset();
        for (k, v) in &m.by_status {
            self.tickets.with_label_values(&[k.as_str()]).set(*v as i64);
        }
        self.overdue.set(m.overdue.len() as i64);
    }
}

impl Default for IntelMetrics {
    fn default() -> Self {
        IntelMetrics::new()
    }
}

/// Refresh the supervisor gauges every `every` (last 30 days) while the service lives.
pub fn spawn_metrics_refresh(svc: &Arc<IntelService>, every: std::time::Duration) {
    let weak = Arc::downgrade(svc);
    tokio::spawn(async move {
        loop {
            let Some(s) = weak.upgrade() else { return };
            let now = Utc::now();
            let filter = TicketFilter { created_from: Some(now - Duration::days(30)), ..Default::default() };
            match supervisor::compute(s.tickets.store.as_ref(), &filter, now, 200_000).await {
                Ok((m, _)) => s.metrics.observe(&m),
                Err(e) => tracing::warn!(error = %e, "supervisor metrics refresh failed"),
            }
            drop(s);
            tokio::time::sleep(every).await;
        }
    });
}

/// Search the policy knowledge base: (query, limit) → JSON hits. Blocking.
pub type KnowledgeSearch = Arc<dyn Fn(&str, usize) -> Result<Value, String> + Send + Sync>;

/// What a message is (`question`, `service_request`, …), read as the citizen chat reads it; set
/// by the server.
pub type MessageKindReader = Arc<dyn Fn(&str) -> Option<&'static str> + Send + Sync>;

const MAX_TEXT: usize = 20_000;

fn intel_err(e: IntelError) -> HttpError {
    match e {
        IntelError::Data(m) => HttpError::invalid("input", m),
        other => {
            tracing::error!(error = %other, "intelligence error");
            HttpError::new(zhengwu_core::ErrorKind::Internal, "model_error", other.to_string())
        }
    }
}

fn check_text(param: &str, t: &str) -> Result<(), HttpError> {
    if t.trim().is_empty() {
        return Err(HttpError::invalid(param, "must not be empty"));
    }
    let n = t.chars().count();
    if n > MAX_TEXT {
        return Err(HttpError::invalid(param, format!("too long: {n} characters, at most {MAX_TEXT}")));
    }
    Ok(())
}

pub fn routes(svc: Arc<IntelService>) -> Router {
    Router::new()
        .route("/api/classify", post(classify))
        .route("/api/dispatch/suggest", post(suggest))
        .route("/api/tickets/{id}/auto-dispatch", post(auto_dispatch))
        .route("/api/callback/assess", post(assess))
        .route("/api/supervisor/metrics", get(metrics))
        .route("/api/supervisor/metrics.csv", get(metrics_csv))
        .route("/api/supervisor/chart.svg", get(chart_svg))
        .route("/api/hotspots", get(hot))
        .route("/api/copilot", post(copilot))
        .with_state(svc)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Serialize, Clone)]
struct ModelAnswer {
    model: Option<String>,
    top: Vec<Ranked>,
}

fn top3(model: &Option<Arc<Artifact>>, text: &str) -> Result<ModelAnswer, HttpError> {
    match model {
        None => Ok(ModelAnswer { model: None, top: Vec::new() }),
        Some(m) => {
            let mut r = m.classify(&[text]).map_err(intel_err)?.remove(0);
            r.truncate(3);
            Ok(ModelAnswer { model: Some(m.manifest.task.clone()), top: r })
        }
    }
}

impl IntelService {
    pub fn new(tickets: Arc<TicketService>, catalogue: Arc<Catalogue>, rules: Vec<Rule>, dispatch: DispatchConfig, callback: CallbackChecker) -> Result<IntelService, IntelError> {
        dispatch.validate().map_err(IntelError::Config)?;
        Ok(IntelService {
            tickets,
            catalogue,
            rules,
            dispatch,
            callback,
            hotspots: HotspotConfig::default(),
            models: Default::default(),
            knowledge: std::sync::OnceLock::new(),
            message_kind: std::sync::OnceLock::new(),
            form: FormFiller::new(),
            metrics: IntelMetrics::new(),
            generator: std::sync::OnceLock::new(),
            // Off unless configured: with the 0.5B model the second opinion gave no gain on the
            // unsure rows of any classifier (`zhengwu eval classify --second-opinion 40`).
            hot_reuse: Default::default(),
            hot_computing: Default::default(),
            similar: Default::default(),
            second_opinion_below: 0.0,
        })
    }

    /// Install trained models (checked against the catalogue).
    pub fn set_models(&self, m: IntelModels) -> Result<(), IntelError> {
        if let Some(d) = &m.dispatch_model {
            Dispatcher::new(self.catalogue.clone(), Vec::new(), Some(d.clone()), self.dispatch.clone())?;
        }
        if let Ok(mut w) = self.models.write() {
            *w = m;
        }
        Ok(())
    }

    pub fn models(&self) -> IntelModels {
        self.models.read().map(|m| m.clone()).unwrap_or_default()
    }

    /// The pre-filled ticket form for a caller's words: request type and category from the
    /// classifiers (their top 3 as the first value), the rest by [`crate::intel::form::FormFiller`].
    /// Blocking (the classifiers run here).
    pub fn fill_form(&self, text: &str, channel: Channel) -> Result<(Value, crate::intel::form::FormDraft), IntelError> {
        let m = self.models();
        let ty = match &m.type_model { Some(a) => Some((a.manifest.task.clone(), a.classify(&[text])?.remove(0))), None => None };
        let cat = match &m.category_model { Some(a) => Some((a.manifest.task.clone(), a.classify(&[text])?.remove(0))), None => None };
        let mut draft = self.form.fill(
            text,
            channel,
            ty.as_ref().map(|(n, r)| (n.as_str(), r.as_slice())),
            cat.as_ref().map(|(n, r)| (n.as_str(), r.as_slice())),
            self.tickets.taxonomy.as_ref(),
        );
        // The type model learned MSGABench's 政务问答 and calls many repair requests 咨询; when
        // the message reads as a request for a department to act, it is 求助 (as in the citizen
        // chat's drafts).
        if draft.ticket.request_type == crate::tickets::model::RequestType::Consult && self.message_kind.get().and_then(|k| k(text)) == Some("service_request") {
            draft.ticket.request_type = crate::tickets::model::RequestType::Help;
            draft.provenance.insert(
                "request_type".into(),
                crate::intel::form::Provenance { source: "rule", by: "message understanding (service request)".into(), evidence: None, confidence: None },
            );
        }
        // The hazard word list raises urgency when the ticket is created; show it in the form
        // already (a missing manhole cover was pre-filled as 一般).
        if let Some(h) = self.tickets.screener.as_ref().and_then(|s| s.hazard(text)) {
            let provenance = || crate::intel::form::Provenance { source: "rule", by: "sensitive_words.toml hazard".into(), evidence: Some(h.categories.join("、")), confidence: None };
            if h.urgency > draft.ticket.urgency {
                draft.ticket.urgency = h.urgency;
                draft.provenance.insert("urgency".into(), provenance());
            }
            // Reporting a danger is asking for help, whatever the type model's 咨询 says.
            if draft.ticket.request_type == crate::tickets::model::RequestType::Consult {
                draft.ticket.request_type = crate::tickets::model::RequestType::Help;
                draft.provenance.insert("request_type".into(), provenance());
            }
        }
        let top = |x: &Option<(String, Vec<Ranked>)>| match x {
            Some((n, r)) => json!({"model": n, "top": r.iter().take(3).collect::<Vec<_>>()}),
            None => json!({"model": null, "top": []}),
        };
        Ok((json!({"request_type": top(&ty), "category": top(&cat)}), draft))
    }

    /// The dispatcher with the current model.
    pub fn dispatcher(&self) -> Result<Dispatcher, IntelError> {
        Dispatcher::new(self.catalogue.clone(), self.rules.clone(), self.models().dispatch_model, self.dispatch.clone())
    }

    /// Classification of a text: request type and category (each `null` model when not loaded).
    /// When the top class is below [`IntelService::second_opinion_below`] and a chat model is
    /// loaded, it picks among the top 3 (`second_opinion`), and `label` is its pick.
    pub async fn classify_text(&self, text: &str) -> Result<Value, HttpError> {
        let m = self.models();
        let owned = text.to_string();
        let answers = self
            .tickets
            .cpu
            .run(move || -> Result<Vec<ModelAnswer>, HttpError> { Ok(vec![top3(&m.type_model, &owned)?, top3(&m.category_model, &owned)?]) })
            .await??;
        let mut out = serde_json::Map::new();
        for (key, ans) in ["request_type", "category"].into_iter().zip(answers) {
            let mut v = serde_json::to_value(&ans).unwrap_or(Value::Null);
            let top = ans.top.first().cloned();
            v["label"] = json!(top.as_ref().map(|t| t.label.clone()));
            if let (Some(t), Some(g)) = (&top, self.generator.get()) {
                if t.confidence < self.second_opinion_below {
                    let opinion = llm_pick(g.clone(), text, &ans.top).await;
                    match opinion {
                        Ok((pick, raw)) => {
                            if let Some(p) = pick {
                                v["label"] = json!(ans.top[p].label);
                            }
                            v["second_opinion"] = json!({"model": g.model_id(), "choice": pick.map(|p| ans.top[p].label.clone()), "raw": raw});
                        }
                        Err(e) => v["second_opinion"] = json!({"model": g.model_id(), "error": e}),
                    }
                }
            }
            out.insert(key.into(), v);
        }
        Ok(Value::Object(out))
    }

    /// Past tickets with a final department, most similar first (n-gram cosine ≥ 0.3, at most 5),
    /// with the tickets themselves.
    pub async fn similar_tickets(&self, text: &str, skip_id: Option<i64>) -> Result<Vec<(SimilarCase, Ticket)>, HttpError> {
        Ok(self.similar.query(self.tickets.store.as_ref(), text, skip_id).await?)
    }

    /// [`IntelService::similar_tickets`] without the tickets.
    pub async fn similar_cases(&self, text: &str, skip_id: Option<i64>) -> Result<Vec<SimilarCase>, HttpError> {
        Ok(self.similar_tickets(text, skip_id).await?.into_iter().map(|(c, _)| c).collect())
    }
}

async fn classify(State(svc): State<Arc<IntelService>>, body: Result<Json<TextBody>, JsonRejection>) -> Result<Json<Value>, HttpError> {
    let Json(b) = body?;
    check_text("text", &b.text)?;
    Ok(Json(svc.classify_text(&b.text).await?))
}

async fn suggest(State(svc): State<Arc<IntelService>>, body: Result<Json<TextBody>, JsonRejection>) -> Result<Json<Suggestion>, HttpError> {
    let Json(b) = body?;
    check_text("text", &b.text)?;
    let cases = svc.similar_cases(&b.text, None).await?;
    let dispatcher = svc.dispatcher().map_err(intel_err)?;
    Ok(Json(svc.tickets.cpu.run(move || dispatcher.suggest(&b.text, &b.exclude, &cases)).await?.map_err(intel_err)?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AutoDispatchBody {
    #[serde(default)]
    actor: Option<String>,
}

async fn auto_dispatch(
    State(svc): State<Arc<IntelService>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<AutoDispatchBody>>,
) -> Result<Json<Value>, HttpError> {
    let agent = is_agent(&svc.tickets, &headers)?;
    if svc.tickets.agent_key.is_some() && !agent {
        return Err(HttpError::new(zhengwu_core::ErrorKind::Unauthorized, "agent_key_required", "auto-dispatch needs the agent key"));
    }
    let id = parse_id(&id)?;
    // The authenticated user when the web guard runs in front; the body's name otherwise.
    let actor = crate::tickets::http::caller(&headers).0.or_else(|| body.and_then(|b| b.0.actor)).unwrap_or_else(|| "dispatcher".into());
    let t = svc.tickets.store.get(id).await?.ok_or(StoreError::NotFound(id))?;
    if !matches!(t.body.status, Status::Accepted | Status::Returned | Status::Reopened) {
        return Err(HttpError::new(
            zhengwu_core::ErrorKind::Conflict,
            "invalid_transition",
            format!("ticket {id} is {}; only accepted, returned or reopened tickets are dispatched", t.body.status.as_str()),
        ));
    }
    // Departments that returned it (退单) are not asked again.
    let mut exclude: Vec<String> = Vec::new();
    for h in t.history.iter().filter(|h| h.to == Status::Returned) {
        if let Some(d) = &h.dept {
            if !exclude.contains(d) {
                exclude.push(d.clone());
            }
        }
    }
    let text = format!("{}\n{}", t.body.summary, t.body.text);
    let cases = svc.similar_cases(&text, Some(id)).await?;
    let dispatcher = svc.dispatcher().map_err(intel_err)?;
    let s = svc.tickets.cpu.run(move || dispatcher.suggest(&text, &exclude, &cases)).await?.map_err(intel_err)?;
    svc.metrics.dispatch_decisions.with_label_values(&[s.bucket.as_str(), s.decided_by.as_str()]).inc();
    let ticket = match (&s.lead, s.bucket) {
        (Some(lead), Bucket::Auto | Bucket::Review) => {
            let req = TransitionRequest {
                to: Status::Dispatched,
                actor,
                reason: None,
                dept: Some(lead.dept.clone()),
                co_handlers: Some(s.co_handlers.iter().map(|c| c.dept.clone()).collect()),
                reply: None,
                satisfaction: None,
                dispatch: Some(DispatchRecord {
                    at: None,
                    dept: String::new(),
                    auto: true,
                    bucket: Some(s.bucket.as_str().into()),
                    suggested: Some(lead.dept.clone()),
                    confidence: Some(lead.confidence.clamp(0.0, 1.0)),
                    decided_by: Some(s.decided_by.clone()),
                }),
                expected_version: Some(t.version),
            };
            let t = svc.tickets.transition(id, &req).await?;
            tracing::info!(id, dept = %lead.dept, bucket = s.bucket.as_str(), confidence = lead.confidence, "auto-dispatched");
            Some(if agent { t } else { svc.tickets.masked(&t) })
        }
        _ => None,
    };
    Ok(Json(json!({ "dispatched": ticket.is_some(), "suggestion": s, "ticket": ticket })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AssessBody {
    turns: Vec<Turn>,
}

async fn assess(State(svc): State<Arc<IntelService>>, body: Result<Json<AssessBody>, JsonRejection>) -> Result<Json<Assessment>, HttpError> {
    let Json(b) = body?;
    if b.turns.is_empty() {
        return Err(HttpError::invalid("turns", "must not be empty"));
    }
    if b.turns.len() > 500 {
        return Err(HttpError::invalid("turns", "at most 500 turns"));
    }
    for t in &b.turns {
        check_text("turns.text", &t.text)?;
    }
    let model = svc.models().callback_model;
    let svc2 = svc.clone();
    let a = svc.tickets.cpu.run(move || svc2.callback.assess(&b.turns, model.as_deref())).await?.map_err(intel_err)?;
    svc.metrics.callback_assessments.with_label_values(&[if a.reopen { "true" } else { "false" }]).inc();
    Ok(Json(a))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MetricsParams {
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    district: Option<String>,
    lead_dept: Option<String>,
}

impl MetricsParams {
    fn filter(self) -> TicketFilter {
        TicketFilter { created_from: self.created_from, created_to: self.created_to, district: self.district, lead_dept: self.lead_dept, ..Default::default() }
    }
}

async fn metrics(
    State(svc): State<Arc<IntelService>>,
    headers: HeaderMap,
    q: Result<Query<MetricsParams>, QueryRejection>,
) -> Result<Json<Value>, HttpError> {
    let Query(p) = q?;
    let (m, truncated) = authorised_metrics(&svc, &headers, p.filter()).await?;
    Ok(Json(json!({ "metrics": m, "truncated": truncated })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HotParams {
    days: Option<i64>,
    limit: Option<usize>,
}

/// Hot spots read at most this many tickets of the range, the newest first; the answer says when
/// it sampled (`sampled`, `tickets_in_range` as a lower bound).
pub const HOTSPOT_MAX_TICKETS: usize = 5_000;
/// A computed answer is reused this long: featurizing and clustering a month of tickets takes
/// seconds of CPU, and a dashboard asks again on every visit.
const HOTSPOT_REUSE: std::time::Duration = std::time::Duration::from_secs(60);

/// One computation of hot spots over a range of days.
pub struct HotResult {
    computed_at: DateTime<Utc>,
    tickets: usize,
    sampled: bool,
    /// `{cluster, summary}` in rank order (at most 100).
    clusters: Vec<Value>,
}

async fn hot(State(svc): State<Arc<IntelService>>, q: Result<Query<HotParams>, QueryRejection>) -> Result<Json<Value>, HttpError> {
    let Query(p) = q?;
    let days = p.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(HttpError::invalid("days", "1..=366"));
    }
    let limit = p.limit.unwrap_or(20).min(100);
    let cached = move |svc: &IntelService| svc.hot_reuse.lock().ok().and_then(|m| m.get(&days).cloned());
    let r = match cached(&svc) {
        Some((at, r)) => {
            // A stale answer is served at once and refreshed in the background: under load a
            // computation takes minutes, and dashboards must not wait for it.
            if at.elapsed() >= HOTSPOT_REUSE {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let Ok(_one) = svc.hot_computing.try_lock() else { return };
                    if cached(&svc).is_some_and(|(at, _)| at.elapsed() < HOTSPOT_REUSE) {
                        return;
                    }
                    match compute_hot(&svc, days).await {
                        Ok(r) => {
                            store_hot(&svc, days, r);
                        }
                        Err(e) => tracing::warn!(error = ?e, "refreshing hot spots failed"),
                    }
                });
            }
            r
        }
        None => {
            // The first answer for this range: computed once, concurrent requests wait for it.
            let _one = svc.hot_computing.lock().await;
            match cached(&svc) {
                Some((_, r)) => r,
                None => {
                    let r = compute_hot(&svc, days).await?;
                    store_hot(&svc, days, r)
                }
            }
        }
    };
    Ok(Json(json!({
        "tickets": r.tickets,
        "sampled": r.sampled,
        "max_tickets": HOTSPOT_MAX_TICKETS,
        "computed_at": r.computed_at,
        "clusters": r.clusters.iter().take(limit).collect::<Vec<_>>(),
    })))
}

fn store_hot(svc: &IntelService, days: i64, r: HotResult) -> Arc<HotResult> {
    let r = Arc::new(r);
    if let Ok(mut m) = svc.hot_reuse.lock() {
        m.insert(days, (std::time::Instant::now(), r.clone()));
    }
    r
}

/// Read the range page by page (newest first, up to [`HOTSPOT_MAX_TICKETS`]), then featurize and
/// cluster in the CPU pool.
async fn compute_hot(svc: &Arc<IntelService>, days: i64) -> Result<HotResult, HttpError> {
    let now = Utc::now();
    let filter = TicketFilter { created_from: Some(now - Duration::days(days)), ..Default::default() };
    let mut tickets: Vec<Ticket> = Vec::new();
    let mut page = PageRequest { limit: 500, cursor: None };
    let mut sampled = false;
    loop {
        let p = svc.tickets.store.list(&filter, page, now).await?;
        tickets.extend(p.data);
        match p.next_cursor {
            Some(c) if tickets.len() < HOTSPOT_MAX_TICKETS => page.cursor = Some(c),
            Some(_) => {
                sampled = true;
                break;
            }
            None => break,
        }
    }
    if tickets.len() > HOTSPOT_MAX_TICKETS {
        tickets.truncate(HOTSPOT_MAX_TICKETS);
        sampled = true;
    }
    let svc2 = svc.clone();
    svc.tickets
        .cpu
        .run(move || -> Result<HotResult, HttpError> {
            let texts: Vec<String> = tickets.iter().map(|t| format!("{}\n{}", t.body.summary, t.body.text)).collect();
            let (vectors, mut cfg) = match &svc2.models().hotspot_featurizer {
                Some(f) => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let x = f.features(&refs).map_err(intel_err)?;
                    (x.chunks(f.dim().max(1)).map(<[f32]>::to_vec).collect::<Vec<_>>(), HotspotConfig { idf_prefix: f.config.ngram_buckets, ..svc2.hotspots.clone() })
                }
                None => (texts.iter().map(|t| ngram_vector(t, 4096, 2, 400)).collect(), HotspotConfig { similarity: 0.45, idf_prefix: 4096, ..svc2.hotspots.clone() }),
            };
            drop(texts);
            cfg.window_days = cfg.window_days.min(days);
            let items: Vec<hotspots::Item> = tickets
                .iter()
                .zip(vectors)
                .map(|(t, v)| hotspots::Item { id: t.id.to_string(), at: t.body.created_at, district: t.body.address.district.clone(), weight: 0.0, vector: v })
                .collect();
            let mut clusters = hotspots::cluster(&items, &cfg, now);
            drop(items);
            clusters.truncate(100);
            let clusters = clusters
                .iter()
                .map(|c| {
                    let rep = tickets.iter().find(|t| t.id.to_string() == c.representative);
                    json!({ "cluster": c, "summary": rep.map(|t| svc2.tickets.mask_text(&t.body.summary)) })
                })
                .collect();
            Ok(HotResult { computed_at: now, tickets: tickets.len(), sampled, clusters })
        })
        .await?
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopilotBody {
    /// The call so far (citizen's words; the whole transcript is fine).
    transcript: String,
    #[serde(default)]
    channel: Option<Channel>,
    /// Knowledge hits to return (default 3, at most 10).
    #[serde(default)]
    knowledge_limit: Option<usize>,
    /// Also let the chat model fill the form (slower: seconds on CPU).
    #[serde(default)]
    llm_form: bool,
}

/// Agent co-pilot: everything the agent needs for the transcript so far, with timings.
async fn copilot(State(svc): State<Arc<IntelService>>, headers: HeaderMap, body: Result<Json<CopilotBody>, JsonRejection>) -> Result<Json<Value>, HttpError> {
    // A citizen (role set by the web guard) gets the knowledge and the form, not other people's
    // tickets or internal dispatch reasoning.
    let citizen = headers.get("x-zhengwu-role").is_some_and(|v| v == "citizen");
    let Json(b) = body?;
    check_text("transcript", &b.transcript)?;
    let t0 = std::time::Instant::now();
    let text = b.transcript.clone();
    // The knowledge query: the latest part of the call says what is being asked now.
    let tail: String = {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(200)..].iter().collect()
    };
    let limit = b.knowledge_limit.unwrap_or(3).clamp(1, 10);
    let knowledge = match svc.knowledge.get().cloned() {
        Some(search) => match svc.tickets.cpu.run(move || search(&tail, limit)).await {
            Ok(Ok(v)) => json!({"hits": v}),
            Ok(Err(e)) => json!({"hits": [], "error": e}),
            Err(e) => json!({"hits": [], "error": e.to_string()}),
        },
        None => json!({"hits": [], "error": "knowledge base not configured"}),
    };
    let t_knowledge = t0.elapsed().as_secs_f64() * 1000.0;
    let svc2 = svc.clone();
    let text2 = text.clone();
    let channel = b.channel.unwrap_or(Channel::Phone);
    let (classification, mut draft) = svc.tickets.cpu.run(move || svc2.fill_form(&text2, channel).map_err(intel_err)).await??;
    let mut llm = Value::Null;
    if b.llm_form {
        llm = match svc.generator.get().cloned() {
            Some(g) => match crate::intel::form_llm::ask(g, &text).await {
                Ok(out) => {
                    let filled = crate::intel::form_llm::merge(&mut draft, &text, &out);
                    json!({"model": out.model, "attempts": out.attempts, "valid_json": out.form.is_some(), "filled": filled, "error": out.error})
                }
                Err(e) => json!({"error": e.to_string()}),
            },
            None => json!({"error": "no chat model loaded"}),
        };
    }
    let mut form = serde_json::to_value(&draft).unwrap_or(Value::Null);
    if !llm.is_null() {
        form["llm"] = llm;
    }
    let t_classify = t0.elapsed().as_secs_f64() * 1000.0 - t_knowledge;
    if citizen {
        let total = t0.elapsed().as_secs_f64() * 1000.0;
        return Ok(Json(json!({
            "knowledge": knowledge,
            "similar_tickets": [],
            "form": form,
            "classification": classification,
            "dispatch": null,
            "timings_ms": {"knowledge": t_knowledge, "classify_and_form": t_classify, "total": total},
        })));
    }
    let found = svc.similar_tickets(&text, None).await?;
    let similar: Vec<Value> = found
        .iter()
        .map(|(c, t)| json!({"id": t.id, "number": t.number, "summary": svc.tickets.mask_text(&t.body.summary), "lead_dept": t.body.lead_dept, "status": t.body.status, "similarity": c.similarity}))
        .collect();
    let cases: Vec<SimilarCase> = found.into_iter().map(|(c, _)| c).collect();
    let dispatcher = svc.dispatcher().map_err(intel_err)?;
    let text2 = text.clone();
    let dispatch = svc.tickets.cpu.run(move || dispatcher.suggest(&text2, &[], &cases)).await?.map_err(intel_err)?;
    let total = t0.elapsed().as_secs_f64() * 1000.0;
    Ok(Json(json!({
        "knowledge": knowledge,
        "similar_tickets": similar,
        "form": form,
        "classification": classification,
        "dispatch": dispatch,
        "timings_ms": {"knowledge": t_knowledge, "classify_and_form": t_classify, "similar_and_dispatch": total - t_knowledge - t_classify, "total": total},
    })))
}

/// Ask the chat model which of `options` fits `text` best: (index, raw answer). Personal data is
/// masked in the prompt; greedy, at most 4 tokens, 30 s deadline.
pub async fn llm_pick(g: Arc<dyn zhengwu_core::Generator>, text: &str, options: &[Ranked]) -> Result<(Option<usize>, String), String> {
    use zhengwu_core::{ChatMessage, ChatRequest, GenerationParams};
    if options.is_empty() {
        return Ok((None, String::new()));
    }
    let mut list = String::new();
    for (i, o) in options.iter().enumerate() {
        list.push_str(&format!("{}. {}\n", i + 1, o.label));
    }
    let masked = crate::redact::for_prompt(text);
    let msgs = vec![
        ChatMessage::new("system", "你是12345政务服务热线的工单分类员。根据市民的诉求，从候选类别中选出最合适的一项，只回答它的编号。"),
        ChatMessage::new("user", format!("诉求：{}\n候选类别：\n{list}请只回答编号。", crate::intel::features::head_chars(&masked, 300))),
    ];
    let params = GenerationParams { max_tokens: 4, temperature: 0.0, ..Default::default() };
    let request = ChatRequest::new(msgs, params).with_deadline(std::time::Instant::now() + std::time::Duration::from_secs(30));
    let raw = zhengwu_core::collect(g.chat(request).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?.text;
    let pick = raw.chars().find_map(|c| c.to_digit(10)).map(|d| d as usize).filter(|d| (1..=options.len()).contains(d)).map(|d| d - 1);
    Ok((pick, raw.trim().to_string()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ChartParams {
    dim: String,
    created_from: Option<DateTime<Utc>>,
    created_to: Option<DateTime<Utc>>,
    district: Option<String>,
    lead_dept: Option<String>,
    /// Cache buster from the page; ignored.
    #[serde(default)]
    t: Option<String>,
}

/// Supervisor metrics for `filter` (the agent key is required when one is configured); `true`
/// when more tickets matched than were read.
async fn authorised_metrics(svc: &IntelService, headers: &HeaderMap, filter: TicketFilter) -> Result<(supervisor::SupervisorMetrics, bool), HttpError> {
    let agent = is_agent(&svc.tickets, headers)?;
    if svc.tickets.agent_key.is_some() && !agent {
        return Err(HttpError::new(zhengwu_core::ErrorKind::Unauthorized, "agent_key_required", "supervisor metrics need the agent key"));
    }
    Ok(supervisor::compute(svc.tickets.store.as_ref(), &filter, Utc::now(), 200_000).await?)
}

/// `GET /api/supervisor/metrics.csv`: every count and rate as `section,key,value` rows.
async fn metrics_csv(
    State(svc): State<Arc<IntelService>>,
    headers: HeaderMap,
    q: Result<Query<MetricsParams>, QueryRejection>,
) -> Result<axum::response::Response, HttpError> {
    use axum::response::IntoResponse;
    let Query(p) = q?;
    let (m, _) = authorised_metrics(&svc, &headers, p.filter()).await?;
    let mut out = String::from("section,key,value\n");
    let cell = crate::tickets::http::csv_cell;
    out.push_str(&format!("total,tickets,{}\ntotal,dispatched,{}\n", m.tickets, m.dispatched));
    for (name, map) in [
        ("by_status", &m.by_status),
        ("by_channel", &m.by_channel),
        ("by_type", &m.by_type),
        ("by_category", &m.by_category),
        ("by_department", &m.by_department),
        ("by_district", &m.by_district),
        ("by_day", &m.by_day),
        ("satisfaction", &m.satisfaction_counts),
    ] {
        for (k, v) in map {
            out.push_str(&format!("{name},{},{v}\n", cell(k)));
        }
    }
    for (name, r) in [
        ("auto_dispatch_coverage", &m.auto_dispatch_coverage),
        ("auto_dispatch_accuracy", &m.auto_dispatch_accuracy),
        ("suggestion_accuracy", &m.suggestion_accuracy),
        ("redispatch_rate", &m.redispatch_rate),
        ("sla_on_time", &m.sla_on_time),
        ("callback_satisfaction", &m.callback_satisfaction),
        ("reopen_rate", &m.reopen_rate),
    ] {
        out.push_str(&format!("rate,{name},{}\n", r.rate.map(|x| format!("{x:.4}")).unwrap_or_default()));
    }
    for (week, w) in &m.dispatch_by_week {
        let rate = |r: &crate::intel::supervisor::Rate| r.rate.map(|x| format!("{x:.4}")).unwrap_or_default();
        out.push_str(&format!("dispatch_week_auto_accuracy,{week},{}\ndispatch_week_corrected,{week},{}\n", rate(&w.auto_accuracy), rate(&w.corrected)));
    }
    for o in &m.overdue {
        out.push_str(&format!("overdue,{},{}\n", cell(&o.number), cell(o.lead_dept.as_deref().unwrap_or(""))));
    }
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"supervisor-metrics.csv\""),
        ],
        out,
    )
        .into_response())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart as standalone SVG (server-rendered: no chart script in the page).
pub fn bar_chart_svg(title: &str, bars: &[(String, f64)]) -> String {
    let width = 640.0;
    let row = 24.0;
    let left = 200.0;
    let height = 44.0 + row * bars.len().max(1) as f64;
    let max = bars.iter().map(|b| b.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{t}\" font-family=\"sans-serif\" font-size=\"13\"><title>{t}</title><text x=\"8\" y=\"22\" font-weight=\"bold\">{t}</text>",
        t = xml_escape(title)
    );
    if bars.is_empty() {
        svg.push_str("<text x=\"8\" y=\"50\">暂无数据</text>");
    }
    for (i, (label, v)) in bars.iter().enumerate() {
        let y = 34.0 + row * i as f64;
        let w = (width - left - 70.0) * v / max;
        svg.push_str(&format!(
            "<text x=\"8\" y=\"{ty}\">{l}</text><rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#1d4ed8\"/><text x=\"{tx:.1}\" y=\"{ty}\">{v}</text>",
            ty = y + 13.0,
            tx = left + w + 4.0,
            l = xml_escape(&label.chars().take(14).collect::<String>()),
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// `GET /api/supervisor/chart.svg?dim=by_day|by_category|by_department|by_district|by_channel|by_type|by_status`.
async fn chart_svg(
    State(svc): State<Arc<IntelService>>,
    headers: HeaderMap,
    q: Result<Query<ChartParams>, QueryRejection>,
) -> Result<axum::response::Response, HttpError> {
    use axum::response::IntoResponse;
    let Query(p) = q?;
    let _ = &p.t;
    let filter = MetricsParams { created_from: p.created_from, created_to: p.created_to, district: p.district.clone(), lead_dept: p.lead_dept.clone() }.filter();
    let (m, _) = authorised_metrics(&svc, &headers, filter).await?;
    let (title, map) = match p.dim.as_str() {
        "by_day" => ("每日工单量", &m.by_day),
        "by_category" => ("按诉求分类", &m.by_category),
        "by_department" => ("按承办部门", &m.by_department),
        "by_district" => ("按区域", &m.by_district),
        "by_channel" => ("按渠道", &m.by_channel),
        "by_type" => ("按诉求类型", &m.by_type),
        "by_status" => ("按状态", &m.by_status),
        other => return Err(HttpError::invalid("dim", format!("unknown dimension {other:?}"))),
    };
    // Departments are stored by catalogue id: show their names.
    let name = |k: &String| -> String {
        match (p.dim.as_str(), svc.catalogue.get(k)) {
            ("by_department", Some(d)) => d.name.clone(),
            _ => k.clone(),
        }
    };
    let mut bars: Vec<(String, f64)> = map.iter().map(|(k, v)| (name(k), *v as f64)).collect();
    if p.dim != "by_day" {
        bars.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
    let keep = if p.dim == "by_day" { bars.len().saturating_sub(31) } else { 0 };
    let bars: Vec<(String, f64)> = bars.into_iter().skip(keep).take(20).collect();
    Ok(([(axum::http::header::CONTENT_TYPE, "image/svg+xml"), (axum::http::header::CACHE_CONTROL, "no-store")], bar_chart_svg(title, &bars)).into_response())
}
