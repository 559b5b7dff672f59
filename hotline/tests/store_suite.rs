//! One test suite for every `TicketStore` backend: each scenario is a function over
//! `&dyn TicketStore`, and `suite!` instantiates all of them for SQLite (a real file) and
//! PostgreSQL (127.0.0.1:5432, database `test`, a fresh schema per test, dropped afterwards even
//! when the test fails). PostgreSQL must be reachable: these tests fail, never skip, without it.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{Duration, Utc};
use zhengwu_hotline::tickets::machine::TransitionError;
use zhengwu_hotline::tickets::model::{Address, Channel, Contact, Deadlines, NewTicket, RequestType, Satisfaction, Status, Urgency};
use zhengwu_hotline::tickets::{
    CreateOptions, PageRequest, PgStore, SlaPolicy, SqliteStore, StoreError, TicketFilter, TicketStore, TransitionRequest,
};

// ---------------------------------------------------------------- harness

enum Kind {
    Sqlite { dir: PathBuf, url: String },
    Pg { url: String, schema: String },
}

struct Harness {
    store: Arc<dyn TicketStore>,
    kind: Kind,
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}_{}_{}_{n}_{nanos}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    // Enough to keep schema names apart between test processes.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    (t.as_micros() % 1_000_000) as u32
}

/// The PostgreSQL URL: `ZHENGWU_TEST_PG_URL`, else user `postgres`, else `root` on 127.0.0.1.
pub async fn pg_url() -> String {
    if let Ok(u) = std::env::var("ZHENGWU_TEST_PG_URL") {
        return u;
    }
    let mut errors = Vec::new();
    for user in ["postgres", "root"] {
        let url = format!("postgres://{user}@127.0.0.1:5432/test");
        match sqlx::PgPool::connect(&url).await {
            Ok(p) => {
                p.close().await;
                return url;
            }
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    panic!("PostgreSQL is required for the ticket store tests (127.0.0.1:5432, database test): {errors:?}");
}

impl Harness {
    async fn sqlite() -> Harness {
        let dir = std::env::temp_dir().join(unique("zhengwu_tickets"));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("tickets.db").display());
        let store = Arc::new(SqliteStore::open(&url).await.expect("open sqlite"));
        Harness { store, kind: Kind::Sqlite { dir, url } }
    }

    async fn pg() -> Harness {
        let url = pg_url().await;
        let schema = unique("zw_test");
        let store = Arc::new(PgStore::connect(&url, Some(&schema)).await.expect("connect postgres"));
        Harness { store, kind: Kind::Pg { url, schema } }
    }

    /// A second, independent connection to the same database (as after a restart).
    async fn reopen(&self) -> Arc<dyn TicketStore> {
        match &self.kind {
            Kind::Sqlite { url, .. } => Arc::new(SqliteStore::open(url).await.expect("reopen sqlite")),
            Kind::Pg { url, schema } => Arc::new(PgStore::connect(url, Some(schema)).await.expect("reconnect postgres")),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        match &self.kind {
            Kind::Sqlite { dir, .. } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Kind::Pg { url, schema } => {
                let (url, schema) = (url.clone(), schema.clone());
                // Drop runs inside the test's runtime: clean up on a thread with its own.
                let r = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(PgStore::drop_schema(&url, &schema))
                })
                .join();
                if !matches!(r, Ok(Ok(()))) && !std::thread::panicking() {
                    panic!("dropping test schema failed: {r:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------- helpers

fn ticket(summary: &str) -> NewTicket {
    NewTicket {
        channel: Channel::Phone,
        contact: Contact {
            name: Some("李女士".into()),
            phone: Some("13912345678".into()),
            id_number: None,
            email: None,
            anonymous: false,
        },
        address: Address { text: "幸福路12号".into(), district: Some("东城区".into()), street: Some("和平街道".into()) },
        request_type: RequestType::Complaint,
        category: vec!["城乡建设".into(), "物业管理".into(), "电梯故障停运".into()],
        summary: summary.into(),
        text: format!("市民反映：{summary}。"),
        transcript_ref: Some("call-0001".into()),
        urgency: Urgency::Normal,
        lead_dept: None,
        co_handlers: vec![],
        actor: Some("agent-1".into()),
    }
}

fn opts(key: Option<&str>) -> CreateOptions {
    let now = Utc::now();
    CreateOptions {
        idempotency_key: key.map(str::to_string),
        now,
        deadlines: SlaPolicy::default().on_create(RequestType::Complaint, Urgency::Normal, now),
        flags: vec![],
    }
}

fn to(status: Status) -> TransitionRequest {
    TransitionRequest {
        to: status,
        actor: "agent-2".into(),
        reason: None,
        dept: None,
        co_handlers: None,
        reply: None,
        satisfaction: None,
        dispatch: None,
        expected_version: None,
    }
}

async fn all(store: &dyn TicketStore, f: &TicketFilter) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let p = store.list(f, PageRequest { limit: 7, cursor }, Utc::now()).await.unwrap();
        ids.extend(p.data.iter().map(|t| t.id));
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => return ids,
        }
    }
}

// ---------------------------------------------------------------- scenarios

async fn create_and_get(store: &dyn TicketStore) {
    let new = ticket("电梯停运三天无人维修");
    let (t, created) = store.create(&new, &opts(None)).await.unwrap();
    assert!(created);
    assert!(t.id > 0 && t.version == 1);
    assert_eq!(t.body.status, Status::Received);
    assert_eq!(t.number.len(), 14, "{}", t.number);
    assert!(t.number.ends_with(&format!("{:06}", t.id)));
    let got = store.get(t.id).await.unwrap().expect("stored");
    assert_eq!(got.body.summary, new.summary);
    assert_eq!(got.body.contact, new.contact);
    assert_eq!(got.body.address, new.address);
    assert_eq!(got.body.category, new.category);
    assert_eq!(got.body.transcript_ref.as_deref(), Some("call-0001"));
    assert_eq!(got.body.created_at, t.body.created_at);
    assert_eq!(got.body.deadlines, t.body.deadlines);
    assert_eq!(got.history.len(), 1);
    assert_eq!((got.history[0].seq, got.history[0].from, got.history[0].to), (1, None, Status::Received));
    assert_eq!(got.history[0].actor, "agent-1");
    assert!(store.get(t.id + 1000).await.unwrap().is_none());
}

async fn idempotent_create(store: &dyn TicketStore) {
    let new = ticket("路灯不亮");
    let (a, ca) = store.create(&new, &opts(Some("key-1"))).await.unwrap();
    let (b, cb) = store.create(&new, &opts(Some("key-1"))).await.unwrap();
    assert!(ca && !cb);
    assert_eq!(a.id, b.id);
    assert_eq!(b.history.len(), 1, "a replay adds no history");
    let other = ticket("另一件事");
    let e = store.create(&other, &opts(Some("key-1"))).await.unwrap_err();
    assert!(matches!(e, StoreError::IdempotencyMismatch), "{e}");
    // Without a key, the same request twice is two tickets.
    let (c, _) = store.create(&new, &opts(None)).await.unwrap();
    let (d, _) = store.create(&new, &opts(None)).await.unwrap();
    assert_ne!(c.id, d.id);
    assert_eq!(all(store, &TicketFilter::default()).await.len(), 3);
}

async fn concurrent_same_key(store: Arc<dyn TicketStore>) {
    let new = ticket("同一来电重复提交");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (s, n) = (store.clone(), new.clone());
        tasks.push(tokio::spawn(async move { s.create(&n, &opts(Some("dup-key"))).await.unwrap() }));
    }
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (t, c) = t.await.unwrap();
        created += c as usize;
        ids.insert(t.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(all(&*store, &TicketFilter::default()).await.len(), 1);
}

async fn lifecycle_and_history(store: &dyn TicketStore) {
    let sla = SlaPolicy::default();
    let (t, _) = store.create(&ticket("餐馆油烟扰民"), &opts(None)).await.unwrap();
    let steps = vec![
        to(Status::Accepted),
        TransitionRequest { dept: Some("城市管理局".into()), co_handlers: Some(vec!["生态环境局".into()]), ..to(Status::Dispatched) },
        TransitionRequest { reason: Some("不属于本单位职责".into()), ..to(Status::Returned) },
        TransitionRequest { dept: Some("生态环境局".into()), ..to(Status::Dispatched) },
        to(Status::Handling),
        TransitionRequest { reply: Some("已责令安装油烟净化器".into()), ..to(Status::Replied) },
        TransitionRequest { satisfaction: Some(Satisfaction::Satisfied), ..to(Status::CallbackDone) },
        to(Status::Closed),
        TransitionRequest { reason: Some("油烟问题复发".into()), ..to(Status::Reopened) },
    ];
    let mut version = 1;
    for s in &steps {
        let nt = store.transition(t.id, s, &sla, Utc::now()).await.unwrap_or_else(|e| panic!("{:?}: {e}", s.to));
        version += 1;
        assert_eq!(nt.version, version);
        assert_eq!(nt.body.status, s.to);
    }
    let got = store.get(t.id).await.unwrap().unwrap();
    assert_eq!(got.history.len(), steps.len() + 1);
    for (i, h) in got.history.iter().enumerate() {
        assert_eq!(h.seq, i as i64 + 1);
        if i > 0 {
            assert_eq!(h.from, Some(got.history[i - 1].to), "history is a chain");
            assert_eq!(h.to, steps[i - 1].to);
            assert_eq!(h.actor, "agent-2");
        }
    }
    assert_eq!(got.history[3].reason.as_deref(), Some("不属于本单位职责"));
    assert_eq!(got.history[3].dept.as_deref(), Some("城市管理局"), "the returning department is recorded");
    assert_eq!(got.body.lead_dept.as_deref(), Some("生态环境局"));
    assert_eq!((got.body.returns, got.body.reopens), (1, 1));
    assert_eq!(got.body.status, Status::Reopened);
    assert!(got.body.milestones.replied_at.is_none(), "reopening clears the reply");

    // Invalid: reopened -> closed. Nothing changes.
    let e = store.transition(t.id, &to(Status::Closed), &sla, Utc::now()).await.unwrap_err();
    match e {
        StoreError::Transition(TransitionError::NotAllowed { from, allowed, .. }) => {
            assert_eq!(from, "reopened");
            assert_eq!(allowed, vec![Status::Dispatched, Status::Replied]);
        }
        other => panic!("{other}"),
    }
    // Missing field: nothing changes either.
    let e = store.transition(t.id, &to(Status::Dispatched), &sla, Utc::now()).await.unwrap_err();
    assert!(matches!(e, StoreError::Transition(TransitionError::Field(_))), "{e}");
    let after = store.get(t.id).await.unwrap().unwrap();
    assert_eq!((after.version, after.history.len()), (got.version, got.history.len()));

    // Optimistic concurrency and unknown ids.
    let e = store
        .transition(t.id, &TransitionRequest { expected_version: Some(3), dept: Some("x".into()), ..to(Status::Dispatched) }, &sla, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict { expected: 3, .. }), "{e}");
    let e = store.transition(999_999, &to(Status::Accepted), &sla, Utc::now()).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(999_999)), "{e}");
}

/// Many agents press "accept" at once: exactly one wins, the history has one acceptance.
async fn concurrent_transitions(store: Arc<dyn TicketStore>) {
    let (t, _) = store.create(&ticket("井盖缺失"), &opts(None)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let req = TransitionRequest { actor: format!("agent-{i}"), ..to(Status::Accepted) };
            s.transition(t.id, &req, &SlaPolicy::default(), Utc::now()).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Transition(TransitionError::NotAllowed { .. })) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    let got = store.get(t.id).await.unwrap().unwrap();
    assert_eq!(got.history.len(), 2);
    assert_eq!(got.version, 2);
    // Different tickets moving concurrently all succeed.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(store.create(&ticket(&format!("并发工单{i}")), &opts(None)).await.unwrap().0.id);
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|&id| {
            let s = store.clone();
            tokio::spawn(async move { s.transition(id, &to(Status::Accepted), &SlaPolicy::default(), Utc::now()).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().body.status, Status::Accepted);
    }
}

async fn filters_and_pagination(store: &dyn TicketStore) {
    let sla = SlaPolicy::default();
    let mut expected_consult = Vec::new();
    for i in 0..23 {
        let mut n = ticket(&format!("第{i}件"));
        n.request_type = if i % 3 == 0 { RequestType::Consult } else { RequestType::Complaint };
        n.address.district = Some(if i % 2 == 0 { "东城区" } else { "西城区" }.into());
        n.channel = if i % 5 == 0 { Channel::MiniProgram } else { Channel::Phone };
        let (t, _) = store.create(&n, &opts(None)).await.unwrap();
        if i % 3 == 0 {
            expected_consult.push(t.id);
        }
        if i < 4 {
            store.transition(t.id, &to(Status::Accepted), &sla, Utc::now()).await.unwrap();
        }
    }
    let ids = all(store, &TicketFilter::default()).await;
    assert_eq!(ids.len(), 23);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first, no repeats across pages");
    let mut got = all(store, &TicketFilter { request_type: Some(RequestType::Consult), ..Default::default() }).await;
    got.sort();
    assert_eq!(got, expected_consult);
    assert_eq!(all(store, &TicketFilter { status: Some(Status::Accepted), ..Default::default() }).await.len(), 4);
    assert_eq!(all(store, &TicketFilter { district: Some("西城区".into()), ..Default::default() }).await.len(), 11);
    assert_eq!(all(store, &TicketFilter { channel: Some(Channel::MiniProgram), ..Default::default() }).await.len(), 5);
    let both = TicketFilter { district: Some("东城区".into()), request_type: Some(RequestType::Consult), ..Default::default() };
    assert_eq!(all(store, &both).await.len(), 4); // i in {0, 6, 12, 18}
    let future = TicketFilter { created_from: Some(Utc::now() + Duration::hours(1)), ..Default::default() };
    assert!(all(store, &future).await.is_empty());
    let past = TicketFilter { created_to: Some(Utc::now() + Duration::hours(1)), ..Default::default() };
    assert_eq!(all(store, &past).await.len(), 23);
    let p = store.list(&TicketFilter::default(), PageRequest { limit: 23, cursor: None }, Utc::now()).await.unwrap();
    assert_eq!((p.data.len(), p.next_cursor), (23, None), "exact last page has no cursor");
}

async fn chinese_search(store: &dyn TicketStore) {
    let texts = [
        ("小区电梯经常故障停运", "老人上下楼困难"),
        ("夜间施工噪音扰民", "工地凌晨两点还在打桩"),
        ("公交车司机态度恶劣", "ABC路公交100%不准点"),
    ];
    let categories = [
        ["城乡建设", "物业管理", "电梯故障停运"],
        ["生态环境", "污染防治", "噪声污染"],
        ["交通运输", "公共交通", "公交服务态度"],
    ];
    let mut ids = Vec::new();
    for ((summary, text), cat) in texts.into_iter().zip(categories) {
        let mut n = ticket(summary);
        n.text = text.into();
        n.category = cat.iter().map(|s| s.to_string()).collect();
        ids.push(store.create(&n, &opts(None)).await.unwrap().0.id);
    }
    let q = |s: &str| TicketFilter { q: Some(s.into()), ..Default::default() };
    assert_eq!(all(store, &q("电梯")).await, vec![ids[0]], "two-character term");
    assert_eq!(all(store, &q("施工噪音")).await, vec![ids[1]], "longer term");
    assert_eq!(all(store, &q("噪音 凌晨")).await, vec![ids[1]], "all terms must occur");
    assert!(all(store, &q("噪音 电梯")).await.is_empty());
    assert_eq!(all(store, &q("打桩")).await, vec![ids[1]], "full text, not only the summary");
    assert_eq!(all(store, &q("abc")).await, vec![ids[2]], "ASCII is case-insensitive");
    assert_eq!(all(store, &q("100%")).await, vec![ids[2]]);
    assert_eq!(all(store, &q("%")).await, vec![ids[2]], "% is a literal, not a wildcard");
    assert!(all(store, &q("_")).await.is_empty(), "_ is a literal, not a wildcard");
    assert!(all(store, &q("不存在的问题")).await.is_empty());
    assert_eq!(all(store, &q("噪声污染")).await, vec![ids[1]], "category is searchable");
    let f = TicketFilter { q: Some("公交".into()), status: Some(Status::Accepted), ..Default::default() };
    assert!(all(store, &f).await.is_empty(), "search combines with filters");
}

async fn overdue_filter(store: &dyn TicketStore) {
    let now = Utc::now();
    let late = CreateOptions {
        deadlines: Deadlines { accept_by: Some(now - Duration::hours(5)), reply_by: Some(now - Duration::hours(1)), callback_by: None },
        ..opts(None)
    };
    let (a, _) = store.create(&ticket("逾期的"), &late).await.unwrap();
    let (b, _) = store.create(&ticket("未逾期的"), &opts(None)).await.unwrap();
    assert!(a.overdue.reply && a.overdue.accept && a.overdue.any);
    assert!(!b.overdue.any);
    assert_eq!(all(store, &TicketFilter { overdue: Some(true), ..Default::default() }).await, vec![a.id]);
    assert_eq!(all(store, &TicketFilter { overdue: Some(false), ..Default::default() }).await, vec![b.id]);
    // Replying late keeps it overdue.
    let sla = SlaPolicy::default();
    store.transition(a.id, &to(Status::Accepted), &sla, Utc::now()).await.unwrap();
    let t = store.transition(a.id, &TransitionRequest { reply: Some("已答复".into()), ..to(Status::Replied) }, &sla, Utc::now()).await.unwrap();
    assert!(t.overdue.reply);
    assert_eq!(all(store, &TicketFilter { overdue: Some(true), ..Default::default() }).await, vec![a.id]);
}

async fn survives_reopen(h: &Harness) {
    let sla = SlaPolicy::default();
    let (t, _) = h.store.create(&ticket("重启后仍在"), &opts(Some("persist-1"))).await.unwrap();
    h.store.transition(t.id, &to(Status::Accepted), &sla, Utc::now()).await.unwrap();
    let other = h.reopen().await;
    let got = other.get(t.id).await.unwrap().expect("visible from a new connection");
    assert_eq!(got.body.status, Status::Accepted);
    assert_eq!(got.history.len(), 2);
    let (again, created) = other.create(&ticket("重启后仍在"), &opts(Some("persist-1"))).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, t.id, "idempotency keys survive restarts");
}

/// 退单 and re-dispatch through the dispatcher, then the supervisor metrics over a seeded set.
async fn redispatch_and_metrics(store: &dyn TicketStore) {
    use zhengwu_hotline::intel::departments::Catalogue;
    use zhengwu_hotline::intel::dispatch::{DispatchConfig, Dispatcher};
    use zhengwu_hotline::intel::supervisor;
    use zhengwu_hotline::tickets::model::DispatchRecord;

    let sla = SlaPolicy::default();
    let catalogue = Arc::new(
        Catalogue::parse(
            "[[department]]\nid='property'\nname='物业监管科'\nkeywords=['物业','电梯']\n\
             [[department]]\nid='housing'\nname='住建局'\nkeywords=['电梯','维修资金']\n\
             [[department]]\nid='market'\nname='市场监管局'\nkeywords=['特种设备']\n",
        )
        .unwrap(),
    );
    let dispatcher = Dispatcher::new(catalogue, Vec::new(), None, DispatchConfig::default()).unwrap();
    let auto = |dept: &str, conf: f32| DispatchRecord {
        at: None,
        dept: String::new(),
        auto: true,
        bucket: Some("auto".into()),
        suggested: Some(dept.into()),
        confidence: Some(conf),
        decided_by: Some("model".into()),
    };
    let step = |s: Status| to(s);
    let dispatch_req = |dept: &str, rec: Option<DispatchRecord>| TransitionRequest { dept: Some(dept.into()), dispatch: rec, ..to(Status::Dispatched) };
    let reply = TransitionRequest { reply: Some("已处理".into()), ..to(Status::Replied) };
    let callback = |s: Satisfaction| TransitionRequest { satisfaction: Some(s), ..to(Status::CallbackDone) };

    // T1: auto-dispatched, right department, satisfied.
    let (t1, _) = store.create(&ticket("小区电梯坏了物业不修"), &opts(None)).await.unwrap();
    for r in [step(Status::Accepted), dispatch_req("property", Some(auto("property", 0.9))), step(Status::Handling), reply.clone(), callback(Satisfaction::Satisfied)] {
        store.transition(t1.id, &r, &sla, Utc::now()).await.unwrap();
    }
    // T2: auto-dispatched to the wrong department, which returns it (退单); the dispatcher, told
    // who returned it, suggests another; a person dispatches there.
    let (t2, _) = store.create(&ticket("电梯维修资金怎么申请"), &opts(None)).await.unwrap();
    store.transition(t2.id, &step(Status::Accepted), &sla, Utc::now()).await.unwrap();
    let first = dispatcher.suggest("电梯维修资金怎么申请 物业", &[], &[]).unwrap();
    let first_dept = first.lead.clone().unwrap().dept;
    store.transition(t2.id, &dispatch_req(&first_dept, Some(auto(&first_dept, 0.8))), &sla, Utc::now()).await.unwrap();
    let back = TransitionRequest { reason: Some("不属于本单位职责".into()), ..to(Status::Returned) };
    store.transition(t2.id, &back, &sla, Utc::now()).await.unwrap();
    let got = store.get(t2.id).await.unwrap().unwrap();
    assert_eq!(got.body.status, Status::Returned);
    assert_eq!(got.body.returns, 1);
    let returned_by: Vec<String> = got.history.iter().filter(|h| h.to == Status::Returned).filter_map(|h| h.dept.clone()).collect();
    assert_eq!(returned_by, vec![first_dept.clone()]);
    let again = dispatcher.suggest("电梯维修资金怎么申请 物业", &returned_by, &[]).unwrap();
    let second = again.lead.unwrap().dept;
    assert_ne!(second, first_dept, "the department that returned it is not suggested again");
    let manual = DispatchRecord { auto: false, suggested: Some(second.clone()), decided_by: Some("person".into()), ..auto(&second, 0.5) };
    for r in [dispatch_req(&second, Some(manual)), step(Status::Handling), reply.clone(), callback(Satisfaction::Unsatisfied)] {
        store.transition(t2.id, &r, &sla, Utc::now()).await.unwrap();
    }
    let got = store.get(t2.id).await.unwrap().unwrap();
    assert_eq!(got.body.dispatches.len(), 2);
    assert!(got.body.dispatches[0].auto && !got.body.dispatches[1].auto);
    assert_eq!(got.body.dispatches[1].dept, second);
    // T3: a person dispatches without following the suggestion; replied.
    let (t3, _) = store.create(&NewTicket { channel: Channel::App, ..ticket("特种设备年检") }, &opts(None)).await.unwrap();
    let person = DispatchRecord { auto: false, suggested: Some("housing".into()), decided_by: Some("person".into()), ..auto("housing", 0.3) };
    for r in [step(Status::Accepted), dispatch_req("market", Some(person)), step(Status::Handling), reply.clone()] {
        store.transition(t3.id, &r, &sla, Utc::now()).await.unwrap();
    }
    // T4: still waiting, another district.
    let mut t4 = ticket("路灯不亮");
    t4.address.district = Some("西城区".into());
    let (t4_created, _) = store.create(&t4, &opts(None)).await.unwrap();
    let t4_id = t4_created.id;
    // A dispatch record is refused on other transitions, and a confidence out of range.
    let bad = TransitionRequest { dispatch: Some(auto("market", 0.5)), ..to(Status::Handling) };
    assert!(store.transition(t3.id, &bad, &sla, Utc::now()).await.is_err());

    let (m, truncated) = supervisor::compute(store, &TicketFilter::default(), Utc::now(), 10_000).await.unwrap();
    assert!(!truncated);
    assert_eq!(m.tickets, 4);
    assert_eq!(m.dispatched, 3);
    assert_eq!((m.auto_dispatch_coverage.numerator, m.auto_dispatch_coverage.denominator), (2, 3));
    assert_eq!((m.auto_dispatch_accuracy.numerator, m.auto_dispatch_accuracy.denominator), (1, 2), "T1 right, T2 wrong");
    assert_eq!((m.suggestion_accuracy.numerator, m.suggestion_accuracy.denominator), (1, 3));
    assert_eq!((m.redispatch_rate.numerator, m.redispatch_rate.denominator), (1, 3));
    assert_eq!((m.sla_on_time.numerator, m.sla_on_time.denominator), (3, 3));
    assert_eq!((m.callback_satisfaction.numerator, m.callback_satisfaction.denominator), (1, 2));
    assert_eq!(m.by_channel.get("app"), Some(&1));
    assert_eq!(m.by_channel.get("phone"), Some(&3));
    assert_eq!(m.by_district.get("西城区"), Some(&1));
    assert_eq!(m.by_department.get("未派发"), Some(&1));
    assert_eq!(m.by_department.get("market"), Some(&1));
    assert_eq!(m.by_status.get("callback_done"), Some(&2));
    assert_eq!(m.handling_minutes_median.map(|x| x >= 0.0), Some(true));
    // Similar past tickets come from the index of handled tickets (T1-T3), never T4 (waiting).
    let index = zhengwu_hotline::intel::similar::SimilarIndex::new(100, std::time::Duration::ZERO);
    let found = index.query(store, "我们小区电梯坏了，物业一直不修", None).await.unwrap();
    assert_eq!(found.first().map(|(c, _)| (c.ticket_id, c.dept.as_str())), Some((t1.id, "property")), "{found:?}");
    assert!(found.iter().all(|(c, t)| c.ticket_id != t4_id && t.id == c.ticket_id && c.similarity >= 0.3));
    assert!(index.query(store, "我们小区电梯坏了，物业一直不修", Some(t1.id)).await.unwrap().iter().all(|(c, _)| c.ticket_id != t1.id));
    assert_eq!(index.len().await, 3);
    // The automation against agents' corrections, per week: all three dispatched this week; T2
    // was returned, and a person overruled the suggestion on T3.
    assert_eq!(m.dispatch_by_week.len(), 1, "{:?}", m.dispatch_by_week);
    let week = m.dispatch_by_week.values().next().unwrap();
    assert_eq!((week.dispatched, week.auto), (3, 2));
    assert_eq!((week.auto_accuracy.numerator, week.auto_accuracy.denominator), (1, 2));
    assert_eq!((week.corrected.numerator, week.corrected.denominator), (2, 3));
    // Filtered by district.
    let (w, _) = supervisor::compute(store, &TicketFilter { district: Some("西城区".into()), ..Default::default() }, Utc::now(), 10_000).await.unwrap();
    assert_eq!((w.tickets, w.dispatched), (1, 0));
    assert_eq!(w.auto_dispatch_coverage.rate, None, "no dispatched tickets: no rate, not 0");
}

// ---------------------------------------------------------------- instantiation

macro_rules! suite {
    ($backend:ident, $make:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn create_and_get() {
                let h = $make.await;
                super::create_and_get(&*h.store).await;
            }
            #[tokio::test]
            async fn idempotent_create() {
                let h = $make.await;
                super::idempotent_create(&*h.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_same_key() {
                let h = $make.await;
                super::concurrent_same_key(h.store.clone()).await;
            }
            #[tokio::test]
            async fn lifecycle_and_history() {
                let h = $make.await;
                super::lifecycle_and_history(&*h.store).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_transitions() {
                let h = $make.await;
                super::concurrent_transitions(h.store.clone()).await;
            }
            #[tokio::test]
            async fn filters_and_pagination() {
                let h = $make.await;
                super::filters_and_pagination(&*h.store).await;
            }
            #[tokio::test]
            async fn chinese_search() {
                let h = $make.await;
                super::chinese_search(&*h.store).await;
            }
            #[tokio::test]
            async fn overdue_filter() {
                let h = $make.await;
                super::overdue_filter(&*h.store).await;
            }
            #[tokio::test]
            async fn survives_reopen() {
                let h = $make.await;
                super::survives_reopen(&h).await;
            }
            #[tokio::test]
            async fn redispatch_and_metrics() {
                let h = $make.await;
                super::redispatch_and_metrics(&*h.store).await;
            }
        }
    };
}

suite!(sqlite, Harness::sqlite());
suite!(postgres, Harness::pg());

/// The history table refuses UPDATE and DELETE at the database level (both backends).
#[tokio::test]
async fn history_is_append_only_in_the_database() {
    let h = Harness::sqlite().await;
    h.store.create(&ticket("审计"), &opts(None)).await.unwrap();
    let Kind::Sqlite { url, .. } = &h.kind else { unreachable!() };
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let e = sqlx::query("UPDATE ticket_events SET actor = 'x'").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM ticket_events").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    pool.close().await;

    let h = Harness::pg().await;
    h.store.create(&ticket("审计"), &opts(None)).await.unwrap();
    let Kind::Pg { url, schema } = &h.kind else { unreachable!() };
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(url.parse::<sqlx::postgres::PgConnectOptions>().unwrap().options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    let e = sqlx::query("UPDATE ticket_events SET actor = 'x'").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = sqlx::query("DELETE FROM ticket_events").execute(&pool).await.unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    pool.close().await;
}
