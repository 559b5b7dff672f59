//! Fuzz targets for the chunker and every document parser: property tests with
//! shrinking (proptest) over random bytes and structured mutations of valid inputs.
//!
//! Every input must give `Ok` with sane output or a clear `Err`: never a panic, a hang (each
//! call runs on its own thread, with a 2 MiB stack like a Tokio blocking thread, and must
//! return within [`LIMIT`]) or unbounded memory. Crashes found are kept twice: proptest's seeds
//! in `rag/proptest-regressions/`, and the input written out as a named `#[test]` below (the
//! `regression_*` tests).
//!
//! Cases per property: `ZHENGWU_FUZZ_CASES` (default per test, sized for well under 30 s each
//! in the dev profile on 2 cores). CI runs it as
//! `cargo test -p zhengwu-rag --test fuzz_parsers -- --test-threads 2`; a longer local run:
//! `ZHENGWU_FUZZ_CASES=20000 cargo test -p zhengwu-rag --test fuzz_parsers`.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lopdf::{dictionary, Document, Object, ObjectId, Stream};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use zhengwu_rag::chunker::{chunk, Chunk, ChunkerConfig, MAX_HEADING_CHARS};
use zhengwu_rag::document::{docx_to_text, html_to_text, load, pdf_to_text, Loaded, MAX_DOCX_XML_BYTES};

/// The most one parse or chunking of a fuzz input may take (inputs are at most some 100 KB;
/// the dev profile is unoptimised, and two tests run at once).
const LIMIT: Duration = Duration::from_secs(20);

/// The stack of the thread each input runs on: a Tokio blocking thread's.
const STACK: usize = 2 << 20;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("ZHENGWU_FUZZ_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default_cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 4096,
        max_shrink_time: 60_000,
        // `cargo test` runs in the crate directory: seeds of failures go to
        // rag/proptest-regressions/ and are replayed first on every run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/fuzz_parsers.txt"))),
        ..ProptestConfig::default()
    }
}

/// With `ZHENGWU_FUZZ_VERBOSE` set, print each outcome (to see what the inputs reach).
fn outcome(what: &str, result: std::result::Result<usize, &str>) {
    if std::env::var_os("ZHENGWU_FUZZ_VERBOSE").is_some() {
        match result {
            Ok(len) => eprintln!("{what}: Ok ({len} bytes)"),
            Err(e) => eprintln!("{what}: Err {}", e.chars().take(90).collect::<String>()),
        }
    }
}

/// Run `f` on a fresh thread; a panic there is re-raised here, a run past [`LIMIT`] fails.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    quiet_caught_panics();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn");
    match rx.recv_timeout(LIMIT) {
        Ok(v) => {
            let _ = worker.join();
            v
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no result after {LIMIT:?} (a hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}

/// pdf-extract panics on many malformed PDFs and `pdf_to_text` catches that; keep those
/// (expected) panics from flooding the output. Any other panic is printed as usual.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let file = info.location().map(|l| l.file()).unwrap_or("");
            let caught = ["pdf-extract", "lopdf", "adobe-cmap-parser", "type1-encoding-parser", "euclid", "pom-"]
                .iter()
                .any(|c| file.contains(c));
            if !caught {
                default(info);
            }
        }));
    });
}

/// A path in a directory that does not exist, so `load` finds no sidecar `.meta` file.
fn path(name: &str) -> PathBuf {
    Path::new("/nonexistent-fuzz-dir").join(name)
}

/// `load` must give a document with a title and text, FAQ entries with a question and an
/// answer, or an error naming the file.
fn check_load(name: &'static str, bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let len = bytes.len();
    let got = within(name, move || load(&path(name), &bytes).map_err(|e| e.to_string()));
    match got {
        Ok(Loaded::Document { meta, body }) => {
            prop_assert!(!meta.title.trim().is_empty(), "{name}: empty title");
            prop_assert!(!body.trim().is_empty(), "{name}: Ok with no text");
            if !name.ends_with(".pdf") && !name.ends_with(".docx") {
                prop_assert!(body.len() <= 2 * len + 16, "{name}: {} bytes of text from {len}", body.len());
            }
        }
        Ok(Loaded::Faq(entries)) => {
            prop_assert!(!entries.is_empty());
            for e in &entries {
                prop_assert!(!e.question.trim().is_empty() && !e.answer.trim().is_empty(), "{e:?}");
            }
        }
        Err(e) => prop_assert!(e.contains(name), "the error must name the file: {e}"),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Byte mutations (DOCX, PDF).

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    /// Write a token over the bytes at a place (the length stays, so do the offsets).
    Overwrite(usize, &'static [u8]),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copy `len` bytes from one place over another.
    Splice(usize, usize, usize),
}

fn mutation(tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..).prop_map(|(p, x)| Mutation::Flip(p, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        2 => (any::<usize>(), prop::sample::select(tokens)).prop_map(|(p, t)| Mutation::Insert(p, t.to_vec())),
        3 => (any::<usize>(), prop::sample::select(tokens)).prop_map(|(p, t)| Mutation::Overwrite(p, t)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ]
}

fn mutate(buf: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    let len = buf.len();
    mutate_within(buf, 0..len, ms)
}

/// Mutations at places in `within` (of the input before mutating; e.g. a PDF's objects, not
/// its cross-reference table, so that the mutated objects are still found).
fn mutate_within(mut buf: Vec<u8>, within: std::ops::Range<usize>, ms: &[Mutation]) -> Vec<u8> {
    let at = |p: &usize, len: usize| (within.start + p % within.len().max(1)).min(len.saturating_sub(1));
    for m in ms {
        let len = buf.len().max(1);
        match m {
            Mutation::Flip(p, x) => {
                if !buf.is_empty() {
                    let i = at(p, buf.len());
                    buf[i] ^= x;
                }
            }
            Mutation::Overwrite(p, t) => {
                if !buf.is_empty() {
                    let i = at(p, buf.len());
                    let n = t.len().min(buf.len() - i);
                    buf[i..i + n].copy_from_slice(&t[..n]);
                }
            }
            Mutation::Truncate(p) => buf.truncate(at(p, len)),
            Mutation::Insert(p, b) => {
                let i = at(p, buf.len() + 1);
                buf.splice(i..i, b.iter().copied());
            }
            Mutation::Delete(p, n) => {
                let i = at(p, len);
                let end = (i + n).min(buf.len());
                if i < end {
                    buf.drain(i..end);
                }
            }
            Mutation::Splice(a, b, n) => {
                if !buf.is_empty() {
                    let (from, to) = (a % len, b % len);
                    let n = (*n).min(buf.len() - from).min(buf.len() - to);
                    let part = buf[from..from + n].to_vec();
                    buf[to..to + n].copy_from_slice(&part);
                }
            }
        }
    }
    buf
}

// ---------------------------------------------------------------------------------------------
// Chunker.

const CN_NUMERALS: &str = "零〇一二三四五六七八九十百千两0123456789０１２３４５６７８９";

fn cn_num() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[一二三四五六七八九十百]{1,4}",
        1 => "[0-9]{1,4}",
        1 => "[零〇一二三四五六七八九十百千两0-9０-９]{1,16}",
    ]
}

fn text_token() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[\u{4e00}-\u{9fa5}]{1,24}",
        1 => "[a-zA-Z0-9 ,.]{1,16}",
        4 => prop::sample::select(&[
            "。", "！", "？", "；", "…", "，", "、", "：", ":", ";", "!", "?", " ", "\u{3000}", "\n", "\n\n", "\r\n",
            "\t", "”", "）", "」", "』", "'", "\"",
        ][..]).prop_map(String::from),
        2 => (cn_num(), prop::sample::select(&["条", "章", "节", "编", "款", "项"][..]), "[ \u{3000}]?")
            .prop_map(|(n, u, s)| format!("第{n}{u}{s}")),
        1 => (cn_num(), any::<bool>()).prop_map(|(n, paren)| if paren { format!("（{n}）") } else { format!("{n}、") }),
        1 => (1usize..9, "[\u{4e00}-\u{9fa5} ]{0,12}").prop_map(|(h, t)| format!("\n{} {t}\n", "#".repeat(h))),
        1 => prop::sample::select(&["- ", "* ", "1. ", "2、", "• ", "12．"][..]).prop_map(String::from),
        // Long runs: a sentence without punctuation, only spaces, only punctuation, a line of `#`.
        1 => (prop::sample::select(&['长', ' ', '\n', '。', '，', '第', '#', '一', '、', '（', 'a', '\u{3000}', '🙂'][..]), 1usize..1500)
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => (1usize..400).prop_map(|n| format!("# {}", "标".repeat(n))),
        1 => any::<String>(),
    ]
}

fn chunk_text() -> impl Strategy<Value = String> {
    prop::collection::vec(text_token(), 0..80).prop_map(|v| v.concat())
}

fn chunker_config() -> impl Strategy<Value = ChunkerConfig> {
    prop_oneof![
        1 => Just(ChunkerConfig::default()),
        2 => (0usize..600, 0usize..400, 0usize..400)
            .prop_map(|(max_chars, overlap_chars, min_chars)| ChunkerConfig { max_chars, overlap_chars, min_chars }),
    ]
}

/// What `chunker`'s documentation promises of its output.
fn check_chunks(text: &str, cfg: &ChunkerConfig, chunks: &[Chunk]) -> Result<(), TestCaseError> {
    let chars: Vec<char> = text.chars().collect();
    let n = chars.len();
    let max = cfg.max_chars.max(20);
    let bound = max + cfg.min_chars.min(max / 2);
    let mut covered = vec![false; n];
    for (i, c) in chunks.iter().enumerate() {
        prop_assert_eq!(c.index, i);
        prop_assert!(c.start < c.end && c.end <= n, "chunk {} at {}..{} of {} chars", i, c.start, c.end, n);
        let span: String = chars[c.start..c.end].iter().collect();
        prop_assert_eq!(&c.text, &span, "chunk {} text is not text[{}..{}]", i, c.start, c.end);
        prop_assert!(!chars[c.start].is_whitespace() && !chars[c.end - 1].is_whitespace(), "chunk {i} {:?}", c.text);
        prop_assert!(c.end - c.start <= bound, "chunk {i} has {} chars, over {bound}", c.end - c.start);
        prop_assert!(c.section.len() <= 7, "{:?}", c.section);
        for s in &c.section {
            prop_assert!(s.chars().count() <= MAX_HEADING_CHARS, "section label of {} chars", s.chars().count());
        }
        if i > 0 {
            let p = &chunks[i - 1];
            prop_assert!(p.start < c.start && p.end < c.end, "chunk {} ({}..{}) does not move past {}..{}", i, c.start, c.end, p.start, p.end);
        }
        // No Markdown heading starts inside a chunk (a chunk never crosses a heading). A line
        // of at most MAX_HEADING_CHARS that starts like one is one; a longer line may begin
        // with one (cut at an inline marker): not checked.
        for nl in (c.start..c.end).filter(|&p| chars[p] == '\n') {
            let line_end = (nl + 1..n).find(|&q| chars[q] == '\n').unwrap_or(n);
            let line: String = chars[nl + 1..line_end].iter().collect();
            let l: Vec<char> = line.trim().chars().collect();
            let hashes = l.iter().take_while(|&&c| c == '#').count();
            let heading = (1..=6).contains(&hashes)
                && l.get(hashes).is_some_and(|c| c.is_whitespace())
                && l.len() <= MAX_HEADING_CHARS;
            prop_assert!(!heading, "chunk {} crosses the heading {:?}", i, line);
        }
        covered[c.start..c.end].iter_mut().for_each(|x| *x = true);
    }
    // Every non-blank character is in a chunk, or in a heading (a run that starts like one).
    let mut p = 0;
    while p < n {
        if covered[p] || chars[p] == '\n' {
            p += 1;
            continue;
        }
        let q = (p..n).find(|&q| covered[q] || chars[q] == '\n').unwrap_or(n);
        let run: String = chars[p..q].iter().collect();
        if let Some(first) = run.trim().chars().next() {
            let heading_start = matches!(first, '#' | '第' | '（' | '(')
                || (CN_NUMERALS.contains(first) && !first.is_ascii_digit());
            prop_assert!(heading_start, "text lost at {}..{}: {:?}", p, q, run);
        }
        p = q;
    }
    Ok(())
}

fn run_chunker(text: String, cfg: ChunkerConfig) -> Result<(), TestCaseError> {
    let t = text.clone();
    let chunks = within("chunk", move || chunk(&t, &cfg));
    check_chunks(&text, &cfg, &chunks)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_chunker(text in chunk_text(), cfg in chunker_config()) {
        run_chunker(text, cfg)?;
    }

    #[test]
    fn fuzz_chunker_any_unicode(text in any::<String>(), cfg in chunker_config()) {
        run_chunker(text, cfg)?;
    }
}

// ---------------------------------------------------------------------------------------------
// HTML.

fn html_tag_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "p", "div", "h1", "h2", "h3", "h6", "h7", "script", "style", "noscript", "title", "li", "ul", "ol",
            "td", "th", "tr", "br", "span", "a", "table", "SCRIPT", "Title", "H2", "section", "blockquote",
        ][..]).prop_map(String::from),
        1 => "[a-zA-Z][a-zA-Z0-9:-]{0,8}",
    ]
}

fn html_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (html_tag_name(), "( [a-z]{1,5}=\"[^\"<>]{0,10}\")*", any::<bool>())
            .prop_map(|(n, a, slash)| format!("<{n}{a}{}>", if slash { "/" } else { "" })),
        3 => html_tag_name().prop_map(|n| format!("</{n}>")),
        4 => "[\u{4e00}-\u{9fa5}a-z0-9 。，\n]{0,24}",
        2 => prop::sample::select(&[
            "&amp;", "&lt;", "&gt;", "&nbsp;", "&quot;", "&#39;", "&ldquo;", "&rdquo;", "&#x4E2D;", "&#20013;",
            "&#xD800;", "&#x110000;", "&#99999999999;", "&#-1;", "&;", "&#;", "&#x;", "&", "&&&&", "&ampamp;",
            "&amp", "&#x4E2D", "&verylongentityname;",
        ][..]).prop_map(String::from),
        1 => "&[#a-zA-Z0-9]{0,12};?",
        2 => prop::sample::select(&[
            "<", ">", "< ", "<<", "<3", "<=", "<!--", "-->", "<!-- x > y -->", "<!", "<?xml version=\"1.0\"?>",
            "<!DOCTYPE html>", "</", "<\n", "</>", "<>", "</ script>", "</script", "<![CDATA[", "]]>",
        ][..]).prop_map(String::from),
        // A huge attribute value.
        1 => (1usize..20_000).prop_map(|n| format!("<p title=\"{}\">", "a".repeat(n))),
        // Deep nesting, opened and maybe never closed.
        1 => (html_tag_name(), 1usize..3000).prop_map(|(t, n)| format!("<{t}>").repeat(n)),
        1 => (1usize..5000).prop_map(|n| "&".repeat(n)),
        1 => any::<String>(),
    ]
}

fn html_doc() -> impl Strategy<Value = String> {
    prop::collection::vec(html_token(), 0..60).prop_map(|v| v.concat())
}

fn check_html(html: String) -> Result<(), TestCaseError> {
    let len = html.len();
    let (title, body) = within("html_to_text", move || html_to_text(&html));
    for line in body.lines() {
        prop_assert!(!line.is_empty() && line.trim() == line, "untidy line {:?}", line);
    }
    if let Some(t) = &title {
        prop_assert!(!t.is_empty());
    }
    prop_assert!(body.len() <= 2 * len + 8, "{} bytes of text from {} of HTML", body.len(), len);
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn fuzz_html(html in html_doc()) {
        check_html(html.clone())?;
        check_load("page.html", html.into_bytes())?;
    }

    #[test]
    fn fuzz_html_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        check_load("page.htm", bytes.clone())?;
        check_html(String::from_utf8_lossy(&bytes).into_owned())?;
    }
}

// ---------------------------------------------------------------------------------------------
// DOCX.

fn docx_with(xml: &[u8], deflate: bool) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file("[Content_Types].xml", opts).unwrap();
        w.write_all(b"<?xml version=\"1.0\"?><Types/>").unwrap();
        w.start_file("word/document.xml", opts).unwrap();
        w.write_all(xml).unwrap();
        w.finish().unwrap();
    }
    buf.into_inner()
}

const DOCX_XML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"x\"><w:body>\
<w:p><w:r><w:t>第一条</w:t></w:r><w:r><w:t xml:space=\"preserve\"> 总则&amp;目的</w:t></w:r></w:p>\
<w:p><w:r><w:t>第二条</w:t><w:tab/><w:t>适用范围</w:t><w:br/><w:t>本办法适用于本市。</w:t></w:r></w:p>\
</w:body></w:document>";

const ZIP_TOKENS: &[&[u8]] = &[
    b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
    b"\xff\xff", b"word/document.xml", b"<w:t>", b"</w:t>",
];

fn docx_token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "<w:p>", "</w:p>", "<w:r>", "</w:r>", "<w:t>", "<w:t xml:space=\"preserve\">", "</w:t>", "<w:tab/>",
            "<w:br/>", "<w:t/>", "</w:t >", "<w:tab>", "&amp;", "&#x4E2D;", "&#0;", "<", ">", "/", "<w:p/>",
            "<?xml version=\"1.0\"?>", "<!-- c -->", "<w:body>",
        ][..]).prop_map(String::from),
        3 => "[\u{4e00}-\u{9fa5}a-z 。]{0,16}",
        1 => (1usize..3000).prop_map(|n| "<w:p>".repeat(n)),
        1 => any::<String>(),
    ]
}

fn check_docx(bytes: Vec<u8>, xml_len: Option<usize>) -> Result<(), TestCaseError> {
    let b = bytes.clone();
    let got = within("docx_to_text", move || docx_to_text(&b));
    outcome("docx", got.as_ref().map(String::len).map_err(String::as_str));
    match got {
        Ok(text) => {
            prop_assert!(!text.trim().is_empty());
            if let Some(len) = xml_len {
                prop_assert!(text.len() <= len, "{} bytes of text from {} of XML", text.len(), len);
            }
        }
        Err(e) => prop_assert!(!e.is_empty()),
    }
    check_load("doc.docx", bytes)
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn fuzz_docx_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048), zip_header in any::<bool>()) {
        let mut bytes = bytes;
        if zip_header {
            bytes.splice(0..0, b"PK\x03\x04".iter().copied());
        }
        check_docx(bytes, None)?;
    }

    #[test]
    fn fuzz_docx_mutated(deflate in any::<bool>(), ms in prop::collection::vec(mutation(ZIP_TOKENS), 1..8)) {
        check_docx(mutate(docx_with(DOCX_XML.as_bytes(), deflate), &ms), None)?;
    }

    #[test]
    fn fuzz_docx_xml(xml in prop::collection::vec(docx_token(), 0..60), deflate in any::<bool>()) {
        let xml = xml.concat();
        check_docx(docx_with(xml.as_bytes(), deflate), Some(xml.len()))?;
    }
}

#[test]
fn docx_base_case_parses() {
    for deflate in [false, true] {
        let text = docx_to_text(&docx_with(DOCX_XML.as_bytes(), deflate)).unwrap();
        assert_eq!(text, "第一条 总则&目的\n第二条\t适用范围\n本办法适用于本市。\n");
    }
}

/// Offsets of the uncompressed-size fields of a one-entry-per-name zip (local header at +22,
/// central directory header at +24) for `name`.
fn zip_size_fields(zip: &[u8], name: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    for i in 0..zip.len().saturating_sub(46) {
        if zip[i..].starts_with(b"PK\x03\x04") && zip[i + 30..].starts_with(name) {
            out.push(i + 22);
        }
        if zip[i..].starts_with(b"PK\x01\x02") && zip[i + 46..].starts_with(name) {
            out.push(i + 24);
        }
    }
    out
}

/// A tiny DOCX whose `word/document.xml` declares 4 GiB uncompressed: refused from the
/// declaration, nothing inflated.
#[test]
fn regression_docx_declared_huge_size_is_refused() {
    let mut zip = docx_with(DOCX_XML.as_bytes(), true);
    let fields = zip_size_fields(&zip, b"word/document.xml");
    assert_eq!(fields.len(), 2, "local and central headers");
    for f in fields {
        zip[f..f + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    }
    let started = Instant::now();
    let err = load(&path("bomb.docx"), &zip).unwrap_err().to_string();
    assert!(err.contains("bomb.docx") && err.contains("over the limit"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A zip bomb: 160 KiB of DOCX whose `word/document.xml` inflates to 160 MiB (its header
/// telling the truth, and lying). Refused after inflating at most [`MAX_DOCX_XML_BYTES`].
#[test]
fn regression_docx_zip_bomb_is_refused() {
    const SIZE: usize = 160 << 20;
    assert!(SIZE as u64 > MAX_DOCX_XML_BYTES);
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(9));
        w.start_file("word/document.xml", opts).unwrap();
        w.write_all(b"<w:document><w:body><w:p><w:r><w:t>").unwrap();
        let block = vec![b'a'; 1 << 20];
        for _ in 0..SIZE >> 20 {
            w.write_all(&block).unwrap();
        }
        w.write_all(b"</w:t></w:r></w:p></w:body></w:document>").unwrap();
        w.finish().unwrap();
    }
    let zip = buf.into_inner();
    assert!(zip.len() < 1 << 20, "the bomb is {} bytes", zip.len());
    let started = Instant::now();
    let err = load(&path("bomb.docx"), &zip).unwrap_err().to_string();
    assert!(err.contains("bomb.docx") && err.contains("over the limit"), "{err}");
    eprintln!("zip bomb ({} bytes) refused in {:?}", zip.len(), started.elapsed());

    // The same bomb declaring a small size: still never inflated past the limit.
    let mut lying = zip.clone();
    for f in zip_size_fields(&lying, b"word/document.xml") {
        lying[f..f + 4].copy_from_slice(&1000u32.to_le_bytes());
    }
    let err = load(&path("bomb.docx"), &lying).unwrap_err().to_string();
    assert!(err.contains("bomb.docx"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// PDF.

const TEXT_OPS: &[u8] = b"BT /F1 12 Tf 72 700 Td (Hello policy 12345) Tj ET";

/// A one-page PDF (Helvetica, so no font program): `content` on the page; `extra` may add
/// objects, page resources and page keys.
fn pdf_with(content: &[u8], compress: bool, extra: impl FnOnce(&mut Document, &mut lopdf::Dictionary, &mut lopdf::Dictionary)) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let mut resources = dictionary! { "Font" => dictionary! { "F1" => font } };
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    let mut page = dictionary! {
        "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    extra(&mut doc, &mut resources, &mut page);
    page.set("Resources", resources);
    let page_id = doc.add_object(page);
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    if compress {
        doc.compress();
    }
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

fn form(doc: &mut Document, id: ObjectId, content: &[u8], resources: Option<lopdf::Dictionary>) {
    let mut dict = dictionary! {
        "Type" => "XObject", "Subtype" => "Form",
        "BBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    if let Some(r) = resources {
        dict.set("Resources", r);
    }
    doc.objects.insert(id, Object::Stream(Stream::new(dict, content.to_vec())));
}

/// The base PDF: text on the page and in a form XObject it draws.
fn base_pdf(compress: bool) -> Vec<u8> {
    let content = [TEXT_OPS, b" /X1 Do".as_slice()].concat();
    pdf_with(&content, compress, |doc, resources, _| {
        let id = doc.new_object_id();
        form(doc, id, b"BT /F1 12 Tf 72 600 Td (Form text 42) Tj ET", None);
        resources.set("XObject", dictionary! { "X1" => id });
    })
}

#[test]
fn pdf_base_case_parses() {
    for compress in [false, true] {
        let text = pdf_to_text(&base_pdf(compress)).unwrap();
        assert!(text.contains("Hello policy 12345") && text.contains("Form text 42"), "{text:?}");
    }
}

const PDF_TOKENS: &[&[u8]] = &[
    b"obj", b"endobj", b" R ", b"<<", b">>", b"[", b"]", b"(", b")", b"stream\n", b"endstream", b"xref", b"trailer",
    b"startxref", b"%%EOF", b"999999999", b"-1", b"0 0 R", b"1 0 R", b"/Length 999999", b"/Filter /FlateDecode",
    b"/Type /Page", b"/Parent 1 0 R", b"/Kids [1 0 R 1 0 R]", b"/XObject", b"/Do", b"Tj", b"BT", b"ET", b"/Font",
    b"/ToUnicode", b"/Encoding /Identity-H", b"/Subtype /Type0", b"/ObjStm", b"/Prev 0", b"\\", b"\x00",
];

fn content_op() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&[
            "BT", "ET", "/F1 12 Tf", "/F9 12 Tf", "/F1 0 Tf", "/F1 -5 Tf", "(text 12345) Tj", "[(a) -200 (b)] TJ",
            "72 700 Td", "q", "Q", "1 0 0 1 0 0 cm", "0 0 0 rg", "T*", "(x) '", "1 2 (y) \"", "1e308 0 Td",
            "0 0 0 0 0 0 Tm", "/GS1 gs", "/Im1 Do", "/F1 Do", "(unclosed Tj", "<4E2D> Tj", "10 TL", "2 Tz",
            "0 0 m 10 10 l S", "BI /W 1 /H 1 ID x EI", "/P <</MCID 0>> BDC", "EMC", "[] 0 d",
        ][..]).prop_map(String::from),
        1 => "[ -~]{0,20}",
    ]
}

/// A page drawing forms that draw forms (any graph, cycles included), with random operations.
#[derive(Debug, Clone)]
struct FormGraph {
    page_ops: Vec<String>,
    page_draws: Vec<usize>,
    /// Per form: operations, forms drawn, own resources?
    forms: Vec<(Vec<String>, Vec<usize>, bool)>,
}

fn form_graph() -> impl Strategy<Value = FormGraph> {
    (
        prop::collection::vec(content_op(), 0..12),
        prop::collection::vec(0usize..6, 0..4),
        prop::collection::vec(
            (prop::collection::vec(content_op(), 0..8), prop::collection::vec(0usize..6, 0..4), any::<bool>()),
            0..5,
        ),
    )
        .prop_map(|(page_ops, page_draws, forms)| FormGraph { page_ops, page_draws, forms })
}

fn graph_pdf(g: &FormGraph, compress: bool) -> Vec<u8> {
    let draws = |ops: &[String], targets: &[usize]| {
        let mut s = ops.join(" ");
        for t in targets {
            s.push_str(&format!(" /X{t} Do"));
        }
        s.into_bytes()
    };
    pdf_with(&draws(&g.page_ops, &g.page_draws), compress, |doc, resources, _| {
        let ids: Vec<ObjectId> = g.forms.iter().map(|_| doc.new_object_id()).collect();
        let xobjects = || {
            let mut d = lopdf::Dictionary::new();
            for (i, id) in ids.iter().enumerate() {
                d.set(format!("X{i}"), *id);
            }
            d
        };
        let font = resources.get(b"Font").unwrap().clone();
        for (i, (ops, targets, own)) in g.forms.iter().enumerate() {
            let own = own.then(|| dictionary! { "XObject" => xobjects(), "Font" => font.clone() });
            form(doc, ids[i], &draws(ops, targets), own);
        }
        resources.set("XObject", xobjects());
    })
}

fn check_pdf(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let b = bytes.clone();
    let got = within("pdf_to_text", move || pdf_to_text(&b));
    outcome("pdf", got.as_ref().map(String::len).map_err(String::as_str));
    match got {
        Ok(text) => prop_assert!(text.chars().any(char::is_alphanumeric), "{:?}", text),
        Err(e) => prop_assert!(!e.is_empty()),
    }
    check_load("doc.pdf", bytes)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_pdf_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut pdf = b"%PDF-1.5\n".to_vec();
        pdf.extend_from_slice(&bytes);
        check_pdf(pdf)?;
    }

    #[test]
    fn fuzz_pdf_mutated(compress in any::<bool>(), objects_only in any::<bool>(), ms in prop::collection::vec(mutation(PDF_TOKENS), 1..8)) {
        let pdf = base_pdf(compress);
        if objects_only {
            // Between the header and the cross-reference table, keeping the length (so the
            // table's offsets stay right and the mutated objects are parsed).
            let ms: Vec<Mutation> = ms.into_iter().filter(|m| matches!(m, Mutation::Flip(..) | Mutation::Overwrite(..) | Mutation::Splice(..))).collect();
            let xref = pdf.windows(5).rposition(|w| w == b"\nxref").or_else(|| pdf.windows(9).rposition(|w| w == b"startxref"));
            let xref = xref.unwrap_or(pdf.len());
            check_pdf(mutate_within(pdf, 9..xref, &ms))?;
        } else {
            check_pdf(mutate(pdf, &ms))?;
        }
    }

    #[test]
    fn fuzz_pdf_content_and_forms(g in form_graph(), compress in any::<bool>(), ms in prop::collection::vec(mutation(PDF_TOKENS), 0..3)) {
        check_pdf(mutate(graph_pdf(&g, compress), &ms))?;
    }
}

// ---------------------------------------------------------------------------------------------
// FAQ JSONL.

fn json_string() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[\u{4e00}-\u{9fa5}a-z0-9 ？。]{1,20}",
        1 => Just(String::new()),
        1 => Just("   ".to_string()),
        1 => any::<String>(),
        1 => (1usize..50_000).prop_map(|n| "问".repeat(n)),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    prop_oneof![
        4 => json_string().prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => prop::collection::vec(json_string(), 0..3).prop_map(|v| json!(v)),
        1 => Just(json!({"nested": {"a": [1, 2]}})),
    ]
}

fn faq_line() -> impl Strategy<Value = Vec<u8>> {
    let field = prop::sample::select(&["id", "question", "answer", "department", "region", "category", "extra", "问题"][..]);
    prop_oneof![
        6 => prop::collection::vec((field, json_value()), 0..7).prop_map(|kv| {
            let map: serde_json::Map<String, serde_json::Value> = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            serde_json::to_vec(&map).unwrap()
        }),
        4 => (json_string(), json_string()).prop_map(|(q, a)| serde_json::to_vec(&serde_json::json!({"question": q, "answer": a})).unwrap()),
        1 => prop::sample::select(&[
            "", "   ", "{}", "[]", "null", "\"question\"", "{\"question\":", "{\"question\":\"q\",\"answer\":\"a\"",
            "{\"question\":\"q\",\"answer\":\"a\"}}", "\u{feff}{\"question\":\"q\",\"answer\":\"a\"}",
            "{\"question\":\"q\",\"question\":\"r\",\"answer\":\"a\"}", "{\"question\":\"\\ud800\",\"answer\":\"a\"}",
        ][..]).prop_map(|s| s.as_bytes().to_vec()),
        // Nesting deeper than serde_json's recursion limit.
        1 => (1usize..20_000).prop_map(|n| format!("{{\"question\":\"q\",\"answer\":\"a\",\"x\":{}{}}}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ]
}

fn faq_file() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(faq_line(), 0..12),
        prop::sample::select(&["\n", "\r\n", "\n\n"][..]),
        // Now and then a line of random bytes (invalid UTF-8, mostly).
        prop::option::weighted(0.1, (any::<usize>(), prop::collection::vec(any::<u8>(), 0..64))),
    )
        .prop_map(|(mut lines, sep, junk)| {
            if let Some((at, bytes)) = junk {
                lines.insert(at % (lines.len() + 1), bytes);
            }
            lines.join(sep.as_bytes())
        })
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn fuzz_faq_jsonl(bytes in faq_file()) {
        let lines = String::from_utf8_lossy(&bytes).lines().filter(|l| !l.trim().is_empty()).count();
        let b = bytes.clone();
        let got = within("faq.jsonl", move || load(&path("faq.jsonl"), &b).map_err(|e| e.to_string()));
        outcome("faq", got.as_ref().map(|_| 0).map_err(String::as_str));
        match got {
            Ok(Loaded::Faq(entries)) => prop_assert!(entries.len() <= lines),
            Ok(Loaded::Document { .. }) => prop_assert!(false, "a .jsonl file is a FAQ"),
            Err(e) => {
                prop_assert!(e.contains("faq.jsonl"), "{}", e);
                prop_assert!(e.contains("line ") || e.contains("no FAQ entries") || e.contains("not UTF-8"), "{}", e);
            }
        }
        check_load("faq.jsonl", bytes)?;
    }

    #[test]
    fn fuzz_any_format_random_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        ext in prop::sample::select(&["md", "markdown", "txt", "html", "htm", "docx", "pdf", "jsonl", "rtf", ""][..]),
    ) {
        let name: &'static str = Box::leak(format!("f.{ext}").into_boxed_str());
        check_load(name, bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Regression cases: inputs that crashed, hung or blew up before the fixes, written out.

/// `&` after `&` made `decode_entities` search the whole rest of the text for `;` each time:
/// quadratic (a megabyte of `&` took minutes).
#[test]
fn regression_html_run_of_ampersands_is_linear() {
    let html = format!("<p>{}</p>", "&".repeat(1 << 20));
    let started = Instant::now();
    let (_, body) = html_to_text(&html);
    assert_eq!(body.len(), 1 << 20);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let Loaded::Document { body, .. } = load(&path("amp.html"), html.as_bytes()).unwrap() else { panic!() };
    assert_eq!(body.len(), 1 << 20);
}

/// A `<` that starts no tag (`收入<5000元`) swallowed the text up to the next `>`.
#[test]
fn regression_html_less_than_is_text() {
    let (_, body) = html_to_text("<p>月收入<5000元的家庭</p><p>a < b 且 c<=d</p>");
    assert_eq!(body, "月收入<5000元的家庭\na < b 且 c<=d");
    // A `>` inside a comment or a script does not end it.
    let (_, body) = html_to_text("<p>甲</p><!-- a > b --><script>if (a<b && c>d) x();</script><p>乙</p>");
    assert_eq!(body, "甲\n乙");
}

/// A Markdown heading of a megabyte was copied into the section of every chunk under it,
/// and a `第…条` with a million numerals into the label of every paragraph of the article:
/// memory quadratic in the input.
#[test]
fn regression_chunker_huge_labels_stay_bounded() {
    let cfg = ChunkerConfig::default();
    let mut text = format!("# {}\n", "标".repeat(200_000));
    for _ in 0..2_000 {
        text.push_str("一句话。\n");
    }
    let chunks = chunk(&text, &cfg);
    check_chunks(&text, &cfg, &chunks).unwrap();
    assert!(chunks.iter().all(|c| c.section.iter().all(|s| s.chars().count() <= MAX_HEADING_CHARS)));

    let text = format!("第{}条 正文。\n{}", "一".repeat(200_000), "另一款。\n".repeat(2_000));
    let chunks = chunk(&text, &cfg);
    check_chunks(&text, &cfg, &chunks).unwrap();
}

/// Two headings with the same label: the section path did not change, so a chunk ran across
/// the second heading (its `#` line inside the chunk text).
#[test]
fn regression_chunker_same_heading_twice_is_two_sections() {
    let text = "# 办理条件\n在本市居住半年以上。\n# 办理条件\n持有居住证。\n";
    let cfg = ChunkerConfig::default();
    let chunks = chunk(text, &cfg);
    check_chunks(text, &cfg, &chunks).unwrap();
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["在本市居住半年以上。", "持有居住证。"]);
}

/// Short sentences before a sentence too long to join them: each next chunk started inside
/// the overlap and could take nothing new, so it ended where the one before ended, a suffix of
/// it, again and again (max 10 000, overlap 5 000: millions of duplicated characters).
#[test]
fn regression_chunker_overlap_never_repeats_a_chunk() {
    let cfg = ChunkerConfig { max_chars: 100, overlap_chars: 50, min_chars: 0 };
    let text = format!("{}{}", "短句。".repeat(20), "长".repeat(100));
    let chunks = chunk(&text, &cfg);
    check_chunks(&text, &cfg, &chunks).unwrap();
    assert_eq!(chunks.len(), 2, "{chunks:#?}");
}

/// A sentence of spaces cut hard at the budget made chunks of whitespace only.
#[test]
fn regression_chunker_no_blank_chunks() {
    let cfg = ChunkerConfig { max_chars: 20, overlap_chars: 0, min_chars: 0 };
    let text = format!("甲{}乙", " ".repeat(100));
    let chunks = chunk(&text, &cfg);
    check_chunks(&text, &cfg, &chunks).unwrap();
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["甲", "乙"]);
}

/// `min_chars` larger than the budget merged every chunk into the one before: chunks of any size.
#[test]
fn regression_chunker_min_chars_is_capped() {
    let cfg = ChunkerConfig { max_chars: 20, overlap_chars: 0, min_chars: 10_000 };
    let text = "一句话说完了。".repeat(100);
    let chunks = chunk(&text, &cfg);
    check_chunks(&text, &cfg, &chunks).unwrap();
    assert!(chunks.len() > 10);
}

/// A FAQ file saved with a byte order mark failed on line 1.
#[test]
fn regression_faq_with_byte_order_mark() {
    let text = "\u{feff}{\"question\":\"社保卡丢了怎么办？\",\"answer\":\"先挂失再补办。\"}\n";
    let Loaded::Faq(v) = load(&path("faq.jsonl"), text.as_bytes()).unwrap() else { panic!() };
    assert_eq!(v.len(), 1);
}

fn assert_pdf_refused(pdf: &[u8], needle: &str) {
    let b = pdf.to_vec();
    let started = Instant::now();
    let err = within("pdf", move || load(&path("bad.pdf"), &b)).unwrap_err().to_string();
    assert!(err.contains("bad.pdf") && err.contains(needle), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

/// A form XObject that draws itself (it has no resources, so it draws with the page's, where
/// `/X1` is itself): pdf-extract recursed until the stack overflowed, aborting the process.
#[test]
fn regression_pdf_form_drawing_itself() {
    let pdf = pdf_with(b"/X1 Do", false, |doc, resources, _| {
        let id = doc.new_object_id();
        form(doc, id, b"/X1 Do", None);
        resources.set("XObject", dictionary! { "X1" => id });
    });
    assert_pdf_refused(&pdf, "draws itself");
    // Through another form, with their own resources.
    let pdf = pdf_with(b"/A Do", false, |doc, resources, _| {
        let (a, b) = (doc.new_object_id(), doc.new_object_id());
        form(doc, a, b"/B Do", Some(dictionary! { "XObject" => dictionary! { "B" => b } }));
        form(doc, b, b"/A Do", Some(dictionary! { "XObject" => dictionary! { "A" => a } }));
        resources.set("XObject", dictionary! { "A" => a });
    });
    assert_pdf_refused(&pdf, "draws itself");
}

/// Forms drawing the next form 20 times, 8 deep: 20^8 draws of the text, pdf-extract busy
/// for days (it ran past the 20 s limit).
#[test]
fn regression_pdf_form_bomb() {
    let pdf = pdf_with(b"/X0 Do", true, |doc, resources, _| {
        let font = resources.get(b"Font").unwrap().clone();
        let ids: Vec<ObjectId> = (0..9).map(|_| doc.new_object_id()).collect();
        for i in 0..9 {
            let (content, res) = if i < 8 {
                let name = format!("X{}", i + 1);
                let res = dictionary! { "XObject" => dictionary! { name.clone() => ids[i + 1] }, "Font" => font.clone() };
                (format!("/{name} Do ").repeat(20).into_bytes(), res)
            } else {
                (TEXT_OPS.to_vec(), dictionary! { "Font" => font.clone() })
            };
            form(doc, ids[i], &content, Some(res));
        }
        resources.set("XObject", dictionary! { "X0" => ids[0] });
    });
    assert_pdf_refused(&pdf, "drawing operations");
}

/// A chain of 40 forms, each drawing the next once: over the limit (pdf-extract recurses once
/// per form; a chain of thousands would overflow the stack).
#[test]
fn regression_pdf_forms_nested_too_deep() {
    let pdf = pdf_with(b"/X0 Do", false, |doc, resources, _| {
        let font = resources.get(b"Font").unwrap().clone();
        let ids: Vec<ObjectId> = (0..40).map(|_| doc.new_object_id()).collect();
        for i in 0..40 {
            let mut res = dictionary! { "Font" => font.clone() };
            let content = match ids.get(i + 1) {
                Some(next) => {
                    res.set("XObject", dictionary! { format!("X{}", i + 1) => *next });
                    format!("/X{} Do", i + 1).into_bytes()
                }
                None => TEXT_OPS.to_vec(),
            };
            form(doc, ids[i], &content, Some(res));
        }
        resources.set("XObject", dictionary! { "X0" => ids[0] });
    });
    assert_pdf_refused(&pdf, "nested more than");
}

/// A page whose `/Parent` is itself and that has no `/Resources` or `/MediaBox`: pdf-extract
/// looked for them up the `/Parent` chain, recursing until the stack overflowed.
#[test]
fn regression_pdf_parent_loop() {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let page_id = doc.new_object_id();
    let content_id = doc.add_object(Stream::new(dictionary! {}, TEXT_OPS.to_vec()));
    doc.objects.insert(page_id, Object::Dictionary(dictionary! { "Type" => "Page", "Parent" => page_id, "Contents" => content_id }));
    doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1 }));
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut pdf = Vec::new();
    doc.save_to(&mut pdf).unwrap();
    assert_pdf_refused(&pdf, "/Parent chain");
}

/// A Type0 font whose ToUnicode CMap is given by `cmap`.
fn pdf_with_to_unicode(cmap: &[u8]) -> Vec<u8> {
    pdf_with(b"BT /F2 12 Tf 72 700 Td <0001> Tj ET", false, |doc, resources, _| {
        let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap.to_vec()));
        let descriptor = doc.add_object(dictionary! { "Type" => "FontDescriptor", "FontName" => "SimSun", "Flags" => 4 });
        let cid_font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "SimSun", "FontDescriptor" => descriptor,
            "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Identity"), "Supplement" => 0 },
        });
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "SimSun", "Encoding" => "Identity-H",
            "DescendantFonts" => vec![cid_font.into()], "ToUnicode" => to_unicode,
        });
        let mut fonts = resources.get(b"Font").unwrap().as_dict().unwrap().clone();
        fonts.set("F2", font);
        resources.set("Font", fonts);
    })
}

/// A ToUnicode range over all four-byte codes: pdf-extract's CMap parser inserted four billion
/// map entries (hours, and some hundred GB).
#[test]
fn regression_pdf_cmap_range_of_four_billion_codes() {
    let cmap = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n1 begincodespacerange <0000> <FFFF> endcodespacerange\n1 beginbfrange\n<00000000> <FFFFFFFF> <00000041>\nendbfrange\nendcmap end end\n";
    assert_pdf_refused(&pdf_with_to_unicode(cmap), "codes");
    // A normal one still reads.
    let ok = b"begincmap\n1 begincodespacerange <0000> <FFFF> endcodespacerange\n1 beginbfrange\n<0001> <0005> <4E2D>\nendbfrange\nendcmap\n";
    let text = pdf_to_text(&pdf_with_to_unicode(ok)).unwrap();
    assert!(text.contains('中'), "{text:?}");
}

/// A ToUnicode CMap of 100 000 nested `[`: pdf-extract's recursive-descent CMap parser
/// overflowed the stack.
#[test]
fn regression_pdf_cmap_nested_too_deep() {
    let cmap = [b"begincmap\n".as_slice(), &b"[".repeat(100_000), b"\nendcmap\n"].concat();
    assert_pdf_refused(&pdf_with_to_unicode(&cmap), "nests");
}

/// A content stream compressed with deflate (padded so that lopdf compresses it).
fn compressed_text_stream() -> Stream {
    let mut s = Stream::new(dictionary! {}, [TEXT_OPS, &[b' '; 4000]].concat());
    s.compress().unwrap();
    assert!(s.dict.get(b"Filter").is_ok());
    s
}

/// A content stream declared inside two FlateDecode filters: up to a million times its size
/// when inflated (a 4 KiB stream, 4 GiB). Refused from the declaration.
#[test]
fn regression_pdf_stacked_compression_is_refused() {
    let mut twice = compressed_text_stream();
    twice.dict.set("Filter", vec![Object::Name(b"FlateDecode".to_vec()), Object::Name(b"FlateDecode".to_vec())]);
    let pdf = pdf_with(b"", false, |doc, _, page| {
        let id = doc.add_object(twice);
        page.set("Contents", id);
    });
    assert_pdf_refused(&pdf, "compression filters stacked");
}

/// A predictor row of 16 GB: lopdf allocated (and zeroed) it before reading any data.
#[test]
fn regression_pdf_huge_predictor_row_is_refused() {
    let mut s = compressed_text_stream();
    s.dict.set("DecodeParms", dictionary! { "Predictor" => 12, "Columns" => 4_000_000_000i64, "Colors" => 4 });
    let pdf = pdf_with(b"", false, |doc, _, page| {
        let id = doc.add_object(s);
        page.set("Contents", id);
    });
    assert_pdf_refused(&pdf, "predictor row");
}
