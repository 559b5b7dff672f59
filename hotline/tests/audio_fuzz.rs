//! Hostile input for the audio decoder front: a property test over random
//! bytes and mutated valid files of every container the decoder accepts, plus named regression
//! tests for the container claims that used to make a dependency allocate without bound.
//!
//! Every valid file is generated here (WAV with `hound`; FLAC, MP3, MP4 and Ogg written by hand:
//! no encoder is needed and no binary is committed).
//!
//! `ZHENGWU_FUZZ_CASES` sets the number of property-test cases (default 10,000: well under a
//! second in the dev profile; two million took 36 s on the 2-core dev machine).

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use zhengwu_hotline::asr::audio::{self, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
use zhengwu_hotline::asr::AsrError;

// ---------------------------------------------------------------------------------------------
// Writers for valid files

fn tone(rate: u32, frames: usize, hz: f32, channel: usize) -> Vec<i16> {
    (0..frames)
        .map(|i| {
            let t = i as f32 / rate as f32;
            ((2.0 * std::f32::consts::PI * hz * (1 + channel) as f32 * t).sin() * 12_000.0) as i16
        })
        .collect()
}

fn wav(rate: u32, channels: u16, frames: usize, float: bool) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: if float { 32 } else { 16 },
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let chans: Vec<Vec<i16>> = (0..channels as usize)
        .map(|c| tone(rate, frames, 300.0, c))
        .collect();
    let mut out = Vec::new();
    let mut w = hound::WavWriter::new(Cursor::new(&mut out), spec).unwrap();
    for i in 0..frames {
        for ch in &chans {
            if float {
                w.write_sample(ch[i] as f32 / 32768.0).unwrap();
            } else {
                w.write_sample(ch[i]).unwrap();
            }
        }
    }
    w.finalize().unwrap();
    out
}

fn crc8(data: &[u8]) -> u8 {
    data.iter().fold(0u8, |mut c, &b| {
        c ^= b;
        for _ in 0..8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            };
        }
        c
    })
}

fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |mut c, &b| {
        c ^= (b as u16) << 8;
        for _ in 0..8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x8005
            } else {
                c << 1
            };
        }
        c
    })
}

/// FLAC's UTF-8-like coding of the frame number.
fn flac_utf8(n: u32) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let mut tail = Vec::new();
    let mut n = n;
    let mut first_bits = 6;
    while n >= (1 << first_bits) {
        tail.push(0x80 | (n & 0x3f) as u8);
        n >>= 6;
        first_bits -= 1;
    }
    let k = tail.len() + 1;
    let lead = (0xffu16 << (8 - k)) as u8 | n as u8;
    let mut v = vec![lead];
    v.extend(tail.into_iter().rev());
    v
}

/// The STREAMINFO metadata block (with its 4-byte header; `last` marks the last block).
fn flac_streaminfo(rate: u32, channels: u8, block: u16, total: u64, last: bool) -> Vec<u8> {
    let mut v = vec![if last { 0x80 } else { 0x00 }, 0, 0, 34];
    v.extend_from_slice(&block.to_be_bytes());
    v.extend_from_slice(&block.to_be_bytes());
    v.extend_from_slice(&[0; 6]); // frame sizes unknown
    let packed: u64 =
        ((rate as u64) << 44) | (((channels - 1) as u64) << 41) | (15u64 << 36) | total;
    v.extend_from_slice(&packed.to_be_bytes());
    v.extend_from_slice(&[0; 16]); // MD5 unknown
    v
}

/// FLAC frames with verbatim 16-bit subframes, one per `block` frames.
fn flac_frames(chans: &[Vec<i16>], block: usize) -> Vec<Vec<u8>> {
    let frames = chans[0].len();
    let mut out = Vec::new();
    for (n, start) in (0..frames).step_by(block).enumerate() {
        let len = block.min(frames - start);
        let mut f = vec![0xff, 0xf8, 0x70, (((chans.len() - 1) as u8) << 4) | 0x08];
        f.extend(flac_utf8(n as u32));
        f.extend_from_slice(&((len - 1) as u16).to_be_bytes());
        f.push(crc8(&f));
        for ch in chans {
            f.push(0x02); // verbatim, no wasted bits
            for s in &ch[start..start + len] {
                f.extend_from_slice(&s.to_be_bytes());
            }
        }
        let c = crc16(&f);
        f.extend_from_slice(&c.to_be_bytes());
        out.push(f);
    }
    out
}

fn flac(rate: u32, channels: u8, frames: usize) -> Vec<u8> {
    let chans: Vec<Vec<i16>> = (0..channels as usize)
        .map(|c| tone(rate, frames, 300.0, c))
        .collect();
    let block = 256;
    let mut v = b"fLaC".to_vec();
    v.extend(flac_streaminfo(
        rate,
        channels,
        block as u16,
        frames as u64,
        true,
    ));
    for f in flac_frames(&chans, block) {
        v.extend(f);
    }
    v
}

/// MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono: `n` silent frames (all-zero side information
/// and main data).
fn mp3(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..n {
        let mut f = vec![0u8; 417];
        f[..4].copy_from_slice(&[0xff, 0xfb, 0x90, 0xc0]);
        v.extend(f);
    }
    v
}

/// MSB-first bit writer (MPEG order).
#[derive(Default)]
struct MsbBits {
    out: Vec<u8>,
    n: usize,
}

impl MsbBits {
    fn put(&mut self, v: u64, bits: u32) {
        for i in (0..bits).rev() {
            if self.n % 8 == 0 {
                self.out.push(0);
            }
            if (v >> i) & 1 == 1 {
                *self.out.last_mut().unwrap() |= 0x80 >> (self.n % 8);
            }
            self.n += 1;
        }
    }
}

/// ADTS AAC-LC, 16 kHz mono: `n` silent frames (one single-channel element with no scale
/// factor bands, then END).
fn adts(n: usize) -> Vec<u8> {
    let mut raw = MsbBits::default();
    raw.put(0, 3); // SCE
    raw.put(0, 4); // instance tag
    raw.put(100, 8); // global gain
    raw.put(0, 1); // ics reserved bit
    raw.put(0, 2); // ONLY_LONG_SEQUENCE
    raw.put(0, 1); // window shape
    raw.put(0, 6); // max_sfb = 0
    raw.put(0, 1); // no prediction
    raw.put(0, 3); // no pulse, TNS, gain control data
    raw.put(7, 3); // END
    let payload = raw.out;
    let len = 7 + payload.len() as u64;
    let mut h = MsbBits::default();
    h.put(0xfff, 12);
    h.put(0, 1); // MPEG-4
    h.put(0, 2);
    h.put(1, 1); // no CRC
    h.put(1, 2); // AAC LC
    h.put(8, 4); // 16 kHz
    h.put(0, 1);
    h.put(1, 3); // mono
    h.put(0, 4);
    h.put(len, 13);
    h.put(0x7ff, 11);
    h.put(0, 2);
    let mut v = Vec::new();
    for _ in 0..n {
        v.extend_from_slice(&h.out);
        v.extend_from_slice(&payload);
    }
    v
}

/// An ID3v2.4 tag (10 bytes of padding) in front of `rest`.
fn id3(rest: &[u8]) -> Vec<u8> {
    let mut v = b"ID3\x04\x00\x00\x00\x00\x00\x0a".to_vec();
    v.extend_from_slice(&[0; 10]);
    v.extend_from_slice(rest);
    v
}

fn mp4_box(typ: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(payload);
    v
}

fn full(payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8; 4];
    v.extend_from_slice(payload);
    v
}

/// What [`mp4_custom`] changes in a valid file.
#[derive(Default)]
struct Mp4Opts {
    /// The boxes after `stsd` in `stbl` (the sample tables).
    tables: Option<Vec<u8>>,
    /// The payload of `hdlr`.
    hdlr: Option<Vec<u8>>,
    /// The media time scale (`mdhd`).
    timescale: Option<u32>,
}

fn mp4_with(rate: u32, channels: u16, frames: usize, tables: Option<Vec<u8>>) -> Vec<u8> {
    mp4_custom(
        rate,
        channels,
        frames,
        Mp4Opts {
            tables,
            ..Mp4Opts::default()
        },
    )
}

/// An M4A-style file with one 16-bit little-endian PCM (`sowt`) track.
fn mp4_custom(rate: u32, channels: u16, frames: usize, opts: Mp4Opts) -> Vec<u8> {
    let tables = opts.tables;
    let ftyp = mp4_box(b"ftyp", b"M4A \0\0\0\0M4A isom");
    let mut pcm = Vec::new();
    let chans: Vec<Vec<i16>> = (0..channels as usize)
        .map(|c| tone(rate, frames, 300.0, c))
        .collect();
    for i in 0..frames {
        for ch in &chans {
            pcm.extend_from_slice(&ch[i].to_le_bytes());
        }
    }
    let build = |mdat_at: u32| {
        let mut mvhd = Vec::new();
        mvhd.extend_from_slice(&[0; 8]);
        mvhd.extend_from_slice(&rate.to_be_bytes());
        mvhd.extend_from_slice(&(frames as u32).to_be_bytes());
        mvhd.extend_from_slice(&0x0001_0000u32.to_be_bytes());
        mvhd.extend_from_slice(&0x0100u16.to_be_bytes());
        mvhd.extend_from_slice(&[0; 10]);
        for m in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            mvhd.extend_from_slice(&m.to_be_bytes());
        }
        mvhd.extend_from_slice(&[0; 24]);
        mvhd.extend_from_slice(&2u32.to_be_bytes());
        let mut tkhd = vec![0, 0, 0, 7];
        tkhd.extend_from_slice(&[0; 8]);
        tkhd.extend_from_slice(&1u32.to_be_bytes());
        tkhd.extend_from_slice(&[0; 4]);
        tkhd.extend_from_slice(&(frames as u32).to_be_bytes());
        tkhd.extend_from_slice(&[0; 8]);
        tkhd.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0]);
        for m in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            tkhd.extend_from_slice(&m.to_be_bytes());
        }
        tkhd.extend_from_slice(&[0; 8]);
        let mut mdhd = vec![0u8; 12];
        mdhd.extend_from_slice(&opts.timescale.unwrap_or(rate).to_be_bytes());
        mdhd.extend_from_slice(&(frames as u32).to_be_bytes());
        mdhd.extend_from_slice(&[0x55, 0xc4, 0, 0]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(b"soun");
        hdlr.extend_from_slice(&[0; 12]);
        hdlr.push(0);
        if let Some(h) = &opts.hdlr {
            hdlr = h.clone();
        }
        let mut entry = vec![0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        entry.extend_from_slice(&channels.to_be_bytes());
        entry.extend_from_slice(&16u16.to_be_bytes());
        entry.extend_from_slice(&[0, 0, 0, 0]);
        entry.extend_from_slice(&(rate << 16).to_be_bytes());
        let mut stsd = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stsd.extend(mp4_box(b"sowt", &entry));
        let mut stbl = mp4_box(b"stsd", &stsd);
        match &tables {
            Some(t) => stbl.extend_from_slice(t),
            None => {
                let n = frames as u32;
                let be = |xs: &[u32]| xs.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
                stbl.extend(mp4_box(b"stts", &full(&be(&[1, n, 1]))));
                stbl.extend(mp4_box(b"stsc", &full(&be(&[1, 1, n, 1]))));
                stbl.extend(mp4_box(b"stsz", &full(&be(&[2 * channels as u32, n]))));
                stbl.extend(mp4_box(b"stco", &full(&be(&[1, mdat_at]))));
            }
        }
        let minf = [mp4_box(b"smhd", &[0; 8]), mp4_box(b"stbl", &stbl)].concat();
        let mdia = [
            mp4_box(b"mdhd", &mdhd),
            mp4_box(b"hdlr", &hdlr),
            mp4_box(b"minf", &minf),
        ]
        .concat();
        let trak = [mp4_box(b"tkhd", &tkhd), mp4_box(b"mdia", &mdia)].concat();
        mp4_box(
            b"moov",
            &[mp4_box(b"mvhd", &mvhd), mp4_box(b"trak", &trak)].concat(),
        )
    };
    let moov_len = build(0).len();
    let mdat_at = (ftyp.len() + moov_len + 8) as u32;
    [ftyp, build(mdat_at), mp4_box(b"mdat", &pcm)].concat()
}

fn mp4(rate: u32, channels: u16, frames: usize) -> Vec<u8> {
    mp4_with(rate, channels, frames, None)
}

fn ogg_crc(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |mut c, &b| {
        c ^= (b as u32) << 24;
        for _ in 0..8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
        }
        c
    })
}

/// One Ogg page holding whole `packets` (each under 255 * 255 bytes in all).
fn ogg_page(serial: u32, seq: u32, flags: u8, granule: u64, packets: &[&[u8]]) -> Vec<u8> {
    let mut lacing = Vec::new();
    for p in packets {
        lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
        lacing.push((p.len() % 255) as u8);
    }
    assert!(lacing.len() <= 255);
    let mut v = b"OggS".to_vec();
    v.push(0);
    v.push(flags);
    v.extend_from_slice(&granule.to_le_bytes());
    v.extend_from_slice(&serial.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&[0; 4]);
    v.push(lacing.len() as u8);
    v.extend(lacing);
    for p in packets {
        v.extend_from_slice(p);
    }
    let c = ogg_crc(&v);
    v[22..26].copy_from_slice(&c.to_le_bytes());
    v
}

/// FLAC in Ogg (the `\x7fFLAC` mapping), one frame per page.
fn ogg_flac(rate: u32, channels: u8, frames: usize) -> Vec<u8> {
    let chans: Vec<Vec<i16>> = (0..channels as usize)
        .map(|c| tone(rate, frames, 300.0, c))
        .collect();
    let block = 256;
    let mut head = b"\x7fFLAC\x01\x00\x00\x00fLaC".to_vec();
    head.extend(flac_streaminfo(
        rate,
        channels,
        block as u16,
        frames as u64,
        true,
    ));
    let mut v = ogg_page(7, 0, 0x02, 0, &[&head]);
    let fs = flac_frames(&chans, block);
    let n = fs.len();
    for (i, f) in fs.iter().enumerate() {
        let granule = ((i + 1) * block).min(frames) as u64;
        let flags = if i + 1 == n { 0x04 } else { 0 };
        v.extend(ogg_page(7, i as u32 + 1, flags, granule, &[f]));
    }
    v
}

/// LSB-first bit writer (Vorbis order).
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    n: usize,
}

impl Bits {
    fn put(&mut self, v: u64, bits: u32) {
        for i in 0..bits {
            if self.n % 8 == 0 {
                self.out.push(0);
            }
            if (v >> i) & 1 == 1 {
                *self.out.last_mut().unwrap() |= 1 << (self.n % 8);
            }
            self.n += 1;
        }
    }
}

fn vorbis_ident(rate: u32, channels: u8) -> Vec<u8> {
    let mut v = b"\x01vorbis".to_vec();
    v.extend_from_slice(&0u32.to_le_bytes());
    v.push(channels);
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&[0; 12]);
    v.push(0xb8); // block sizes 256 and 2048
    v.push(1);
    v
}

/// Packets of one logical stream laid out in Ogg pages: the first packet alone on the first
/// (BOS) page, the rest `segs_per_page` lacing segments per page (a packet may span pages).
fn ogg_stream(serial: u32, packets: &[Vec<u8>], segs_per_page: usize) -> Vec<u8> {
    let mut v = ogg_page(serial, 0, 0x02, 0, &[&packets[0]]);
    // (segment, continues-a-packet) in order
    let mut segs: Vec<&[u8]> = Vec::new();
    for p in &packets[1..] {
        let mut rest: &[u8] = p;
        loop {
            let n = rest.len().min(255);
            segs.push(&rest[..n]);
            rest = &rest[n..];
            if n < 255 {
                break;
            }
        }
    }
    let mut continued = false;
    for (seq, chunk) in (1u32..).zip(segs.chunks(segs_per_page)) {
        let mut page = b"OggS".to_vec();
        page.push(0);
        page.push(if continued { 0x01 } else { 0 });
        page.extend_from_slice(&0u64.to_le_bytes());
        page.extend_from_slice(&serial.to_le_bytes());
        page.extend_from_slice(&seq.to_le_bytes());
        page.extend_from_slice(&[0; 4]);
        page.push(chunk.len() as u8);
        page.extend(chunk.iter().map(|s| s.len() as u8));
        for s in chunk {
            page.extend_from_slice(s);
        }
        let c = ogg_crc(&page);
        page[22..26].copy_from_slice(&c.to_le_bytes());
        v.extend(page);
        continued = chunk.last().is_some_and(|s| s.len() == 255);
    }
    v
}

fn vorbis_comment() -> Vec<u8> {
    let mut comment = b"\x03vorbis".to_vec();
    comment.extend_from_slice(&[0; 8]);
    comment.push(1);
    comment
}

/// A Vorbis setup header holding the given codebooks, each `(dimensions, entries, lookup
/// type)` with length-ordered code lengths (a few bytes however many entries), and nothing
/// else the decoder needs after them.
fn vorbis_setup(books: &[(u16, u32, u8)]) -> Vec<u8> {
    let mut b = Bits::default();
    b.put(books.len() as u64 - 1, 8);
    for &(dims, entries, lookup) in books {
        b.put(0x56_4342, 24);
        b.put(dims as u64, 16);
        b.put(entries as u64, 24);
        b.put(1, 1); // ordered
                     // one entry one bit shorter, the rest at the longest length (a complete code when
                     // there are 2^n - 1 entries)
        let longest = 32 - (entries.max(2) - 1).leading_zeros();
        b.put(longest as u64 - 2, 5);
        let mut cur = 0u32;
        for num in [1, entries - 1] {
            let nb = 32 - (entries - cur).leading_zeros();
            b.put(num as u64, nb);
            cur += num;
        }
        b.put(lookup as u64, 4);
        if lookup != 0 {
            b.put(0, 32);
            b.put(0, 32);
            b.put(0, 4); // 1-bit values
            b.put(0, 1);
            let values = if lookup == 1 {
                (entries as f32).powf(1.0 / dims as f32).floor() as u64
            } else {
                entries as u64 * dims as u64
            };
            for _ in 0..values {
                b.put(0, 1);
            }
        }
    }
    let mut setup = b"\x05vorbis".to_vec();
    setup.extend(b.out);
    setup
}

/// An Ogg Vorbis file (8 kHz mono) whose setup header holds the given codebooks.
fn vorbis_with_codebooks(books: &[(u16, u32, u8)]) -> Vec<u8> {
    ogg_stream(
        3,
        &[vorbis_ident(8000, 1), vorbis_comment(), vorbis_setup(books)],
        255,
    )
}

// ---------------------------------------------------------------------------------------------
// Sanity of the writers: every seed of the property test decodes.

fn seeds() -> &'static [(&'static str, Vec<u8>)] {
    static SEEDS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        vec![
            ("wav 8k mono", wav(8000, 1, 400, false)),
            ("wav 44.1k stereo", wav(44_100, 2, 300, false)),
            ("wav 16k float", wav(16_000, 1, 300, true)),
            ("flac 8k mono", flac(8000, 1, 600)),
            ("flac 16k stereo", flac(16_000, 2, 600)),
            ("mp3 44.1k", mp3(4)),
            ("mp4 pcm 8k mono", mp4(8000, 1, 200)),
            ("mp4 pcm 16k stereo", mp4(16_000, 2, 100)),
            ("ogg flac 8k", ogg_flac(8000, 1, 600)),
            ("adts aac 16k", adts(6)),
            ("id3 + mp3", id3(&mp3(3))),
            // junk first: symphonia's own WAV reader takes it, not hound
            (
                "junk + wav",
                [b"JUNK".as_slice(), &wav(8000, 1, 300, false)].concat(),
            ),
        ]
    })
}

#[test]
fn every_generated_seed_decodes() {
    for (name, bytes) in seeds() {
        let a = audio::decode(bytes, 60.0).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(a.frames() > 0, "{name}");
        let owned = audio::decode_owned(bytes.clone(), 60.0).unwrap();
        assert_eq!(owned.channels, a.channels, "{name}");
        // lossless seeds come back sample for sample
        if name.starts_with("flac") || name.starts_with("mp4") || name.starts_with("ogg") {
            let want = tone(a.sample_rate, a.frames(), 300.0, 0);
            let err = a.channels[0]
                .iter()
                .zip(&want)
                .map(|(x, &y)| (x - y as f32 / 32768.0).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-4, "{name}: {err}");
        }
    }
    let f = audio::decode(&flac(16_000, 2, 600), 60.0).unwrap();
    assert_eq!(
        (f.sample_rate, f.channels.len(), f.frames()),
        (16_000, 2, 600)
    );
    assert_eq!(f.format, "flac");
    let m = audio::decode(&mp3(4), 60.0).unwrap();
    assert_eq!((m.sample_rate, m.channels.len()), (44_100, 1));
    let j = audio::decode(&seeds()[11].1, 60.0).unwrap();
    assert!(!j.format.starts_with("wav/"), "{}", j.format); // symphonia's reader, not hound
    assert_eq!(j.frames(), 300);
    let a = audio::decode(&adts(6), 60.0).unwrap();
    assert_eq!((a.format.as_str(), a.sample_rate), ("aac", 16_000));
    let p = audio::decode(&mp4(16_000, 2, 100), 60.0).unwrap();
    assert_eq!(
        (p.sample_rate, p.channels.len(), p.frames()),
        (16_000, 2, 100)
    );
}

// ---------------------------------------------------------------------------------------------
// Compressed input: the duration limit stops decoding; out-of-range streams are refused.

#[test]
fn compressed_input_stops_at_the_duration_limit() {
    // FLAC with no total in STREAMINFO: no declared duration, only decoding can tell.
    let chans = vec![tone(8000, 80_000, 300.0, 0)]; // 10 s
    let mut v = b"fLaC".to_vec();
    v.extend(flac_streaminfo(8000, 1, 256, 0, true));
    for f in flac_frames(&chans, 256) {
        v.extend(f);
    }
    let t = Instant::now();
    match audio::decode(&v, 1.0) {
        Err(AsrError::TooLong { secs, max_secs }) => {
            // stopped at the first packet past the limit, not at the end
            assert!(secs <= 1.1, "{secs}");
            assert_eq!(max_secs, 1.0);
        }
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(audio::decode(&v, 10.0).unwrap().frames(), 80_000);
    // MP3 (no frame count in the stream): 100 frames = 2.6 s
    assert!(matches!(
        audio::decode(&mp3(100), 1.0),
        Err(AsrError::TooLong { .. })
    ));
}

#[test]
fn compressed_streams_out_of_range_are_unsupported() {
    // FLAC at 96 kHz and at 4 kHz, FLAC's own header claims
    for rate in [96_000, 4_000] {
        match audio::decode(&flac(rate, 1, 600), 60.0) {
            Err(AsrError::Unsupported(m)) => assert!(m.contains(&rate.to_string()), "{m}"),
            other => panic!("{rate}: {other:?}"),
        }
    }
    // MP4 PCM track at 4 kHz
    let e = audio::decode(&mp4(4000, 1, 50), 60.0).unwrap_err();
    assert!(
        matches!(e, AsrError::Unsupported(ref m) if m.contains("4000 Hz")),
        "{e:?}"
    );
    // Ogg FLAC at 96 kHz
    let e = audio::decode(&ogg_flac(96_000, 1, 600), 60.0).unwrap_err();
    assert!(matches!(e, AsrError::Unsupported(_)), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Regression tests: container claims that made symphonia reserve gigabytes (a failed
// allocation aborts the process, which no `catch_unwind` can stop).

fn be(xs: &[u32]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn quick<T>(f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    r
}

#[test]
fn mp4_sample_tables_with_4_billion_entries_are_refused() {
    // each table announces 0xFFFFFFFF entries in a 16-byte box: `Vec::with_capacity` of
    // 16-48 GiB in symphonia 0.5 without the check
    for (typ, payload) in [
        (b"stsz", be(&[0, 0, 0xffff_ffff])),
        (b"stco", be(&[0, 0xffff_ffff])),
        (b"co64", be(&[0, 0xffff_ffff])),
        (b"stts", be(&[0, 0xffff_ffff])),
        (b"stsc", be(&[0, 0xffff_ffff])),
    ] {
        let bytes = mp4_with(8000, 1, 100, Some(mp4_box(typ, &payload)));
        let e = quick(|| audio::decode(&bytes, 60.0)).unwrap_err();
        assert!(matches!(e, AsrError::Truncated(_)), "{typ:?}: {e:?}");
        assert!(e.to_string().contains("4294967295 entries"), "{e}");
    }
    // a constant sample size of 4 GiB: each packet would be a 4 GiB read
    let bytes = mp4_with(
        8000,
        1,
        100,
        Some(mp4_box(b"stsz", &be(&[0, 0xffff_fff0, 100]))),
    );
    assert!(matches!(
        quick(|| audio::decode(&bytes, 60.0)),
        Err(AsrError::Truncated(_))
    ));
}

#[test]
fn mp4_boxes_larger_than_the_file_are_refused() {
    // an `hdlr` box announcing 2^40 bytes (64-bit size) is read whole by the reader
    let mut bytes = mp4(8000, 1, 100);
    let at = bytes.windows(4).position(|w| w == b"hdlr").unwrap() - 4;
    let mut patched = bytes[..at].to_vec();
    patched.extend_from_slice(&1u32.to_be_bytes());
    patched.extend_from_slice(b"hdlr");
    patched.extend_from_slice(&(1u64 << 40).to_be_bytes());
    patched.extend_from_slice(&bytes[at + 8..]);
    let e = quick(|| audio::decode(&patched, 60.0)).unwrap_err();
    assert!(matches!(e, AsrError::Truncated(_)), "{e:?}");
    // a cut-off `moov` is truncation too
    bytes.truncate(300);
    assert!(matches!(
        quick(|| audio::decode(&bytes, 60.0)),
        Err(AsrError::Truncated(_))
    ));
}

#[test]
fn mp4_meta_box_too_small_for_its_header_is_not_audio() {
    // symphonia subtracts the 4 bytes of version/flags from the box length: with an 8-byte
    // `meta` box that underflows (a panic with overflow checks, a wrapped length without);
    // either way the upload is refused, and the server keeps running.
    let mut bytes = mp4_box(b"ftyp", b"M4A \0\0\0\0M4A isom");
    bytes.extend(mp4_box(b"meta", &[]));
    bytes.extend(mp4_box(b"free", &[0; 16]));
    let e = quick(|| audio::decode(&bytes, 60.0)).unwrap_err();
    assert!(matches!(e, AsrError::NotAudio(_)), "{e:?}");
}

#[test]
fn vorbis_codebooks_beyond_the_caps_are_refused() {
    use audio::ogg::{MAX_VORBIS_CODEBOOK_ENTRIES, MAX_VORBIS_LOOKUP_VALUES};
    // 16,777,215 entries of 31 dimensions: 2 GiB of lookup table from an 8-byte codebook
    // (the check runs on the setup header alone: the decoder is never built)
    let file = vorbis_with_codebooks(&[(31, 0xff_ffff, 1)]);
    let setup_at = file.windows(7).position(|w| w == b"\x05vorbis").unwrap();
    let e = quick(|| audio::ogg::check_setup(&file[setup_at..])).unwrap_err();
    assert!(matches!(e, AsrError::Unsupported(_)), "{e:?}");
    // through `decode`: just over each cap (harmless sizes even without the check)
    let over_entries = (1, (MAX_VORBIS_CODEBOOK_ENTRIES + 1) as u32, 0);
    let over_values = (16, (MAX_VORBIS_LOOKUP_VALUES / 16 + 1) as u32, 1);
    for books in [
        vec![over_entries],
        vec![over_values],
        vec![(4, 1 << 19, 1); 3],
    ] {
        let e = quick(|| audio::decode(&vorbis_with_codebooks(&books), 60.0)).unwrap_err();
        assert!(matches!(e, AsrError::Unsupported(_)), "{books:?}: {e:?}");
        assert!(e.to_string().contains("Vorbis"), "{e}");
    }
    // small codebooks pass the check (the rest of this setup is missing: the decoder refuses it)
    let e = audio::decode(&vorbis_with_codebooks(&[(2, 64, 1), (1, 256, 0)]), 60.0).unwrap_err();
    assert!(!e.to_string().contains("codebook lookup tables of"), "{e}");
}

#[test]
fn ogg_check_follows_pages_and_crcs() {
    // a 700-byte setup header (the codebook, then padding) over three pages, one lacing
    // segment each: it is put together before it is checked
    let mut setup = vorbis_setup(&[(31, 0xff_ffff, 1)]);
    setup.resize(700, 0);
    let v = ogg_stream(5, &[vorbis_ident(8000, 1), vorbis_comment(), setup], 1);
    assert!(v.windows(4).filter(|w| w == b"OggS").count() >= 4);
    let e = quick(|| audio::decode(&v, 60.0)).unwrap_err();
    assert!(
        matches!(e, AsrError::Unsupported(ref m) if m.contains("codebook")),
        "{e:?}"
    );
    // junk before the first page: found where the reader finds it
    let junk = [b"not audio, just some junk bytes ".as_slice(), &v].concat();
    let e = quick(|| audio::decode(&junk, 60.0)).unwrap_err();
    assert!(
        matches!(e, AsrError::Unsupported(ref m) if m.contains("codebook")),
        "{e:?}"
    );
    // the page holding the setup's first segment has a bad CRC: the reader drops it, so the
    // codebook never reaches the decoder and the check does not report it either
    let mut bad = v.clone();
    let pages: Vec<usize> = bad
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"OggS")
        .map(|(i, _)| i)
        .collect();
    let setup_page = pages
        .iter()
        .copied()
        .find(|&p| bad[p + 28..].starts_with(b"\x05vorbis"))
        .unwrap();
    bad[setup_page + 22] ^= 0xff;
    let e = quick(|| audio::decode(&bad, 60.0)).unwrap_err();
    assert!(
        !matches!(e, AsrError::Unsupported(ref m) if m.contains("codebook")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Regression tests: inputs on which symphonia 0.5 panics (found by the property test below).
// `decode` catches the panic and answers `NotAudio`; some of these are arithmetic overflows,
// which panic only where overflow checks are on (debug and test builds) and wrap otherwise,
// so there the answer may be another error or even a decoded file.

/// The answer to an input that panics inside symphonia: `NotAudio` from the caught panic where
/// `always` or overflow checks are on; otherwise any bounded answer.
fn assert_caught(bytes: &[u8], always: bool) {
    let r = quick(|| audio::decode(bytes, 60.0));
    if always || cfg!(debug_assertions) {
        match r {
            Err(AsrError::NotAudio(m)) => assert!(m.contains("failed on malformed data"), "{m}"),
            other => panic!("{other:?}"),
        }
    } else if let Ok(a) = r {
        assert!((1..=MAX_CHANNELS).contains(&a.channels.len()));
    }
}

#[test]
fn symphonia_panic_mp4_time_scale_zero() {
    // `TimeBase::new(1, 0)` asserts (symphonia-core units.rs)
    let bytes = mp4_custom(
        8000,
        1,
        100,
        Mp4Opts {
            timescale: Some(0),
            ..Mp4Opts::default()
        },
    );
    assert_caught(&bytes, true);
}

#[test]
fn symphonia_panic_mp4_handler_box_shorter_than_its_fields() {
    // `data_len - 24` (hdlr.rs): an underflow, or where it wraps, a buffer of 2^64 bytes
    // ("capacity overflow")
    let bytes = mp4_custom(
        8000,
        1,
        100,
        Mp4Opts {
            hdlr: Some(vec![0; 20]),
            ..Mp4Opts::default()
        },
    );
    assert_caught(&bytes, true);
}

#[test]
fn symphonia_panic_mp4_chunk_numbered_zero() {
    // `first_chunk - 1` (stsc.rs) with a first chunk of 0
    let tables = [
        mp4_box(b"stts", &full(&be(&[1, 100, 1]))),
        mp4_box(b"stsc", &full(&be(&[1, 0, 100, 1]))),
        mp4_box(b"stsz", &full(&be(&[2, 100]))),
        mp4_box(b"stco", &full(&be(&[1, 0]))),
    ]
    .concat();
    assert_caught(&mp4_with(8000, 1, 100, Some(tables)), false);
}

#[test]
fn symphonia_panic_mp4_durations_overflow() {
    // the total duration of `stts` overflows a u64 (stts.rs)
    let tables = [
        mp4_box(
            b"stts",
            &full(&be(&[2, u32::MAX, u32::MAX, u32::MAX, u32::MAX])),
        ),
        mp4_box(b"stsc", &full(&be(&[1, 1, 100, 1]))),
        mp4_box(b"stsz", &full(&be(&[2, 100]))),
        mp4_box(b"stco", &full(&be(&[1, 0]))),
    ]
    .concat();
    assert_caught(&mp4_with(8000, 1, 100, Some(tables)), false);
}

#[test]
fn symphonia_panic_adts_step_zero() {
    // Same estimate: with 20 bytes before two 11-byte ADTS frames its sampling step is 0, and
    // `step_by(0)` asserts in every build.
    let bytes = [[0u8; 20].as_slice(), &adts(2)].concat();
    assert_caught(&bytes, true);
}

#[test]
fn symphonia_panic_adts_after_a_long_id3_tag() {
    // The ADTS reader's duration estimate subtracts the start offset twice (adts.rs): an ADTS
    // stream that starts past the middle of the file (here after a 300-byte ID3 tag)
    // underflows.
    let mut bytes = b"ID3\x04\x00\x00\x00\x00\x02\x2c".to_vec();
    bytes.extend_from_slice(&[0; 300]);
    bytes.extend(adts(2));
    assert_caught(&bytes, false);
}

// ---------------------------------------------------------------------------------------------
// The property test.

const MAGICS: &[&[u8]] = &[
    b"RIFF\x24\x00\x00\x00WAVEfmt ",
    b"ID3\x04\x00\x00\x00\x00\x00\x10",
    b"fLaC",
    b"OggS\x00\x02",
    b"\xff\xfb\x90\xc0",
    b"\xff\xf1\x50\x80",
    b"\x00\x00\x00\x18ftypM4A ",
    b"\x7fFLAC",
];

const INTERESTING: &[u32] = &[
    0,
    1,
    2,
    3,
    8,
    9,
    255,
    256,
    7_999,
    8_000,
    48_000,
    48_001,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fff0,
    0xffff_ffff,
    4_294_967_291,
];

#[derive(Debug, Clone)]
enum Mutation {
    Byte(Index, u8),
    BitFlip(Index, u8),
    Word(Index, usize, bool),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, u8),
}

fn apply(mut v: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if v.is_empty() {
            break;
        }
        match m {
            Mutation::Byte(i, b) => {
                let i = i.index(v.len());
                v[i] = *b;
            }
            Mutation::BitFlip(i, bit) => {
                let i = i.index(v.len());
                v[i] ^= 1 << (bit % 8);
            }
            Mutation::Word(i, w, big) => {
                let i = i.index(v.len());
                let w = INTERESTING[w % INTERESTING.len()];
                let bytes = if *big {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                };
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(x) = v.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
            Mutation::Truncate(i) => {
                let i = i.index(v.len());
                v.truncate(i);
            }
            Mutation::Insert(i, bytes) => {
                let i = i.index(v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i.index(v.len());
                let end = (i + *n as usize).min(v.len());
                v.drain(i..end);
            }
        }
    }
    v
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::BitFlip(i, b)),
        4 => (any::<Index>(), any::<usize>(), any::<bool>())
            .prop_map(|(i, w, big)| Mutation::Word(i, w, big)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Random(Vec<u8>),
    Magic(usize, Vec<u8>),
    Mutated(usize, Vec<Mutation>),
}

impl Input {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Input::Random(b) => b.clone(),
            Input::Magic(m, rest) => [MAGICS[m % MAGICS.len()], rest.as_slice()].concat(),
            Input::Mutated(s, muts) => {
                let seeds = seeds();
                apply(seeds[s % seeds.len()].1.clone(), muts)
            }
        }
    }
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..600).prop_map(Input::Random),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..1200))
            .prop_map(|(m, r)| Input::Magic(m, r)),
        7 => (any::<usize>(), proptest::collection::vec(mutation(), 1..12))
            .prop_map(|(s, m)| Input::Mutated(s, m)),
    ]
}

fn cases() -> u32 {
    std::env::var("ZHENGWU_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// `decode` never panics, never takes long, and whatever it accepts is within the bounds.
#[test]
fn decode_survives_hostile_input() {
    let config = Config {
        cases: cases(),
        max_shrink_iters: 4096,
        // failing inputs are kept as named regression tests above, not in files
        failure_persistence: None,
        ..Config::default()
    };
    let limits = [0.01, 1.0, 60.0, 7200.0];
    let started = Instant::now();
    // outcome counts (by error code, "ok", and "panic" for a decoder panic that was caught)
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let slowest = std::sync::Mutex::new(Duration::ZERO);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&(input(), 0..limits.len()), |(inp, li)| {
        let bytes = inp.bytes();
        let max_secs = limits[li];
        let t = Instant::now();
        let r = audio::decode(&bytes, max_secs);
        let took = t.elapsed();
        {
            let key = match &r {
                Ok(_) => "ok".to_string(),
                Err(AsrError::NotAudio(m)) if m.contains("failed on malformed data") => {
                    "not_audio (decoder panic caught)".to_string()
                }
                Err(e) => e.code().to_string(),
            };
            *outcomes.lock().unwrap().entry(key).or_default() += 1;
            let mut s = slowest.lock().unwrap();
            *s = (*s).max(took);
        }
        prop_assert!(took < Duration::from_secs(5), "took {took:?}");
        if let Ok(a) = r {
            prop_assert!((1..=MAX_CHANNELS).contains(&a.channels.len()));
            prop_assert!((MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&a.sample_rate));
            prop_assert!(a.frames() > 0);
            prop_assert!(a.duration_secs() <= max_secs);
            prop_assert!(a.channels.iter().all(|c| c.len() == a.frames()));
        }
        Ok(())
    });
    eprintln!(
        "decode_survives_hostile_input: {} cases in {:.1} s (slowest {:?}): {:?}",
        cases(),
        started.elapsed().as_secs_f64(),
        slowest.lock().unwrap(),
        outcomes.lock().unwrap()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
