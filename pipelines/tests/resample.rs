//! Sample-rate conversion: a full-scale 1 kHz sine converted between 44.1,
//! 48 and 96 kHz has no spurious component above -110 dBFS, keeps its
//! level, and stays aligned in time.

use lacquer_pipelines::dsp::AudioBlock;
use lacquer_pipelines::dsp::oversample::bessel_i0;
use lacquer_pipelines::dsp::resample::StreamResampler;
use realfft::RealFftPlanner;

const SPURIOUS_LIMIT_DBFS: f64 = -110.0;
const FFT_FRAMES: usize = 1 << 16;
/// Kaiser window β: side lobes far below the limit.
const WINDOW_BETA: f64 = 24.0;

fn sine(rate_hz: u32, frames: usize) -> Vec<f32> {
    (0..frames).map(|n| (std::f64::consts::TAU * 1000.0 * n as f64 / f64::from(rate_hz)).sin() as f32).collect()
}

fn convert(input: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    let mut resampler = StreamResampler::new(from_hz, to_hz, 1).unwrap();
    let mut output = vec![Vec::new()];
    // Odd block sizes, as a decoder would deliver them.
    for chunk in input.chunks(1153) {
        resampler.push(&AudioBlock::from_planar(vec![chunk.to_vec()]), &mut output).unwrap();
    }
    resampler.finish(&mut output).unwrap();
    output.pop().unwrap()
}

/// Spectrum in dB relative to a full-scale sine.
fn spectrum_dbfs(samples: &[f32]) -> Vec<f64> {
    let window: Vec<f64> = (0..FFT_FRAMES)
        .map(|n| {
            let r = 2.0 * n as f64 / (FFT_FRAMES - 1) as f64 - 1.0;
            bessel_i0(WINDOW_BETA * (1.0 - r * r).sqrt()) / bessel_i0(WINDOW_BETA)
        })
        .collect();
    let coherent_gain: f64 = window.iter().sum::<f64>() / 2.0;
    let mut input: Vec<f64> = samples.iter().zip(&window).map(|(s, w)| f64::from(*s) * w).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FFT_FRAMES);
    let mut output = fft.make_output_vec();
    fft.process(&mut input, &mut output).unwrap();
    output.iter().map(|c| 20.0 * (c.norm() / coherent_gain).max(1e-20).log10()).collect()
}

#[test]
fn no_spurious_components_and_time_aligned() {
    let pairs =
        [(44_100, 48_000), (48_000, 44_100), (48_000, 96_000), (96_000, 48_000), (44_100, 96_000), (96_000, 44_100)];
    for (from_hz, to_hz) in pairs {
        let input = sine(from_hz, (from_hz as usize) * 3);
        let output = convert(&input, from_hz, to_hz);
        let expected_len = (input.len() as u64 * u64::from(to_hz)).div_ceil(u64::from(from_hz)) as usize;
        assert_eq!(output.len(), expected_len, "{from_hz}→{to_hz}: length");

        // Aligned: the output is the same sine at the new rate (away from the edges).
        let reference = sine(to_hz, output.len());
        let worst = output[to_hz as usize / 2..output.len() - to_hz as usize / 2]
            .iter()
            .zip(&reference[to_hz as usize / 2..])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{from_hz}→{to_hz}: differs from the ideal sine by {worst}");

        let middle = (output.len() - FFT_FRAMES) / 2;
        let spectrum = spectrum_dbfs(&output[middle..middle + FFT_FRAMES]);
        let bin_hz = f64::from(to_hz) / FFT_FRAMES as f64;
        let sine_bin = (1000.0 / bin_hz).round() as usize;
        let ideal = spectrum_dbfs(&reference[middle..middle + FFT_FRAMES]);
        let level = spectrum[sine_bin] - ideal[sine_bin];
        assert!(level.abs() < 0.01, "{from_hz}→{to_hz}: the sine's level changed by {level:.4} dB");
        let main_lobe = 12;
        for (bin, &db) in spectrum.iter().enumerate() {
            if bin.abs_diff(sine_bin) > main_lobe {
                assert!(db < SPURIOUS_LIMIT_DBFS, "{from_hz}→{to_hz}: {db:.1} dBFS at {:.0} Hz", bin as f64 * bin_hz);
            }
        }
    }
}

/// The top octave survives conversion: sines at 18 and 20 kHz keep their
/// level within 0.1 dB through every conversion.
#[test]
fn the_top_octave_keeps_its_level() {
    let pairs = [(44_100, 48_000), (48_000, 44_100), (44_100, 96_000), (96_000, 44_100)];
    for (from_hz, to_hz) in pairs {
        for freq_hz in [18_000.0, 20_000.0] {
            let input: Vec<f32> = (0..from_hz as usize)
                .map(|n| (0.5 * (std::f64::consts::TAU * freq_hz * n as f64 / f64::from(from_hz)).sin()) as f32)
                .collect();
            let output = convert(&input, from_hz, to_hz);
            let middle = &output[output.len() / 4..output.len() * 3 / 4];
            let rms = |s: &[f32]| (s.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / s.len() as f64).sqrt();
            let change_db = 20.0 * (rms(middle) / rms(&input[input.len() / 4..input.len() * 3 / 4])).log10();
            assert!(change_db.abs() < 0.1, "{from_hz}→{to_hz}: {freq_hz} Hz changes by {change_db:.3} dB");
        }
    }
}
