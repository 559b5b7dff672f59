//! `zhengwu kb ingest|list|delete|search|ask`: the knowledge base from the terminal.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use zhengwu_rag::answer::{Answerer, AskRequest};
use zhengwu_rag::kb::{IngestOptions, Progress};
use zhengwu_rag::{KbFilter, KnowledgeBase, Mode, SearchRequest};

use crate::config::FileConfig;
use crate::ModelArgs;

#[derive(Args)]
pub struct KbArgs {
    #[command(subcommand)]
    action: KbAction,
    /// Vector store directory (default `knowledge-base/.index`).
    #[arg(long, global = true, env = "ZHENGWU_KB_STORE")]
    store: Option<PathBuf>,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Subcommand)]
enum KbAction {
    /// Sync a folder into the store: new/changed files (re)ingested, removed files deleted.
    Ingest {
        /// Folder of documents and FAQ files (default `knowledge-base/policy`, or $ZHENGWU_KB_DIR).
        dir: Option<PathBuf>,
        /// Keep stored documents whose file is gone.
        #[arg(long)]
        keep_missing: bool,
    },
    /// List stored documents.
    List,
    /// Copy the embedded store (`--store`) into the Qdrant server of ZHENGWU_QDRANT_URL
    /// (collection ZHENGWU_QDRANT_COLLECTION, created if missing; same ids are replaced).
    ExportToServer,
    /// Restore a Qdrant shard snapshot (e.g. from a server's
    /// `POST /collections/{name}/shards/0/snapshot`) as the embedded store (`--store`, which must
    /// be absent or empty): the way from a server back to one machine.
    ImportSnapshot {
        /// The shard snapshot archive (`.snapshot`, a tar).
        snapshot: PathBuf,
    },
    /// Delete a document (its id as `kb list` shows it).
    Delete { doc_id: String },
    /// Hit testing: the ranked chunks a question retrieves, with per-retriever scores.
    Search {
        query: String,
        #[arg(long, default_value = "hybrid")]
        mode: String,
        #[arg(long, default_value_t = 5)]
        limit: usize,
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        category: Option<String>,
        /// Validity date YYYY-MM-DD (default today).
        #[arg(long)]
        date: Option<String>,
        #[arg(long)]
        include_expired: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Answer a question from the knowledge base with the chat model.
    Ask {
        question: String,
        #[arg(long)]
        json: bool,
    },
}

fn open_kb(args: &KbArgs, file: &FileConfig) -> anyhow::Result<(Arc<KnowledgeBase>, crate::ModelSettings)> {
    let settings = crate::model_settings(&args.models, file)?;
    let name = settings.embedding.clone().context("no embedding model configured")?;
    let embedder = Arc::new(crate::load_embedder(&settings, &name)?);
    let dir = store_dir(args, file);
    // The Qdrant server when one is configured, else the embedded store in `dir`.
    let rag = file.kb.rag()?;
    let store = zhengwu_rag::open_store(&dir, rag.qdrant.as_ref(), zhengwu_inference::Embedder::dim(embedder.as_ref()))
        .with_context(|| format!("opening the store ({})", zhengwu_rag::store_location(&dir, rag.qdrant.as_ref())))?;
    let mut kb = KnowledgeBase::new(store, embedder)?;
    kb.weights = rag.weights;
    Ok((Arc::new(kb), settings))
}

fn store_dir(args: &KbArgs, file: &FileConfig) -> PathBuf {
    args.store.clone().unwrap_or_else(|| file.kb.store_dir())
}

pub fn run(args: KbArgs, file: &FileConfig) -> anyhow::Result<()> {
    match &args.action {
        KbAction::Ingest { dir, keep_missing } => {
            let dir = dir.clone().unwrap_or_else(|| file.kb.docs_dir());
            let (kb, _) = open_kb(&args, file)?;
            let mut last = 0;
            let report = kb.ingest_dir(&dir, &IngestOptions { keep_missing: *keep_missing }, &mut |p| match p {
                Progress::File { i, n, path } => {
                    if i == n || i - last >= 10 || n <= 50 {
                        eprintln!("[{i}/{n}] {path}");
                        last = i;
                    }
                }
                Progress::Skipped { path, reason } => eprintln!("skipped {path}: {reason}"),
            })?;
            println!("{}", report.summary());
            Ok(())
        }
        KbAction::ExportToServer => {
            let dir = store_dir(&args, file);
            let config = file
                .kb
                .qdrant()
                .context("set ZHENGWU_QDRANT_URL or [kb] qdrant_url (gRPC, e.g. http://localhost:6334) to the server to export to")?;
            let target = format!("{} (collection `{}`)", config.url, config.collection);
            let n = zhengwu_rag::qdrant_server::export_edge_dir(&dir, config, &mut |n| eprint!("\r{n} points copied"))
                .with_context(|| format!("exporting {} to {target}", dir.display()))?;
            eprintln!();
            println!("exported {n} points from {} to {target}", dir.display());
            Ok(())
        }
        KbAction::ImportSnapshot { snapshot } => {
            let dir = store_dir(&args, file);
            let r = zhengwu_rag::edge::EdgeStore::import_snapshot(snapshot, &dir)
                .with_context(|| format!("importing {} into {}", snapshot.display(), dir.display()))?;
            println!(
                "imported {} points ({} segments, {}-dimensional dense vectors) from {} into {}",
                r.points,
                r.segments,
                r.dim,
                snapshot.display(),
                dir.display()
            );
            Ok(())
        }
        KbAction::List => {
            let (kb, _) = open_kb(&args, file)?;
            let docs = kb.documents()?;
            println!("{:<48} {:<4} {:>6}  title", "DOC_ID", "KIND", "CHUNKS");
            for d in &docs {
                let kind = if d.kind == zhengwu_rag::store::EntryKind::Faq { "faq" } else { "doc" };
                println!("{:<48} {:<4} {:>6}  {}", d.doc_id, kind, d.chunks, d.title);
            }
            println!("{} documents, {} chunks", docs.len(), docs.iter().map(|d| d.chunks).sum::<usize>());
            Ok(())
        }
        KbAction::Delete { doc_id } => {
            let (kb, _) = open_kb(&args, file)?;
            let n = kb.delete(doc_id)?;
            if n == 0 {
                anyhow::bail!("no document `{doc_id}` in the store (see `zhengwu kb list`)");
            }
            println!("deleted {doc_id} ({n} chunks)");
            Ok(())
        }
        KbAction::Search { query, mode, limit, region, agency, category, date, include_expired, json } => {
            let mode: Mode = mode.parse()?;
            let valid_on = date.as_deref().map(zhengwu_rag::document::parse_date).transpose()?;
            let (kb, _) = open_kb(&args, file)?;
            let req = SearchRequest {
                query: query.clone(),
                mode,
                limit: *limit,
                filter: KbFilter {
                    region: region.clone(),
                    agency: agency.clone(),
                    category: category.clone(),
                    valid_on,
                    ..Default::default()
                },
                include_expired: *include_expired,
                weights: None,
            };
            let hits = kb.search(&req)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
                return Ok(());
            }
            for h in &hits {
                let fmt = |s: Option<zhengwu_rag::kb::RetrieverScore>| {
                    s.map(|s| format!("#{} {:.4}", s.rank, s.score)).unwrap_or_else(|| "-".into())
                };
                println!(
                    "{}. {:.4}  dense {}  sparse {}  {} [{}] {}..{}",
                    h.rank,
                    h.score,
                    fmt(h.dense),
                    fmt(h.sparse),
                    h.chunk.doc_id,
                    h.chunk.section.join(" > "),
                    h.chunk.start,
                    h.chunk.end
                );
                let snippet: String = h.chunk.text.chars().take(120).collect();
                println!("   {}", snippet.replace('\n', " "));
            }
            if hits.is_empty() {
                println!("no hits");
            }
            Ok(())
        }
        KbAction::Ask { question, json } => {
            let (kb, settings) = open_kb(&args, file)?;
            let name = settings.chat.clone().context("no chat model configured")?;
            let generator = crate::load_generator(
                &settings,
                &name,
                zhengwu_inference::llm::EngineOptions { max_context: settings.max_context, ..Default::default() },
            )?;
            let lexicon = match file.kb.lexicon_dir() {
                Some(d) => zhengwu_rag::understand::Lexicon::load(&d)?,
                None => zhengwu_rag::understand::Lexicon::default(),
            };
            let answerer = Answerer { kb, generator, config: Default::default(), lexicon: Arc::new(lexicon) };
            let answer = answerer.ask_blocking(&AskRequest {
                question: question.clone(),
                filter: KbFilter::default(),
                stream: false,
                max_tokens: None,
                history: Vec::new(),
            })?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(());
            }
            println!("{}", answer.answer);
            for c in &answer.citations {
                println!("[{}] {} {} ({}..{})", c.n, c.title, c.section, c.start, c.end);
            }
            println!("（{}）", zhengwu_rag::answer::AI_LABEL);
            Ok(())
        }
    }
}
