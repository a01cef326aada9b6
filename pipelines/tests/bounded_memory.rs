//! Memory stays bounded however hostile the audio. A test binary of its
//! own: the process's peak resident size (Linux `VmHWM`) is then this
//! test's alone.

mod support;

use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::encode::{Encoder, Tags};
use support::{Pink, flac_24_bit};

/// Peak resident memory of this process so far, in MiB.
#[cfg(target_os = "linux")]
fn peak_resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/self/status");
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// Loud 24-bit noise, block after block, into FLAC: flacenc would make
/// each predicted frame hundreds of megabytes long here (its Rice codes
/// stop at parameter 14); the encoder must see that coming and store the
/// block verbatim without ever writing the giant frame out.
#[cfg(target_os = "linux")]
#[test]
fn encoding_loud_noise_to_flac_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.flac");
    let spec = flac_24_bit(44_100);
    let mut encoder = Encoder::create(&path, spec, &Tags::default()).unwrap();
    // Pink noise pushed hard into a ceiling, as a loud master of dense
    // material is: prediction removes part of it, and what is left is far
    // beyond 14-bit Rice codes.
    let mut pink = [Pink::new(0x2545_f491_4f6c_dd1d), Pink::new(0x9E37_79B9_7F4A_7C15)];
    let mut block = AudioBlock::new(2, 4096);
    for _ in 0..100 {
        for (channel, pink) in block.channels_mut().zip(pink.iter_mut()) {
            for sample in channel.iter_mut() {
                *sample = pink.next().clamp(-0.89, 0.89);
            }
        }
        encoder.write(&block).unwrap();
    }
    encoder.finish(&Tags::default(), None).unwrap();
    let peak = peak_resident_mib();
    assert!(peak < 64.0, "peak resident memory {peak:.0} MiB while encoding 9 s of audio");
}
