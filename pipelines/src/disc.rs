//! The album as one audio CD for the pressing plant (Red Book): where each
//! track starts on the disc, and the files a plant and a burner read — a
//! DDP 2.0 fileset and a CUE sheet beside one WAV of the same samples.
//!
//! **Layout.** A disc counts in CD frames (sectors) of 588 stereo samples,
//! 75 a second. The first track's audio starts at 00:02:00 after the
//! 150-frame pregap of silence. Every later track starts on a frame: after
//! a gap (its `gap_s`, rounded up to whole frames) the silence runs from
//! the frame after the previous track's last sample (INDEX 00) to the
//! track's first sample (INDEX 01). With no gap the audio of the two tracks
//! joins sample-exactly and INDEX 01 marks the frame the join falls in.
//!
//! **DDP 2.0 fileset** (`ddp/`): `DDPID` (128 bytes: level `DDP 2.00`, the
//! UPC/EAN, the master id, disc type `CD`), `DDPMS` (one 128-byte map
//! packet, `VVVM`, per stream: the audio image, `D0`, the PQ descriptor,
//! `S0`, and CD-TEXT, `S4` — type, length, start, pregap, file name),
//! `CDTEXT.BIN` (18-byte packs: album and track titles, performer),
//! `PQDESCR` (one 64-byte packet, `VVVS`, per track index and the lead-out `AA`:
//! track, index, absolute time hh:mm:ss:ff, control bytes, ISRC, UPC/EAN),
//! `IMAGE.DAT` (the whole disc from 00:00:00, 16-bit little-endian
//! interleaved stereo, 2,352 bytes a frame) and `CHECKSUM.MD5` (in the form
//! `md5sum -c` reads). The field offsets are written down once, in
//! [`ddpms_packet`] and [`pq_packet`], and [`read_ddp`] reads them back.
//!
//! **CUE sheet** (`album.cue` + `album.wav`): the same samples from 00:02:00
//! on (a burner makes the first pregap itself), with CATALOG, TITLE,
//! PERFORMER, ISRC and INDEX lines.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A CD's sample rate.
pub const RATE_HZ: u32 = 44_100;
/// The most tracks a CD holds.
pub const MAX_TRACKS: usize = 99;
/// Samples (stereo frames) in one CD frame.
pub const FRAME_SAMPLES: u64 = 588;
/// Bytes of 16-bit stereo audio in one CD frame.
pub const FRAME_BYTES: u64 = FRAME_SAMPLES * 4;
/// CD frames a second.
pub const FRAMES_PER_SECOND: u64 = 75;
/// The first track's pregap: 00:02:00.
pub const FIRST_PREGAP_FRAMES: u64 = 2 * FRAMES_PER_SECOND;
/// The shortest track (Red Book): 4 s.
pub const MIN_TRACK_SAMPLES: u64 = 4 * RATE_HZ as u64;
/// The longest disc: 79:57:00.
pub const MAX_DISC_FRAMES: u64 = (79 * 60 + 57) * FRAMES_PER_SECOND;

/// What the disc says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscInfo {
    pub title: String,
    pub performer: String,
    /// 12 (UPC) or 13 (EAN) digits.
    pub upc: Option<String>,
}

/// One track as the disc holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscTrack {
    pub title: String,
    pub isrc: Option<String>,
    /// The silence before it (ignored for the first track, whose pregap is 2 s).
    pub gap_s: f64,
}

/// Where one track lies on the disc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub number: u32,
    /// INDEX 00, the start of its gap (equal to `start_frame` without one).
    pub gap_frame: u64,
    /// INDEX 01, in CD frames from 00:00:00.
    pub start_frame: u64,
    /// Its first sample, in samples from 00:00:00.
    pub first_sample: u64,
    pub samples: u64,
}

/// Every track's place and the lead-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    pub tracks: Vec<Placement>,
    /// The lead-out's frame: the disc's length.
    pub lead_out_frame: u64,
}

impl Layout {
    /// Places tracks of `samples` each, with `gaps_s[i]` before track `i`
    /// (the first's is the 2 s pregap), checking the Red Book's limits.
    pub fn new(samples: &[u64], gaps_s: &[f64]) -> Result<Self, String> {
        if samples.is_empty() || samples.len() > MAX_TRACKS {
            return Err(format!("a CD holds 1 to {MAX_TRACKS} tracks, not {}", samples.len()));
        }
        let mut tracks = Vec::with_capacity(samples.len());
        let mut end = FIRST_PREGAP_FRAMES * FRAME_SAMPLES;
        for (index, (&length, &gap_s)) in samples.iter().zip(gaps_s).enumerate() {
            if length < MIN_TRACK_SAMPLES {
                return Err(format!(
                    "track {} is {:.2} s long: a CD track lasts at least 4 s",
                    index + 1,
                    length as f64 / f64::from(RATE_HZ)
                ));
            }
            let gap_samples = (gap_s.max(0.0) * f64::from(RATE_HZ)).round() as u64;
            let (gap_frame, start_frame, first_sample) = if index == 0 {
                (0, FIRST_PREGAP_FRAMES, end)
            } else if gap_samples == 0 {
                (end / FRAME_SAMPLES, end / FRAME_SAMPLES, end)
            } else {
                let gap_frame = end.div_ceil(FRAME_SAMPLES);
                let start_frame = gap_frame + gap_samples.div_ceil(FRAME_SAMPLES);
                (gap_frame, start_frame, start_frame * FRAME_SAMPLES)
            };
            tracks.push(Placement { number: index as u32 + 1, gap_frame, start_frame, first_sample, samples: length });
            end = first_sample + length;
        }
        let lead_out_frame = end.div_ceil(FRAME_SAMPLES);
        if lead_out_frame > MAX_DISC_FRAMES {
            return Err(format!("the disc would last {}, longer than a CD's 79:57:00", timecode(lead_out_frame, ':')));
        }
        Ok(Self { tracks, lead_out_frame })
    }
}

/// `mm:ss:ff` (or with another separator) of a frame count.
pub fn timecode(frames: u64, separator: char) -> String {
    let (minutes, rest) = (frames / (60 * FRAMES_PER_SECOND), frames % (60 * FRAMES_PER_SECOND));
    format!("{minutes:02}:{:02}{separator}{:02}", rest / FRAMES_PER_SECOND, rest % FRAMES_PER_SECOND)
}

/// Writes the disc into `dir`: `ddp/` (the DDP 2.0 fileset), `album.cue`
/// and `album.wav`, from one 16-bit 44.1 kHz stereo WAV per track. Returns
/// the layout and the files written (relative to `dir`).
pub fn write_disc(
    dir: &Path,
    info: &DiscInfo,
    tracks: &[DiscTrack],
    sources: &[PathBuf],
) -> Result<(Layout, Vec<String>), String> {
    let mut readers = Vec::with_capacity(sources.len());
    for (number, path) in sources.iter().enumerate() {
        let reader = hound::WavReader::open(path)
            .map_err(|e| format!("track {}: cannot read {}: {e}", number + 1, path.display()))?;
        let spec = reader.spec();
        if spec.sample_rate != RATE_HZ || spec.bits_per_sample != 16 || spec.channels != 2 {
            return Err(format!(
                "track {}: {} is {} Hz, {}-bit, {} channels; a CD takes 44100 Hz, 16-bit stereo",
                number + 1,
                path.display(),
                spec.sample_rate,
                spec.bits_per_sample,
                spec.channels
            ));
        }
        readers.push(reader);
    }
    let samples: Vec<u64> = readers.iter().map(|r| u64::from(r.duration())).collect();
    let gaps: Vec<f64> = tracks.iter().map(|t| t.gap_s).collect();
    let layout = Layout::new(&samples, &gaps)?;
    let io = |what: &str, e: std::io::Error| format!("cannot write {what}: {e}");
    std::fs::create_dir_all(dir.join("ddp")).map_err(|e| io("ddp/", e))?;

    // The image and the WAV, a track at a time (the WAV starts at 00:02:00).
    let mut image = Hashed::create(&dir.join("ddp/IMAGE.DAT")).map_err(|e| io("IMAGE.DAT", e))?;
    let wav_spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE_HZ,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(dir.join("album.wav"), wav_spec).map_err(|e| format!("album.wav: {e}"))?;
    let mut written = 0u64;
    let silence = |to: u64, image: &mut Hashed, wav: &mut hound::WavWriter<_>, written: &mut u64| {
        while *written < to {
            image.write_all(&[0; 4])?;
            if *written >= FIRST_PREGAP_FRAMES * FRAME_SAMPLES {
                wav.write_sample(0i16).and_then(|()| wav.write_sample(0i16)).map_err(std::io::Error::other)?;
            }
            *written += 1;
        }
        Ok::<(), std::io::Error>(())
    };
    for (placement, reader) in layout.tracks.iter().zip(&mut readers) {
        silence(placement.first_sample, &mut image, &mut wav, &mut written).map_err(|e| io("the disc image", e))?;
        let mut wav_samples = wav.get_i16_writer(2 * placement.samples as u32);
        for sample in reader.samples::<i16>() {
            let sample = sample.map_err(|e| format!("track {}: {e}", placement.number))?;
            image.write_all(&sample.to_le_bytes()).map_err(|e| io("the disc image", e))?;
            wav_samples.write_sample(sample);
        }
        wav_samples.flush().map_err(|e| format!("album.wav: {e}"))?;
        written += placement.samples;
    }
    silence(layout.lead_out_frame * FRAME_SAMPLES, &mut image, &mut wav, &mut written)
        .map_err(|e| io("the disc image", e))?;
    wav.finalize().map_err(|e| format!("album.wav: {e}"))?;
    let image_md5 = image.finish().map_err(|e| io("IMAGE.DAT", e))?;

    let upc = info.upc.as_deref().map(ean13).unwrap_or_default();
    let mut files = vec![("DDPID".to_owned(), ddpid(&upc, &info.title))];
    let pq: Vec<u8> = pq_packets(&layout, tracks, &upc).concat();
    let text = cd_text(info, tracks);
    files.push((
        "DDPMS".to_owned(),
        [
            ddpms_packet("D0", layout.lead_out_frame, FIRST_PREGAP_FRAMES, "IMAGE.DAT"),
            ddpms_packet("S0", pq.len() as u64, 0, "PQDESCR"),
            ddpms_packet("S4", text.len() as u64, 0, "CDTEXT.BIN"),
        ]
        .concat(),
    ));
    files.push(("PQDESCR".to_owned(), pq));
    files.push(("CDTEXT.BIN".to_owned(), text));
    let mut checksums = String::new();
    for (name, bytes) in &files {
        std::fs::write(dir.join("ddp").join(name), bytes).map_err(|e| io(name, e))?;
        checksums.push_str(&format!("{:x}  {name}\n", Md5::digest(bytes)));
    }
    checksums.push_str(&format!("{image_md5}  IMAGE.DAT\n"));
    std::fs::write(dir.join("ddp/CHECKSUM.MD5"), checksums).map_err(|e| io("CHECKSUM.MD5", e))?;
    std::fs::write(dir.join("album.cue"), cue_sheet(info, tracks, &layout, &upc)).map_err(|e| io("album.cue", e))?;
    let mut names: Vec<String> = files.iter().map(|(name, _)| format!("ddp/{name}")).collect();
    names.extend(["ddp/IMAGE.DAT", "ddp/CHECKSUM.MD5", "album.cue", "album.wav"].map(str::to_owned));
    Ok((layout, names))
}

/// A file written through a buffer, its MD5 taken on the way.
struct Hashed {
    out: BufWriter<File>,
    md5: Md5,
}

impl Hashed {
    fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self { out: BufWriter::with_capacity(1 << 16, File::create(path)?), md5: Md5::new() })
    }
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.md5.update(bytes);
        self.out.write_all(bytes)
    }
    fn finish(mut self) -> std::io::Result<String> {
        self.out.flush()?;
        Ok(format!("{:x}", self.md5.finalize()))
    }
}

/// A UPC (12 digits) as the EAN-13 a disc carries.
fn ean13(upc: &str) -> String {
    if upc.len() == 12 { format!("0{upc}") } else { upc.to_owned() }
}

/// `text` in exactly `width` ASCII bytes: cut, or padded with spaces.
fn field(text: &str, width: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> =
        text.bytes().map(|b| if b.is_ascii() && !b.is_ascii_control() { b } else { b'?' }).collect();
    bytes.resize(width, b' ');
    bytes
}

/// `value` as `width` decimal digits.
fn digits(value: u64, width: usize) -> Vec<u8> {
    format!("{value:0width$}").into_bytes()
}

/// The DDPID stream (128 bytes): 0–7 level, 8–20 UPC/EAN, 21–28 map stream
/// start, 29–36 reserved, 37 reserved, 38–85 master id, 86 reserved,
/// 87–88 disc type, 89 sides, 90 side, 91 layers, 92 layer, 93 direction,
/// 94–127 reserved.
fn ddpid(upc: &str, master_id: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(128);
    packet.extend(field("DDP 2.00", 8));
    packet.extend(field(upc, 13));
    packet.extend(field("", 8 + 8 + 1));
    packet.extend(field(master_id, 48));
    packet.extend(field("", 1));
    packet.extend(field("CD", 2));
    packet.extend(field("1010I", 5));
    packet.extend(field("", 34));
    debug_assert_eq!(packet.len(), 128);
    packet
}

/// One DDPMS map packet (128 bytes): 0–3 `VVVM`, 4–5 stream type, 6–13
/// stream pointer, 14–21 stream length (frames for audio, else bytes),
/// 22–29 stream start (frame), 30–37 subcode descriptor, 38–39 CD mode
/// (`DA`), 40 source storage mode, 41 scrambled, 42–45 pregap part 1,
/// 46–49 pregap part 2, 50–53 postgap, 54 media number, 55–56 track,
/// 57–58 index, 59–70 ISRC, 71–73 name length, 74–90 file name, 91–127
/// reserved.
fn ddpms_packet(stream_type: &str, length: u64, pregap_frames: u64, file_name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(128);
    packet.extend(field("VVVM", 4));
    packet.extend(field(stream_type, 2));
    packet.extend(field("", 8));
    packet.extend(digits(length, 8));
    packet.extend(digits(0, 8));
    packet.extend(field("", 8));
    packet.extend(field(if stream_type == "D0" { "DA" } else { "" }, 2));
    packet.extend(field("0", 1));
    packet.extend(field("0", 1));
    packet.extend(digits(0, 4));
    packet.extend(digits(pregap_frames, 4));
    packet.extend(digits(0, 4));
    packet.extend(field("", 1 + 2 + 2 + 12));
    packet.extend(digits(file_name.len() as u64, 3));
    packet.extend(field(file_name, 17));
    packet.extend(field("", 37));
    debug_assert_eq!(packet.len(), 128);
    packet
}

/// One PQ descriptor packet (64 bytes): 0–3 `VVVS`, 4–5 track (`AA` for
/// the lead-out), 6–7 index, 8–15 absolute time hh mm ss ff, 16–17 and
/// 18–19 control bytes (hex; 00: two-channel audio, no pre-emphasis),
/// 20–31 ISRC, 32–44 UPC/EAN, 45–63 reserved.
fn pq_packet(track: &str, index: u32, frame: u64, isrc: &str, upc: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend(field("VVVS", 4));
    packet.extend(field(track, 2));
    packet.extend(digits(u64::from(index), 2));
    let seconds = frame / FRAMES_PER_SECOND;
    for value in [seconds / 3600, seconds / 60 % 60, seconds % 60, frame % FRAMES_PER_SECOND] {
        packet.extend(digits(value, 2));
    }
    packet.extend(field("0000", 4));
    packet.extend(field(isrc, 12));
    packet.extend(field(upc, 13));
    packet.extend(field("", 19));
    debug_assert_eq!(packet.len(), 64);
    packet
}

fn pq_packets(layout: &Layout, tracks: &[DiscTrack], upc: &str) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for (placement, track) in layout.tracks.iter().zip(tracks) {
        let number = format!("{:02}", placement.number);
        let isrc = track.isrc.as_deref().unwrap_or("");
        if placement.gap_frame < placement.start_frame {
            packets.push(pq_packet(&number, 0, placement.gap_frame, isrc, upc));
        }
        packets.push(pq_packet(&number, 1, placement.start_frame, isrc, upc));
    }
    packets.push(pq_packet("AA", 1, layout.lead_out_frame, "", upc));
    packets
}

/// CD-TEXT (block 0, ISO 8859-1, English): the album's and each track's
/// title (pack type 0x80) and performer (0x81), then the three size-info
/// packs (0x8F). Each 18-byte pack: type, track, sequence number,
/// character position, 12 bytes of text (strings end with NUL and run on
/// from pack to pack), and a CRC-16 (CCITT, inverted, big-endian).
fn cd_text(info: &DiscInfo, tracks: &[DiscTrack]) -> Vec<u8> {
    let latin1 = |text: &str| -> Vec<u8> {
        text.chars().map(|c| if (c as u32) < 0x100 && !c.is_control() { c as u8 } else { b'?' }).collect()
    };
    let titles: Vec<Vec<u8>> =
        std::iter::once(latin1(&info.title)).chain(tracks.iter().map(|t| latin1(&t.title))).collect();
    let performers: Vec<Vec<u8>> = (0..=tracks.len()).map(|_| latin1(&info.performer)).collect();
    let mut packs: Vec<[u8; 18]> = Vec::new();
    let mut counts = [0u8; 16];
    for (pack_type, strings) in [(0x80u8, &titles), (0x81, &performers)] {
        // Every byte of the type's text with the track it belongs to and
        // its position in that track's string.
        let owned: Vec<(u8, u8, usize)> = strings
            .iter()
            .enumerate()
            .flat_map(|(track, text)| {
                text.iter().copied().chain([0]).enumerate().map(move |(position, byte)| (byte, track as u8, position))
            })
            .collect();
        for chunk in owned.chunks(12) {
            let (_, track, position) = chunk[0];
            let mut pack = [0u8; 18];
            pack[0] = pack_type;
            pack[1] = track;
            pack[2] = packs.len() as u8;
            pack[3] = position.min(15) as u8;
            for (slot, (byte, _, _)) in pack[4..16].iter_mut().zip(chunk) {
                *slot = *byte;
            }
            packs.push(pack);
            counts[usize::from(pack_type - 0x80)] += 1;
        }
    }
    counts[15] = 3;
    let mut size_info = [0u8; 36];
    size_info[1] = 1;
    size_info[2] = tracks.len() as u8;
    size_info[4..20].copy_from_slice(&counts);
    size_info[20] = (packs.len() + 2) as u8;
    size_info[28] = 0x09;
    for (index, text) in size_info.chunks(12).enumerate() {
        let mut pack = [0u8; 18];
        pack[0] = 0x8F;
        pack[1] = index as u8;
        pack[2] = packs.len() as u8;
        pack[4..16].copy_from_slice(text);
        packs.push(pack);
    }
    for pack in &mut packs {
        let crc = !crc16_ccitt(&pack[..16]);
        pack[16..].copy_from_slice(&crc.to_be_bytes());
    }
    packs.concat()
}

/// CRC-16/CCITT (polynomial 0x1021, initial value 0), as CD subcode uses it.
fn crc16_ccitt(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The CUE sheet of `album.wav` (which starts at 00:02:00).
fn cue_sheet(info: &DiscInfo, tracks: &[DiscTrack], layout: &Layout, upc: &str) -> String {
    let quoted = |text: &str| text.replace('"', "'");
    let mut cue = String::new();
    if !upc.is_empty() {
        cue.push_str(&format!("CATALOG {upc}\n"));
    }
    cue.push_str(&format!("PERFORMER \"{}\"\nTITLE \"{}\"\n", quoted(&info.performer), quoted(&info.title)));
    cue.push_str("FILE \"album.wav\" WAVE\n");
    for (placement, track) in layout.tracks.iter().zip(tracks) {
        cue.push_str(&format!("  TRACK {:02} AUDIO\n", placement.number));
        cue.push_str(&format!(
            "    TITLE \"{}\"\n    PERFORMER \"{}\"\n",
            quoted(&track.title),
            quoted(&info.performer)
        ));
        if let Some(isrc) = &track.isrc {
            cue.push_str(&format!("    ISRC {isrc}\n"));
        }
        let in_file = |frame: u64| timecode(frame - FIRST_PREGAP_FRAMES, ':');
        if placement.number > 1 && placement.gap_frame < placement.start_frame {
            cue.push_str(&format!("    INDEX 00 {}\n", in_file(placement.gap_frame)));
        }
        cue.push_str(&format!("    INDEX 01 {}\n", in_file(placement.start_frame)));
    }
    cue
}

/// A DDP fileset as read back from its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DdpReading {
    pub level: String,
    pub upc: String,
    pub disc_type: String,
    /// Per map packet: stream type, length, pregap part 2, file name.
    pub streams: Vec<(String, u64, u64, String)>,
    /// Per PQ packet: track, index, frame, ISRC, UPC.
    pub pq: Vec<(String, u32, u64, String, String)>,
    /// CD-TEXT block 0, per track (0: the album): title and performer.
    pub cd_text: Vec<(String, String)>,
}

/// Reads a DDP fileset's `DDPID`, `DDPMS` and `PQDESCR` by the field
/// layout above, checking every packet's marker.
pub fn read_ddp(dir: &Path) -> Result<DdpReading, String> {
    let read = |name: &str| -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        File::open(dir.join(name)).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| format!("{name}: {e}"))?;
        Ok(bytes)
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim_end().to_owned();
    let number = |bytes: &[u8]| -> Result<u64, String> {
        let t = text(bytes);
        t.parse().map_err(|_| format!("`{t}` is not a number"))
    };
    let id = read("DDPID")?;
    if id.len() != 128 {
        return Err(format!("DDPID is {} bytes, not 128", id.len()));
    }
    let map = read("DDPMS")?;
    if map.is_empty() || !map.len().is_multiple_of(128) {
        return Err(format!("DDPMS is {} bytes, not a whole number of 128-byte packets", map.len()));
    }
    let mut streams = Vec::new();
    for packet in map.chunks(128) {
        if &packet[0..4] != b"VVVM" {
            return Err("a DDPMS packet does not start with VVVM".to_owned());
        }
        let name_length = number(&packet[71..74])? as usize;
        streams.push((
            text(&packet[4..6]),
            number(&packet[14..22])?,
            number(&packet[46..50])?,
            text(&packet[74..74 + name_length.min(17)]),
        ));
    }
    let pq_name = streams.iter().find(|s| s.0 == "S0").map(|s| s.3.clone()).ok_or("DDPMS maps no PQ descriptor")?;
    let pq_bytes = read(&pq_name)?;
    if !pq_bytes.len().is_multiple_of(64) {
        return Err(format!("{pq_name} is {} bytes, not a whole number of 64-byte packets", pq_bytes.len()));
    }
    let mut pq = Vec::new();
    for packet in pq_bytes.chunks(64) {
        if &packet[0..4] != b"VVVS" {
            return Err(format!("a {pq_name} packet does not start with VVVS"));
        }
        let [hours, minutes, seconds, frames] =
            [8, 10, 12, 14].map(|at| number(&packet[at..at + 2]).unwrap_or(u64::MAX));
        if [hours, minutes, seconds, frames].contains(&u64::MAX) {
            return Err(format!("a {pq_name} packet has a malformed time"));
        }
        pq.push((
            text(&packet[4..6]),
            number(&packet[6..8])? as u32,
            ((hours * 60 + minutes) * 60 + seconds) * FRAMES_PER_SECOND + frames,
            text(&packet[20..32]),
            text(&packet[32..45]),
        ));
    }
    let cd_text = match streams.iter().find(|s| s.0 == "S4") {
        Some(stream) => read_cd_text(&read(&stream.3)?)?,
        None => Vec::new(),
    };
    Ok(DdpReading { level: text(&id[0..8]), upc: text(&id[8..21]), disc_type: text(&id[87..89]), streams, pq, cd_text })
}

/// Titles and performers (per track, 0 the album) from CD-TEXT packs,
/// each pack's CRC checked.
fn read_cd_text(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
    if !bytes.len().is_multiple_of(18) {
        return Err(format!("CD-TEXT is {} bytes, not a whole number of 18-byte packs", bytes.len()));
    }
    let mut strings: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for (index, pack) in bytes.chunks(18).enumerate() {
        if !crc16_ccitt(&pack[..16]) != u16::from_be_bytes([pack[16], pack[17]]) {
            return Err(format!("CD-TEXT pack {index} fails its CRC"));
        }
        if usize::from(pack[2]) != index {
            return Err(format!("CD-TEXT pack {index} has sequence number {}", pack[2]));
        }
        let Some(list) = pack[0].checked_sub(0x80).and_then(|t| strings.get_mut(usize::from(t))) else { continue };
        let mut track = usize::from(pack[1]);
        for &byte in &pack[4..16] {
            if list.len() <= track {
                list.resize(track + 1, Vec::new());
            }
            if byte == 0 {
                track += 1;
            } else {
                list[track].push(byte);
            }
        }
    }
    // The last pack's padding reads as empty strings past the last track.
    for list in &mut strings {
        while list.last().is_some_and(Vec::is_empty) {
            list.pop();
        }
    }
    let [titles, performers] = strings;
    let latin1 =
        |bytes: Option<&Vec<u8>>| bytes.map(|b| b.iter().map(|&c| char::from(c)).collect()).unwrap_or_default();
    Ok((0..titles.len().max(performers.len()))
        .map(|track| (latin1(titles.get(track)), latin1(performers.get(track))))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = RATE_HZ as u64;

    #[test]
    fn tracks_start_on_frames_after_their_gaps() {
        let layout = Layout::new(&[5 * SECOND + 100, 7 * SECOND, 6 * SECOND], &[2.0, 2.0, 0.5]).unwrap();
        let [one, two, three] = &layout.tracks[..] else { panic!() };
        assert_eq!((one.gap_frame, one.start_frame, one.first_sample), (0, 150, 150 * 588));
        // Track 1 ends at sample 150·588 + 5 s + 100: frame 525.17, so its
        // gap starts at frame 526 and lasts 150 frames.
        assert_eq!((two.gap_frame, two.start_frame), (526, 676));
        assert_eq!(two.first_sample, 676 * 588);
        // 0.5 s = 22,050 samples = 37.5 frames: 38.
        assert_eq!(three.start_frame - three.gap_frame, 38);
        assert_eq!(layout.lead_out_frame, three.start_frame + 6 * 75);
    }

    #[test]
    fn gapless_tracks_join_sample_exactly() {
        let layout = Layout::new(&[5 * SECOND + 100, 7 * SECOND], &[2.0, 0.0]).unwrap();
        let [one, two] = &layout.tracks[..] else { panic!() };
        assert_eq!(two.first_sample, one.first_sample + one.samples, "no sample between them");
        assert_eq!(two.start_frame, two.first_sample / 588, "INDEX 01 at the frame the join falls in");
        assert_eq!(two.gap_frame, two.start_frame, "no INDEX 00");
    }

    #[test]
    fn red_book_limits_are_errors() {
        let short = Layout::new(&[5 * SECOND, 3 * SECOND], &[2.0, 2.0]).unwrap_err();
        assert!(short.contains("track 2 is 3.00 s long"), "{short}");
        let long = Layout::new(&[40 * 60 * SECOND, 40 * 60 * SECOND], &[2.0, 2.0]).unwrap_err();
        assert!(long.contains("longer than a CD's 79:57:00"), "{long}");
        let many = Layout::new(&[5 * SECOND; 100], &[2.0; 100]).unwrap_err();
        assert!(many.contains("1 to 99 tracks"), "{many}");
    }

    #[test]
    fn cd_text_reads_back_and_a_damaged_pack_fails_its_crc() {
        let info = DiscInfo { title: "Northern Lights".into(), performer: "The Examples".into(), upc: None };
        let tracks: Vec<DiscTrack> = ["Aurora", "A title that runs over two packs", "Éte"]
            .iter()
            .map(|t| DiscTrack { title: (*t).into(), isrc: None, gap_s: 2.0 })
            .collect();
        let packs = cd_text(&info, &tracks);
        assert_eq!(packs.len() % 18, 0);
        let read = read_cd_text(&packs).unwrap();
        let want: Vec<(String, String)> = ["Northern Lights", "Aurora", "A title that runs over two packs", "Éte"]
            .iter()
            .map(|t| ((*t).to_owned(), "The Examples".to_owned()))
            .collect();
        assert_eq!(read, want);
        // The CRC of the standard's CCITT polynomial: "123456789" gives 0x31C3.
        assert_eq!(crc16_ccitt(b"123456789"), 0x31C3);
        let mut damaged = packs.clone();
        damaged[20] ^= 1;
        assert_eq!(read_cd_text(&damaged).unwrap_err(), "CD-TEXT pack 1 fails its CRC");
    }

    #[test]
    fn packets_have_their_sizes_and_times() {
        assert_eq!(timecode(150, ':'), "00:02:00");
        assert_eq!(timecode(359_775, ':'), "79:57:00");
        let packet = pq_packet("03", 1, 4 * 3600 * 75 + 61 * 75 + 7, "GBABC2600001", "0012345678905");
        assert_eq!(&packet[4..16], b"030104010107", "track 03, index 01, 04:01:01:07");
        assert_eq!(ddpid("0012345678905", "x").len(), 128);
        assert_eq!(ean13("012345678905"), "0012345678905");
    }
}
