//! A -100 dBFS 1 kHz sine quantized to 16 bits with TPDF dither is still
//! in the spectrum and brings no distortion products; without dither it is
//! lost. Noise shaping moves the noise up and out of the midrange.

use lacquer_pipelines::dsp::dither::Quantizer;
use lacquer_pipelines::manifest::Dither;
use realfft::RealFftPlanner;

const RATE_HZ: f64 = 44_100.0;
const FRAMES: usize = 1 << 17;

fn quantized_spectrum_db(kind: Dither) -> Vec<f64> {
    let amplitude = 10f64.powf(-100.0 / 20.0);
    let mut quantizer = Quantizer::new(kind, 16, 1, 0xD17E);
    let mut input: Vec<f64> = (0..FRAMES)
        .map(|n| {
            let x = (amplitude * (std::f64::consts::TAU * 1000.0 * n as f64 / RATE_HZ).sin()) as f32;
            // Blackman-Harris (4 term) window.
            let t = std::f64::consts::TAU * n as f64 / FRAMES as f64;
            let w = 0.35875 - 0.48829 * t.cos() + 0.14128 * (2.0 * t).cos() - 0.01168 * (3.0 * t).cos();
            f64::from(quantizer.quantize(0, x)) / 32_768.0 * w
        })
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(FRAMES);
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out).unwrap();
    let coherent_gain = 0.35875 * FRAMES as f64 / 2.0;
    out.iter().map(|c| 20.0 * (c.norm() / coherent_gain).max(1e-30).log10()).collect()
}

fn bin(freq_hz: f64) -> usize {
    (freq_hz * FRAMES as f64 / RATE_HZ).round() as usize
}

fn peak_near(spectrum: &[f64], freq_hz: f64) -> f64 {
    let b = bin(freq_hz);
    spectrum[b - 4..=b + 4].iter().copied().fold(f64::MIN, f64::max)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[test]
fn tpdf_keeps_a_sine_far_below_one_lsb_without_distortion() {
    let spectrum = quantized_spectrum_db(Dither::Tpdf);
    let floor = median(&spectrum[bin(200.0)..bin(20_000.0)]);
    let sine = peak_near(&spectrum, 1000.0);
    assert!((sine + 100.0).abs() < 1.5, "the -100 dBFS sine reads {sine:.1} dBFS");
    assert!(sine > floor + 20.0, "it stands {:.1} dB above the noise floor ({floor:.1})", sine - floor);
    for harmonic in [2.0, 3.0, 5.0, 7.0] {
        let level = peak_near(&spectrum, 1000.0 * harmonic);
        assert!(level < floor + 12.0, "no distortion at {}: {level:.1} dBFS vs floor {floor:.1}", 1000.0 * harmonic);
    }
}

#[test]
fn without_dither_the_sine_is_truncated_away() {
    let spectrum = quantized_spectrum_db(Dither::None);
    assert!(peak_near(&spectrum, 1000.0) < -150.0, "a 0.33 LSB sine rounds to digital silence");
}

#[test]
fn shaped_dither_lowers_the_midrange_noise() {
    let flat = quantized_spectrum_db(Dither::Tpdf);
    let shaped = quantized_spectrum_db(Dither::Shaped);
    let band = |s: &[f64], low: f64, high: f64| median(&s[bin(low)..bin(high)]);
    let midrange_gain = band(&shaped, 2000.0, 5000.0) - band(&flat, 2000.0, 5000.0);
    let top_gain = band(&shaped, 16_000.0, 20_000.0) - band(&flat, 16_000.0, 20_000.0);
    assert!(midrange_gain < -8.0, "shaping lowers 2–5 kHz noise by {:.1} dB", -midrange_gain);
    assert!(top_gain > 10.0, "and raises it above 16 kHz by {top_gain:.1} dB");
    let sine = peak_near(&shaped, 1000.0);
    assert!((sine + 100.0).abs() < 1.5, "the sine survives shaping: {sine:.1}");
}
