//! Documents and FAQ entries: reading files into text plus metadata.
//!
//! Supported: Markdown (`.md`), plain text (`.txt`), HTML (`.html`/`.htm`, tags stripped, headings
//! kept as Markdown headings), DOCX (`.docx`, paragraphs of `word/document.xml`), PDF (`.pdf`, its text layer), FAQ files
//! (`.jsonl` with one `{"question", "answer", "department", "region", ...}` per line).
//!
//! Metadata comes from front matter at the top of Markdown/TXT files:
//!
//! ```text
//! ---
//! title: 居住证办理指南
//! 发文机关: 某市公安局          (or agency)
//! 文号: 某公通〔2024〕5号        (or doc_number)
//! region: 某市                  (or 地区)
//! effective: 2024-01-01         (or 生效日期)
//! expiry: 2028-12-31            (or 失效日期)
//! category: 户籍               (or 分类)
//! source: https://example.gov.cn/...   (or url / source_url)
//! ---
//! ```
//!
//! or from a sidecar file `NAME.meta` (same `key: value` lines) for formats without front matter.
//!
//! Any bytes are accepted by [`load`]: a corrupt or hostile file is an [`Error::Document`] naming
//! it, never a panic, a hang or unbounded memory. Compressed parts are read within limits
//! ([`MAX_DOCX_XML_BYTES`], the `MAX_PDF_*` limits);
//! the parsers are fuzzed by `rag/tests/fuzz_parsers.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Metadata of a document (all optional but the title, which falls back to the file name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocMeta {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
}

/// One FAQ entry, answered verbatim when a question matches it closely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaqEntry {
    #[serde(default)]
    pub id: Option<String>,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
}

/// What a file turned into.
#[derive(Debug, Clone)]
pub enum Loaded {
    Document { meta: DocMeta, body: String },
    Faq(Vec<FaqEntry>),
}

/// File extensions the loader understands.
pub const SUPPORTED: &[&str] = &["md", "markdown", "txt", "html", "htm", "docx", "pdf", "jsonl"];

/// Hex SHA-256 of bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parse `YYYY-MM-DD` (also `YYYY/MM/DD`, `YYYY年M月D日`).
pub fn parse_date(s: &str) -> Result<NaiveDate> {
    let t = s.trim();
    let norm: String = t
        .replace(['年', '月'], "-")
        .replace('日', "")
        .replace(['/', '.'], "-");
    NaiveDate::parse_from_str(&norm, "%Y-%m-%d").map_err(|_| Error::invalid(format!("bad date `{t}` (use YYYY-MM-DD)")))
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\'', '“'] {
        let close = if q == '“' { '”' } else { q };
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(close) {
            return &v[q.len_utf8()..v.len() - close.len_utf8()];
        }
    }
    v
}

/// Apply `key: value` lines to `meta`. Unknown keys are an error (a typo must not silently
/// drop a filter field).
fn apply_meta_lines(meta: &mut DocMeta, text: &str, path: &Path) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':').or_else(|| line.split_once('：')) else {
            return Err(Error::document(path, format!("front matter line {}: expected `key: value`, got `{line}`", n + 1)));
        };
        let v = unquote(v).to_string();
        let opt = |v: String| if v.is_empty() { None } else { Some(v) };
        let date = |v: &str| -> Result<Option<NaiveDate>> {
            if v.is_empty() {
                Ok(None)
            } else {
                parse_date(v).map(Some).map_err(|e| Error::document(path, format!("front matter `{}`: {e}", k.trim())))
            }
        };
        match k.trim() {
            "title" | "标题" => meta.title = v,
            "agency" | "发文机关" | "issuer" => meta.agency = opt(v),
            "doc_number" | "文号" | "number" => meta.doc_number = opt(v),
            "region" | "地区" | "区域" => meta.region = opt(v),
            "effective" | "生效日期" | "effective_date" => meta.effective = date(&v)?,
            "expiry" | "失效日期" | "expiry_date" | "expires" => meta.expiry = date(&v)?,
            "category" | "分类" => meta.category = opt(v),
            "source" | "url" | "source_url" | "来源" => meta.source_url = opt(v),
            other => {
                return Err(Error::document(path, format!("front matter: unknown key `{other}`")));
            }
        }
    }
    if let (Some(a), Some(b)) = (meta.effective, meta.expiry) {
        if b < a {
            return Err(Error::document(path, format!("expiry {b} is before effective {a}")));
        }
    }
    Ok(())
}

/// Split `---\n...\n---\n` front matter off `text`.
fn split_front_matter(text: &str) -> Option<(&str, &str)> {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rest = t.strip_prefix("---\n").or_else(|| t.strip_prefix("---\r\n"))?;
    let mut pos = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Some((&rest[..pos], &rest[pos + line.len()..]));
        }
        pos += line.len();
    }
    None
}

/// Read one file. `bytes` are its contents (already read, so the caller can hash them).
pub fn load(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("untitled").to_string();
    let utf8 = || -> Result<&str> {
        std::str::from_utf8(bytes).map_err(|e| Error::document(path, format!("not UTF-8 text ({e})")))
    };
    let mut meta = DocMeta::default();
    let body = match ext.as_str() {
        "md" | "markdown" | "txt" => {
            let text = utf8()?;
            match split_front_matter(text) {
                Some((fm, body)) => {
                    apply_meta_lines(&mut meta, fm, path)?;
                    body.to_string()
                }
                None => text.strip_prefix('\u{feff}').unwrap_or(text).to_string(),
            }
        }
        "html" | "htm" => {
            let (title, body) = html_to_text(utf8()?);
            if let Some(t) = title {
                meta.title = t;
            }
            body
        }
        "docx" => docx_to_text(bytes).map_err(|e| Error::document(path, e))?,
        "pdf" => pdf_to_text(bytes).map_err(|e| Error::document(path, e))?,
        "jsonl" => return load_faq(path, utf8()?).map(Loaded::Faq),
        "" => return Err(Error::document(path, "no file extension; supported: .md .txt .html .docx .pdf .jsonl")),
        other => {
            return Err(Error::document(
                path,
                format!("unsupported file type .{other} (supported: {})", SUPPORTED.join(", ")),
            ))
        }
    };
    // Sidecar metadata overrides what the file itself said.
    let sidecar = path.with_file_name(format!("{}.meta", path.file_name().and_then(|n| n.to_str()).unwrap_or("")));
    if sidecar.is_file() {
        let text = fs_err::read_to_string(&sidecar)?;
        apply_meta_lines(&mut meta, &text, &sidecar)?;
    }
    if meta.title.trim().is_empty() {
        meta.title = first_heading(&body).unwrap_or(stem);
    }
    if body.trim().is_empty() {
        return Err(Error::document(path, "no text in the document"));
    }
    Ok(Loaded::Document { meta, body })
}

fn first_heading(body: &str) -> Option<String> {
    body.lines().find_map(|l| l.strip_prefix("# ").map(|t| t.trim().to_string()))
}

fn load_faq(path: &Path, text: &str) -> Result<Vec<FaqEntry>> {
    // Editors on Windows start UTF-8 files with a byte order mark; JSON does not allow one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: FaqEntry = serde_json::from_str(line)
            .map_err(|err| Error::document(path, format!("line {}: not a FAQ entry ({err})", n + 1)))?;
        if e.question.trim().is_empty() || e.answer.trim().is_empty() {
            return Err(Error::document(path, format!("line {}: empty question or answer", n + 1)));
        }
        out.push(e);
    }
    if out.is_empty() {
        return Err(Error::document(path, "no FAQ entries"));
    }
    Ok(out)
}

/// Decode the few HTML entities policy pages use.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        // An entity is at most 10 bytes: look no further (searching the whole tail for `;`
        // at every `&` made a long run of `&` quadratic).
        let end = tail.as_bytes().iter().take(11).position(|&b| b == b';');
        let (rep, used) = match end.map(|e| &tail[1..e]) {
            Some("nbsp") => (Some(' '), end),
            Some("lt") => (Some('<'), end),
            Some("gt") => (Some('>'), end),
            Some("amp") => (Some('&'), end),
            Some("quot") => (Some('"'), end),
            Some("apos") | Some("#39") => (Some('\''), end),
            Some("ldquo") => (Some('“'), end),
            Some("rdquo") => (Some('”'), end),
            Some(code) if code.starts_with('#') => {
                let n = code.strip_prefix("#x").or_else(|| code.strip_prefix("#X"));
                let v = match n {
                    Some(hex) => u32::from_str_radix(hex, 16).ok(),
                    None => code[1..].parse().ok(),
                };
                (v.and_then(char::from_u32), end)
            }
            _ => (None, None),
        };
        match (rep, used) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Strip tags; block elements end lines; `<h1>`..`<h6>` become Markdown headings; script/style
/// dropped. Returns (the `<title>`, text).
pub fn html_to_text(html: &str) -> (Option<String>, String) {
    let mut out = String::new();
    let mut title = None;
    let mut rest = html;
    let mut skip_until: Option<&str> = None;
    let mut in_title = false;
    let mut title_buf = String::new();
    while !rest.is_empty() {
        if let Some(end) = skip_until {
            // Script/style text runs to its end tag, whatever `<` and `>` it contains.
            let close = rest.match_indices("</").map(|(i, _)| i).find(|&i| {
                rest.as_bytes()[i + 2..].get(..end.len()).is_some_and(|b| b.eq_ignore_ascii_case(end.as_bytes()))
            });
            let Some(i) = close else { break };
            let after = &rest[i..];
            rest = after.find('>').map_or("", |g| &after[g + 1..]);
            skip_until = None;
            continue;
        }
        let Some(lt) = rest.find('<') else {
            out.push_str(&decode_entities(rest));
            break;
        };
        let text = &rest[..lt];
        if in_title {
            title_buf.push_str(text);
        } else {
            out.push_str(&decode_entities(&text.replace(['\n', '\r'], " ")));
        }
        let after = &rest[lt..];
        // `<` not followed by a letter, `/`, `!` or `?` is text (`收入 < 5000 元`), not a tag.
        if !after[1..].starts_with(|c: char| c.is_ascii_alphabetic() || matches!(c, '/' | '!' | '?')) {
            if in_title {
                title_buf.push('<');
            } else {
                out.push('<');
            }
            rest = &after[1..];
            continue;
        }
        // A comment runs to `-->` (it may contain `>`); an unclosed one to the end.
        if let Some(comment) = after.strip_prefix("<!--") {
            rest = comment.find("-->").map_or("", |e| &comment[e + 3..]);
            continue;
        }
        let Some(gt) = after.find('>') else { break };
        let tag = after[1..gt].trim();
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match name.as_str() {
            "script" | "style" | "noscript" if !closing => {
                skip_until = Some(match name.as_str() {
                    "script" => "script",
                    "style" => "style",
                    _ => "noscript",
                })
            }
            "title" => {
                in_title = !closing;
                if closing {
                    let t = decode_entities(title_buf.trim());
                    if !t.is_empty() {
                        title = Some(t);
                    }
                }
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                out.push('\n');
                if !closing {
                    let level = name[1..].parse::<usize>().unwrap_or(1);
                    out.push_str(&"#".repeat(level));
                    out.push(' ');
                }
            }
            "li" if !closing => out.push_str("\n- "),
            "p" | "div" | "br" | "tr" | "li" | "ul" | "ol" | "table" | "section" | "article" | "blockquote" => {
                out.push('\n')
            }
            "td" | "th" => out.push(' '),
            _ => {}
        }
    }
    // Tidy: trimmed, non-empty lines (each is a paragraph, heading or list item).
    let tidy: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    (title, tidy.join("\n"))
}

/// The deepest nesting of form XObjects (a form drawn by a form drawn by ...) in a PDF.
/// pdf-extract recurses once per level, so a form that draws itself would overflow the stack
/// and abort the process; real documents nest a few levels.
pub const MAX_PDF_FORM_DEPTH: usize = 16;

/// The most content-stream operations one PDF may make pdf-extract run, a form XObject counted
/// each time it is drawn (a form drawn 1000 times by a form drawn 1000 times ... would keep it
/// busy for hours). A text PDF of 500 pages runs a few million.
pub const MAX_PDF_OPERATIONS: u64 = 20_000_000;

/// The longest `/Parent` chain followed up from a page for inherited `/Resources` and
/// `/MediaBox` (pdf-extract follows it recursively: a loop would overflow the stack). The same
/// as lopdf's page tree depth limit.
pub const MAX_PDF_TREE_DEPTH: usize = 256;

/// The most bytes of decoded content streams one PDF may make pdf-extract run (a form counted
/// each time it is drawn): 256 MiB. A text PDF of 500 pages has some tens of MiB.
pub const MAX_PDF_CONTENT_BYTES: u64 = 256 << 20;

/// The longest PNG-predictor row a stream may declare (`/DecodeParms` `/Columns` × `/Colors` ×
/// `/BitsPerComponent`): lopdf allocates a row before reading any data. 1 MiB is a row of an
/// image 87,000 pixels wide in 16-bit RGB.
pub const MAX_PDF_ROW_BYTES: u64 = 1 << 20;

/// The deepest nesting (`[`, `{`, `(`, `<<`) in a font's CMap or Type 1 program: pdf-extract
/// parses them by recursive descent, so a deep one would overflow the stack. Real ones nest 2–3.
pub const MAX_PDF_NESTING: usize = 64;

/// The most codes the `beginbfrange` ranges of one CMap may map: pdf-extract fills a map entry
/// per code (`<00000000> <FFFFFFFF>` would be four billion). Real ones map at most 65,536.
pub const MAX_PDF_CMAP_CODES: u64 = 1 << 20;

/// Text of a PDF's text layer (`pdf-extract`), pages separated by a blank line. Lines are kept;
/// the spaces PDF layout puts between CJK characters are dropped. A PDF without a text layer
/// (a scan) or with fonts the extractor cannot map to Unicode is an error, never empty text.
/// Structures that would make the extractor recurse without end, run for hours or allocate
/// without bound (see the `MAX_PDF_*` limits) are refused first.
pub fn pdf_to_text(bytes: &[u8]) -> std::result::Result<String, String> {
    if !bytes.starts_with(b"%PDF-") {
        return Err("not a PDF file (no %PDF- header)".into());
    }
    // pdf-extract panics on some fonts, encodings and malformed objects: turn that into an
    // error for this one file instead of taking the ingest (or the server) down.
    let pages = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pdf_pages(bytes))).map_err(|p| {
        let why = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("unknown reason");
        format!("PDF text could not be extracted (malformed PDF, or a font or encoding not supported: {why})")
    })??;
    let mut out = String::new();
    for page in pages {
        let mut page_text = String::new();
        for line in page.lines() {
            let line = tidy_pdf_line(line);
            if !line.is_empty() {
                page_text.push_str(&line);
                page_text.push('\n');
            }
        }
        if !page_text.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&page_text);
        }
    }
    if out.chars().filter(|c| c.is_alphanumeric()).count() == 0 {
        return Err("the PDF has no text layer (a scanned document needs OCR first)".into());
    }
    if out.contains('\u{fffd}') && out.chars().filter(|&c| c == '\u{fffd}').count() * 4 > out.chars().count() {
        return Err("the PDF's fonts do not map to Unicode (text would be garbage)".into());
    }
    Ok(out)
}

/// The raw text of each page: the document is loaded once, checked by [`PdfGuard`], then run
/// through pdf-extract with the page ends recorded (asking pdf-extract page by page would walk
/// the page tree once per page: quadratic in the page count).
fn pdf_pages(bytes: &[u8]) -> std::result::Result<Vec<String>, String> {
    use pdf_extract::{Document, OutputDev, OutputError, PlainTextOutput};

    let mut doc = Document::load_mem(bytes).map_err(|e| format!("not a readable PDF: {e}"))?;
    if doc.is_encrypted() {
        // Documents encrypted with an empty user password open like pdf-extract opens them.
        doc.decrypt("").map_err(|e| format!("the PDF is encrypted ({e})"))?;
    }
    PdfGuard::check(&doc)?;

    /// A `std::io::Write` into a buffer that the page recorder reads too.
    struct Sink(Rc<RefCell<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    /// pdf-extract's plain text output, noting where each page ends.
    struct Pages<'a> {
        text: PlainTextOutput<&'a mut dyn std::io::Write>,
        buf: Rc<RefCell<Vec<u8>>>,
        ends: Vec<usize>,
    }
    impl OutputDev for Pages<'_> {
        fn begin_page(
            &mut self,
            n: u32,
            media_box: &pdf_extract::MediaBox,
            art_box: Option<(f64, f64, f64, f64)>,
        ) -> std::result::Result<(), OutputError> {
            self.text.begin_page(n, media_box, art_box)
        }
        fn end_page(&mut self) -> std::result::Result<(), OutputError> {
            self.text.end_page()?;
            self.ends.push(self.buf.borrow().len());
            Ok(())
        }
        fn output_character(
            &mut self,
            trm: &pdf_extract::Transform,
            width: f64,
            spacing: f64,
            font_size: f64,
            c: &str,
        ) -> std::result::Result<(), OutputError> {
            self.text.output_character(trm, width, spacing, font_size, c)
        }
        fn begin_word(&mut self) -> std::result::Result<(), OutputError> {
            self.text.begin_word()
        }
        fn end_word(&mut self) -> std::result::Result<(), OutputError> {
            self.text.end_word()
        }
        fn end_line(&mut self) -> std::result::Result<(), OutputError> {
            self.text.end_line()
        }
    }

    let buf = Rc::new(RefCell::new(Vec::new()));
    let mut sink = Sink(buf.clone());
    let mut out = Pages { text: PlainTextOutput::new(&mut sink as &mut dyn std::io::Write), buf: buf.clone(), ends: Vec::new() };
    let done = pdf_extract::output_doc(&doc, &mut out);
    let ends = std::mem::take(&mut out.ends);
    drop(out);
    done.map_err(|e| format!("PDF text could not be extracted from page {}: {e}", ends.len() + 1))?;
    let text = buf.borrow();
    let mut pages = Vec::with_capacity(ends.len());
    let mut start = 0;
    for end in ends {
        pages.push(String::from_utf8_lossy(&text[start..end]).into_owned());
        start = end;
    }
    Ok(pages)
}

/// Checks a loaded PDF, before pdf-extract sees it, for what would make pdf-extract recurse
/// without end (a `/Parent` loop, a form XObject that draws itself, deeply nested font
/// programs), run for hours (forms drawn by forms, many times over; a ToUnicode range of
/// billions of codes) or allocate without bound (stacked compression filters, a huge PNG
/// predictor row). It walks pages and forms the way pdf-extract will; what it cannot follow
/// (missing or mistyped objects, undecodable content) it leaves to pdf-extract, which then
/// reports an error or panics (caught by [`pdf_to_text`]).
struct PdfGuard<'a> {
    doc: &'a pdf_extract::Document,
    /// Operations and decoded content bytes counted so far (a form each time it is drawn).
    ops: u64,
    bytes: u64,
    /// Content streams scanned so far (each decoded once).
    scans: HashMap<pdf_extract::ObjectId, Rc<ContentScan>>,
    /// The forms being drawn, outermost first.
    stack: Vec<pdf_extract::ObjectId>,
}

/// What [`PdfGuard`] needs of a content stream.
struct ContentScan {
    ops: u64,
    bytes: u64,
    /// The XObject names drawn (`/Name Do`), in order.
    draws: Vec<Vec<u8>>,
}

impl<'a> PdfGuard<'a> {
    fn check(doc: &'a pdf_extract::Document) -> std::result::Result<(), String> {
        Self::check_streams(doc)?;
        let mut guard = PdfGuard { doc, ops: 0, bytes: 0, scans: HashMap::new(), stack: Vec::new() };
        for (n, page_id) in doc.get_pages() {
            let Ok(page) = doc.get_dictionary(page_id) else { continue };
            let resources = guard.inherited(page, b"Resources", n)?.and_then(|o| o.as_dict().ok());
            guard.inherited(page, b"MediaBox", n)?;
            for id in doc.get_page_contents(page_id) {
                let Some(scan) = guard.scan(id) else { continue };
                guard.run(&scan, resources).map_err(|e| format!("page {n}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Every stream: at most one inflating filter, a sane predictor row; fonts' ToUnicode and
    /// Encoding CMaps and Type 1 programs (parsed by recursive descent in pdf-extract): bounded
    /// nesting and code ranges.
    fn check_streams(doc: &pdf_extract::Document) -> std::result::Result<(), String> {
        use pdf_extract::Object;
        let mut programs: HashMap<pdf_extract::ObjectId, &'static str> = HashMap::new();
        fn visit(o: &Object, depth: usize, out: &mut HashMap<pdf_extract::ObjectId, &'static str>) {
            let dict = match o {
                Object::Dictionary(d) => d,
                Object::Stream(s) => &s.dict,
                Object::Array(a) if depth < 128 => {
                    a.iter().for_each(|x| visit(x, depth + 1, out));
                    return;
                }
                _ => return,
            };
            for (k, v) in dict.iter() {
                match (k.as_slice(), v) {
                    (b"ToUnicode", Object::Reference(id)) => _ = out.insert(*id, "ToUnicode CMap"),
                    (b"Encoding", Object::Reference(id)) => _ = out.insert(*id, "Encoding CMap"),
                    (b"FontFile", Object::Reference(id)) => _ = out.insert(*id, "Type 1 font program"),
                    _ if depth < 128 => visit(v, depth + 1, out),
                    _ => {}
                }
            }
        }
        for (id, o) in &doc.objects {
            let at = || format!("object {} {} R", id.0, id.1);
            visit(o, 0, &mut programs);
            let Object::Stream(s) = o else { continue };
            let filters = s.filters().unwrap_or_default();
            let inflating = filters.iter().filter(|f| matches!(**f, b"FlateDecode" | b"LZWDecode")).count();
            if inflating > 1 {
                return Err(format!("{}: {inflating} compression filters stacked (a decompression bomb?)", at()));
            }
            // lopdf allocates a PNG predictor row before reading any data.
            if let Ok(p) = s.dict.get(b"DecodeParms").and_then(Object::as_dict) {
                let num = |k: &[u8], dflt: i64, min: i64| p.get(k).and_then(Object::as_i64).unwrap_or(dflt).max(min) as u128;
                let predictor = p.get(b"Predictor").and_then(Object::as_i64).unwrap_or(1);
                let row = num(b"Colors", 1, 1) * num(b"BitsPerComponent", 8, 8) / 8 * num(b"Columns", 1, 1);
                if (10..=15).contains(&predictor) && row > MAX_PDF_ROW_BYTES as u128 {
                    return Err(format!("{}: a predictor row of {row} bytes (over {MAX_PDF_ROW_BYTES})", at()));
                }
            }
        }
        for (id, what) in programs {
            let Ok(s) = doc.get_object(id).and_then(Object::as_stream) else { continue };
            let data = stream_data(s);
            let depth = ps_nesting(&data);
            if depth > MAX_PDF_NESTING {
                return Err(format!("object {} {} R (a {what}) nests {depth} deep (over {MAX_PDF_NESTING})", id.0, id.1));
            }
            if what.ends_with("CMap") {
                let codes = cmap_range_codes(&data);
                if codes > MAX_PDF_CMAP_CODES {
                    return Err(format!(
                        "object {} {} R (a {what}) maps {codes} codes (over {MAX_PDF_CMAP_CODES})",
                        id.0, id.1
                    ));
                }
            }
        }
        Ok(())
    }

    fn deref(&self, o: &'a pdf_extract::Object) -> Option<&'a pdf_extract::Object> {
        match o {
            pdf_extract::Object::Reference(id) => self.doc.get_object(*id).ok(),
            _ => Some(o),
        }
    }

    /// `key` of `page` or the nearest ancestor that has it, as pdf-extract looks it up (a
    /// `/Resources` dictionary, a `/MediaBox` array; a value of another type is passed over);
    /// a `/Parent` chain longer than [`MAX_PDF_TREE_DEPTH`] (a loop) is an error.
    fn inherited(
        &self,
        page: &'a pdf_extract::Dictionary,
        key: &[u8],
        n: u32,
    ) -> std::result::Result<Option<&'a pdf_extract::Object>, String> {
        let mut dict = page;
        for _ in 0..MAX_PDF_TREE_DEPTH {
            if let Some(v) = dict.get(key).ok().and_then(|o| self.deref(o)) {
                let found = if key == b"Resources" { v.as_dict().is_ok() } else { v.as_array().is_ok() };
                if found {
                    return Ok(Some(v));
                }
            }
            let parent = dict.get(b"Parent").and_then(|p| p.as_reference()).and_then(|id| self.doc.get_dictionary(id));
            match parent {
                Ok(p) => dict = p,
                Err(_) => return Ok(None),
            }
        }
        Err(format!("page {n}: its /Parent chain is longer than {MAX_PDF_TREE_DEPTH} (a loop in the page tree)"))
    }

    /// The scan of content stream `id` (decoded once), `None` when it is not a stream.
    fn scan(&mut self, id: pdf_extract::ObjectId) -> Option<Rc<ContentScan>> {
        if let Some(scan) = self.scans.get(&id) {
            return Some(scan.clone());
        }
        let stream = self.doc.get_object(id).and_then(|o| o.as_stream()).ok()?;
        let data = stream_data(stream);
        let (ops, draws) = match pdf_extract::content::Content::decode(&data) {
            Ok(c) => {
                let draws = c
                    .operations
                    .iter()
                    .filter(|op| op.operator == "Do")
                    .filter_map(|op| op.operands.first()?.as_name().ok().map(<[u8]>::to_vec))
                    .collect();
                (c.operations.len() as u64, draws)
            }
            Err(_) => (0, Vec::new()),
        };
        let scan = Rc::new(ContentScan { ops, bytes: data.len() as u64, draws });
        self.scans.insert(id, scan.clone());
        Some(scan)
    }

    /// Count a content stream run with `resources` and walk the forms it draws.
    fn run(&mut self, scan: &ContentScan, resources: Option<&'a pdf_extract::Dictionary>) -> std::result::Result<(), String> {
        self.ops = self.ops.saturating_add(scan.ops);
        self.bytes = self.bytes.saturating_add(scan.bytes);
        if self.ops > MAX_PDF_OPERATIONS {
            return Err(format!("over {MAX_PDF_OPERATIONS} drawing operations (forms drawn by forms, many times over)"));
        }
        if self.bytes > MAX_PDF_CONTENT_BYTES {
            return Err(format!("over {} MiB of content streams to run", MAX_PDF_CONTENT_BYTES >> 20));
        }
        let Some(xobjects) = resources
            .and_then(|r| r.get(b"XObject").ok())
            .and_then(|o| self.deref(o))
            .and_then(|o| o.as_dict().ok())
        else {
            return Ok(());
        };
        for name in &scan.draws {
            let Ok(id) = xobjects.get(name).and_then(|o| o.as_reference()) else { continue };
            let Ok(form) = self.doc.get_object(id).and_then(|o| o.as_stream()) else { continue };
            if self.stack.contains(&id) {
                return Err(format!("form XObject {} {} R draws itself", id.0, id.1));
            }
            if self.stack.len() >= MAX_PDF_FORM_DEPTH {
                return Err(format!("form XObjects nested more than {MAX_PDF_FORM_DEPTH} deep"));
            }
            // As pdf-extract: the form's own resources, else those it is drawn with.
            let form_resources = form
                .dict
                .get(b"Resources")
                .ok()
                .and_then(|o| self.deref(o))
                .and_then(|o| o.as_dict().ok())
                .or(resources);
            let Some(inner) = self.scan(id) else { continue };
            self.stack.push(id);
            self.run(&inner, form_resources)?;
            self.stack.pop();
        }
        Ok(())
    }
}

/// A stream's data as pdf-extract reads it: decoded when its filters are supported, else raw.
fn stream_data(s: &pdf_extract::Stream) -> Vec<u8> {
    if s.filters().is_ok() {
        s.decompressed_content().unwrap_or_else(|_| s.content.clone())
    } else {
        s.content.clone()
    }
}

/// The deepest nesting of `[`, `{`, `<<` and parentheses in strings in PostScript-like data,
/// read as the recursive-descent parsers pdf-extract uses read it: up to the first byte no
/// token starts with (where they stop; the binary part of a Type 1 program, say).
fn ps_nesting(data: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i < data.len() {
        let next = data.get(i + 1).copied();
        match data[i] {
            b'(' => {
                // A string: `(` inside it nests (and recurses) too, to the matching `)`.
                let mut d = 0usize;
                while i < data.len() {
                    match data[i] {
                        b'\\' => i += 1,
                        b'(' => {
                            d += 1;
                            max = max.max(depth + d);
                        }
                        b')' => {
                            d -= 1;
                            if d == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            b'[' | b'{' => depth += 1,
            b'<' if next == Some(b'<') => {
                depth += 1;
                i += 1;
            }
            b'<' => i += data[i..].iter().position(|&b| b == b'>').unwrap_or(data.len() - i),
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'>' if next == Some(b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'%' => i += data[i..].iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(data.len() - i),
            c if c.is_ascii_graphic() || c.is_ascii_whitespace() || c == 0 => {}
            _ => break,
        }
        max = max.max(depth);
        i += 1;
    }
    max
}

/// How many codes the `beginbfrange` sections of a CMap map (each range `<lo> <hi> dst` maps
/// `hi - lo + 1` codes, codes being the last four bytes of the hex string, as the CMap parser
/// pdf-extract uses reads them).
fn cmap_range_codes(data: &[u8]) -> u64 {
    let mut total = 0u64;
    let mut in_range = false;
    let mut hex: Vec<u32> = Vec::new(); // codes of the current `lo hi dst` triple
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'<' if data.get(i + 1) == Some(&b'<') => i += 2,
            b'<' => {
                let end = data[i..].iter().position(|&b| b == b'>').map_or(data.len(), |e| i + e);
                let digits: Vec<u8> = data[i + 1..end].iter().filter_map(|&b| (b as char).to_digit(16).map(|d| d as u8)).collect();
                let code = digits.chunks(2).fold(0u32, |code, pair| {
                    let byte = pair.iter().fold(0u32, |v, d| (v << 4) | u32::from(*d));
                    (code << 8) | byte
                });
                if in_range {
                    hex.push(code);
                }
                i = end + 1;
            }
            b'[' if in_range => {
                // `lo hi [dst ...]`: the array is the triple's third element.
                let end = data[i..].iter().position(|&b| b == b']').map_or(data.len(), |e| i + e);
                hex.push(0);
                i = end + 1;
            }
            c if c.is_ascii_alphabetic() => {
                let end = data[i..].iter().position(|b| !b.is_ascii_alphanumeric()).map_or(data.len(), |e| i + e);
                match &data[i..end] {
                    b"beginbfrange" => in_range = true,
                    b"endbfrange" => in_range = false,
                    _ => {}
                }
                hex.clear();
                i = end;
            }
            _ => i += 1,
        }
        if hex.len() == 3 {
            if hex[1] >= hex[0] {
                total = total.saturating_add(u64::from(hex[1] - hex[0]) + 1);
            }
            hex.clear();
        }
    }
    total
}

/// One extracted line: trimmed and runs of spaces collapsed. A letter-spaced line (a space after
/// most CJK characters, as positioned glyphs often come out) loses the spaces between CJK
/// characters; a single space, e.g. after `第一条`, is kept.
fn tidy_pdf_line(line: &str) -> String {
    let cjk = |c: char| matches!(c, '\u{3000}'..='\u{303f}' | '\u{3400}'..='\u{9fff}' | '\u{f900}'..='\u{faff}' | '\u{ff00}'..='\u{ffef}');
    let words: Vec<&str> = line.split_whitespace().collect();
    let gaps_between_cjk = words
        .windows(2)
        .filter(|w| w[0].chars().last().is_some_and(cjk) && w[1].chars().next().is_some_and(cjk))
        .count();
    let cjk_chars = line.chars().filter(|&c| cjk(c)).count();
    let letter_spaced = gaps_between_cjk >= 3 && gaps_between_cjk * 3 >= cjk_chars;
    let mut out = String::with_capacity(line.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            let joined_cjk = out.chars().last().is_some_and(cjk) && w.chars().next().is_some_and(cjk);
            if !(letter_spaced && joined_cjk) {
                out.push(' ');
            }
        }
        out.push_str(w);
    }
    out
}

/// The largest `word/document.xml` (uncompressed) read from a DOCX: 64 MiB. The XML of a
/// document of several hundred pages is a few MiB; a larger one is refused, whether its zip
/// entry declares the size or only inflates to it (a zip bomb: deflate packs ~1000:1, so a
/// 100 KiB file can hold 100 MiB), without inflating more than this into memory.
pub const MAX_DOCX_XML_BYTES: u64 = 64 << 20;

/// Text of a DOCX: one line per `<w:p>`, text from `<w:t>`, tabs and breaks kept.
/// `word/document.xml` is read up to [`MAX_DOCX_XML_BYTES`].
pub fn docx_to_text(bytes: &[u8]) -> std::result::Result<String, String> {
    let reader = std::io::Cursor::new(bytes);
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a DOCX (zip) file: {e}"))?;
    let entry = zip.by_name("word/document.xml").map_err(|e| format!("DOCX without word/document.xml: {e}"))?;
    let too_big = |size: u64| {
        format!(
            "word/document.xml is {size} bytes or more uncompressed, over the limit of {} MiB \
             (a corrupt file or a zip bomb)",
            MAX_DOCX_XML_BYTES >> 20
        )
    };
    if entry.size() > MAX_DOCX_XML_BYTES {
        return Err(too_big(entry.size()));
    }
    // The declared size may lie: never inflate more than the limit (plus one byte to notice).
    let mut raw = Vec::new();
    entry
        .take(MAX_DOCX_XML_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("reading word/document.xml: {e}"))?;
    if raw.len() as u64 > MAX_DOCX_XML_BYTES {
        return Err(too_big(raw.len() as u64));
    }
    let xml = String::from_utf8(raw).map_err(|e| format!("word/document.xml is not UTF-8 ({e})"))?;
    let mut out = String::new();
    let mut rest = xml.as_str();
    let mut in_text = false;
    while let Some(lt) = rest.find('<') {
        if in_text {
            out.push_str(&decode_entities(&rest[..lt]));
        }
        let after = &rest[lt..];
        let Some(gt) = after.find('>') else { break };
        let tag = &after[1..gt];
        rest = &after[gt + 1..];
        let self_closing = tag.ends_with('/');
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').find(|s| !s.is_empty()).unwrap_or("");
        match (tag.starts_with('/'), name) {
            (false, "w:t") if !self_closing => in_text = true,
            (true, _) if tag == "/w:t" => in_text = false,
            (true, _) if tag == "/w:p" => out.push('\n'),
            (false, "w:tab") => out.push('\t'),
            (false, "w:br") => out.push('\n'),
            _ => {}
        }
    }
    if out.trim().is_empty() {
        return Err("DOCX has no text".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn front_matter_is_parsed_and_removed() {
        let text = "---\ntitle: 居住证办理指南\n发文机关: 某市公安局\n文号: 某公通〔2024〕5号\nregion: 某市\neffective: 2024-01-01\nexpiry: 2028年12月31日\ncategory: 户籍\nsource: https://example.gov.cn/a\n---\n# 居住证\n正文。\n";
        let Loaded::Document { meta, body } = load(&PathBuf::from("a.md"), text.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(meta.title, "居住证办理指南");
        assert_eq!(meta.agency.as_deref(), Some("某市公安局"));
        assert_eq!(meta.doc_number.as_deref(), Some("某公通〔2024〕5号"));
        assert_eq!(meta.effective, Some(NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()));
        assert_eq!(meta.expiry, Some(NaiveDate::from_ymd_opt(2028, 12, 31).unwrap()));
        assert_eq!(meta.source_url.as_deref(), Some("https://example.gov.cn/a"));
        assert_eq!(body, "# 居住证\n正文。\n");
    }

    #[test]
    fn bad_metadata_is_reported_with_the_file_name() {
        for (text, needle) in [
            ("---\ntitel: x\n---\nbody", "unknown key `titel`"),
            ("---\neffective: 2024-13-01\n---\nbody", "bad date"),
            ("---\neffective: 2024-02-01\nexpiry: 2024-01-01\n---\nbody", "before effective"),
        ] {
            let err = load(&PathBuf::from("dir/bad.md"), text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("dir/bad.md") && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn unsupported_and_binary_files_are_errors() {
        let err = load(&PathBuf::from("x.pdf"), b"%PDF-1.4").unwrap_err().to_string();
        assert!(err.contains("x.pdf") && err.contains("PDF"), "{err}");
        let err = load(&PathBuf::from("x.pdf"), b"hello").unwrap_err().to_string();
        assert!(err.contains("x.pdf") && err.contains("not a PDF"), "{err}");
        let err = load(&PathBuf::from("x.rtf"), b"{\\rtf1}").unwrap_err().to_string();
        assert!(err.contains("x.rtf") && err.contains("unsupported"), "{err}");
        let err = load(&PathBuf::from("x.txt"), &[0xff, 0xfe, 0x00]).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let err = load(&PathBuf::from("x.docx"), b"not a zip").unwrap_err().to_string();
        assert!(err.contains("x.docx") && err.contains("zip"), "{err}");
    }

    /// A one-page PDF as office suites write Chinese text: a Type0 font with Identity-H codes
    /// (one CID per distinct character) and a ToUnicode map, one positioned line per entry.
    fn chinese_pdf(lines: &[&str]) -> Vec<u8> {
        use lopdf::content::{Content, Operation};
        use lopdf::{dictionary, Document, Object, Stream, StringFormat};
        let mut cids: Vec<char> = Vec::new();
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 12.into()]),
        ];
        for (i, line) in lines.iter().enumerate() {
            let mut code = Vec::new();
            for c in line.chars() {
                let cid = match cids.iter().position(|&k| k == c) {
                    Some(p) => p + 1,
                    None => {
                        cids.push(c);
                        cids.len()
                    }
                };
                code.extend_from_slice(&(cid as u16).to_be_bytes());
            }
            let y = 780 - 20 * i as i64;
            ops.push(Operation::new("Tm", vec![1.into(), 0.into(), 0.into(), 1.into(), 72.into(), y.into()]));
            ops.push(Operation::new("Tj", vec![Object::String(code, StringFormat::Hexadecimal)]));
        }
        ops.push(Operation::new("ET", vec![]));
        let mut cmap = String::from("/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n");
        for block in cids.chunks(100).enumerate() {
            cmap.push_str(&format!("{} beginbfchar\n", block.1.len()));
            for (k, c) in block.1.iter().enumerate() {
                let mut u = [0u16; 2];
                let units: String = c.encode_utf16(&mut u).iter().map(|x| format!("{x:04X}")).collect();
                cmap.push_str(&format!("<{:04X}> <{units}>\n", block.0 * 100 + k + 1));
            }
            cmap.push_str("endbfchar\n");
        }
        cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");

        let mut doc = Document::with_version("1.5");
        let pages_id = doc.new_object_id();
        let to_unicode = doc.add_object(Stream::new(dictionary! {}, cmap.into_bytes()));
        let descriptor = doc.add_object(dictionary! {
            "Type" => "FontDescriptor", "FontName" => "SimSun", "Flags" => 4,
            "FontBBox" => vec![0.into(), (-200).into(), 1000.into(), 800.into()],
            "ItalicAngle" => 0, "Ascent" => 800, "Descent" => -200, "CapHeight" => 700, "StemV" => 80,
        });
        let cid_font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "CIDFontType2", "BaseFont" => "SimSun",
            "CIDSystemInfo" => dictionary! { "Registry" => Object::string_literal("Adobe"), "Ordering" => Object::string_literal("Identity"), "Supplement" => 0 },
            "FontDescriptor" => descriptor, "DW" => 1000,
        });
        let font = doc.add_object(dictionary! {
            "Type" => "Font", "Subtype" => "Type0", "BaseFont" => "SimSun", "Encoding" => "Identity-H",
            "DescendantFonts" => vec![cid_font.into()], "ToUnicode" => to_unicode,
        });
        let content = doc.add_object(Stream::new(dictionary! {}, Content { operations: ops }.encode().unwrap()));
        let page = doc.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        });
        doc.objects.insert(pages_id, Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1 }));
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        let mut out = Vec::new();
        doc.save_to(&mut out).unwrap();
        out
    }

    #[test]
    fn pdf_text_layer_is_read_with_its_lines() {
        let lines = ["居住证办理指南", "第一条 申领条件：在本市居住半年以上。", "第二条 所需材料：身份证、住址证明。", "咨询电话 12345"];
        let pdf = chinese_pdf(&lines);
        let Loaded::Document { meta, body } = load(&PathBuf::from("kb/居住证.pdf"), &pdf).unwrap() else { panic!("a PDF is a document") };
        let got: Vec<&str> = body.lines().collect();
        assert_eq!(got, lines, "{body:?}");
        assert_eq!(meta.title, "居住证");
        // A truncated file is an error naming the file, not an empty document.
        let err = load(&PathBuf::from("kb/cut.pdf"), &pdf[..pdf.len() / 3]).unwrap_err().to_string();
        assert!(err.contains("cut.pdf"), "{err}");
        // A PDF without a text layer (nothing drawn) says so.
        let err = load(&PathBuf::from("kb/scan.pdf"), &chinese_pdf(&[])).unwrap_err().to_string();
        assert!(err.contains("scan.pdf") && err.contains("text layer"), "{err}");
    }

    #[test]
    fn letter_spaced_pdf_lines_are_joined() {
        assert_eq!(tidy_pdf_line("  居 住 证 办 理 指 南  "), "居住证办理指南");
        assert_eq!(tidy_pdf_line("第一条  申领条件：居住半年以上。"), "第一条 申领条件：居住半年以上。");
        assert_eq!(tidy_pdf_line("拨打 12345 热线"), "拨打 12345 热线");
    }

    #[test]
    fn html_keeps_headings_and_drops_scripts() {
        let html = "<html><head><title>社保卡办理</title><script>var a='<p>x</p>';</script></head><body><h1>社保卡</h1><p>持身份证到银行网点办理&nbsp;即可。</p><ul><li>身份证</li><li>照片</li></ul></body></html>";
        let (title, text) = html_to_text(html);
        assert_eq!(title.as_deref(), Some("社保卡办理"));
        assert_eq!(text, "# 社保卡\n持身份证到银行网点办理 即可。\n- 身份证\n- 照片");
    }

    #[test]
    fn docx_paragraphs_become_lines() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("word/document.xml", zip::write::SimpleFileOptions::default()).unwrap();
            use std::io::Write;
            w.write_all(
                "<w:document><w:body><w:p><w:r><w:t>第一条</w:t></w:r><w:r><w:t xml:space=\"preserve\"> 总则&amp;目的</w:t></w:r></w:p><w:p><w:r><w:t>第二条 适用范围</w:t></w:r></w:p></w:body></w:document>"
                    .as_bytes(),
            )
            .unwrap();
            w.finish().unwrap();
        }
        assert_eq!(docx_to_text(buf.get_ref()).unwrap(), "第一条 总则&目的\n第二条 适用范围\n");
    }

    #[test]
    fn faq_lines_are_validated() {
        let ok = "{\"question\":\"社保卡丢了怎么办？\",\"answer\":\"先挂失再补办。\",\"department\":\"人社局\"}\n";
        let Loaded::Faq(v) = load(&PathBuf::from("faq.jsonl"), ok.as_bytes()).unwrap() else { panic!() };
        assert_eq!(v[0].department.as_deref(), Some("人社局"));
        let err = load(&PathBuf::from("faq.jsonl"), b"{\"question\":\"q\"}\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
