//! Memory stays bounded however hostile the audio. A test binary of its
//! own: the process's peak resident size (Linux `VmHWM`) is then this
//! test's alone.

use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::encode::{EncodeSpec, Encoder, Tags};
use lacquer_pipelines::manifest::{AudioFormat, Dither};

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
    let spec = EncodeSpec {
        format: AudioFormat::Flac,
        bit_depth: 24,
        rate_hz: 44_100,
        channels: 2,
        dither: Dither::None,
        dither_seed: 0,
    };
    let mut encoder = Encoder::create(&path, spec, &Tags::default()).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    // Pink noise (Paul Kellet's filter) pushed hard into a ceiling, as a
    // loud master of dense material is: prediction removes part of it, and
    // what is left is far beyond 14-bit Rice codes.
    let mut pink = [[0f32; 7]; 2];
    let mut block = AudioBlock::new(2, 4096);
    for _ in 0..100 {
        for (channel, b) in block.channels_mut().zip(pink.iter_mut()) {
            for sample in channel.iter_mut() {
                let white = noise();
                b[0] = 0.99886 * b[0] + white * 0.0555179;
                b[1] = 0.99332 * b[1] + white * 0.0750759;
                b[2] = 0.969 * b[2] + white * 0.153_852;
                b[3] = 0.8665 * b[3] + white * 0.3104856;
                b[4] = 0.55 * b[4] + white * 0.5329522;
                b[5] = -0.7616 * b[5] - white * 0.016_898;
                let value = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + white * 0.5362;
                b[6] = white * 0.115926;
                *sample = (value * 2.0).clamp(-0.89, 0.89);
            }
        }
        encoder.write(&block).unwrap();
    }
    encoder.finish(&Tags::default(), None).unwrap();
    let peak = peak_resident_mib();
    assert!(peak < 64.0, "peak resident memory {peak:.0} MiB while encoding 9 s of audio");
}
