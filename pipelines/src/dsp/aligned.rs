//! A chain's output realigned with its input: a processor with lookahead
//! (the limiters) gives its output `latency` frames late, so the first
//! `latency` frames out are dropped and, at the end, as much silence is
//! pushed through to bring out the tail. The stream that leaves is exactly
//! as long as the one that went in, sample-aligned with it.

use crate::audio::AudioBlock;

pub struct Aligned {
    latency_frames: usize,
    to_drop: usize,
    out: AudioBlock,
}

impl Aligned {
    /// For a chain `latency_frames` late, on blocks of at most
    /// `max_block_frames`.
    pub fn new(latency_frames: usize, channels: usize, max_block_frames: usize) -> Self {
        Self { latency_frames, to_drop: latency_frames, out: AudioBlock::new(channels, max_block_frames) }
    }

    /// What of a processed block follows the latency (`None` while it is
    /// still being dropped).
    pub fn take<'a>(&'a mut self, processed: &'a mut AudioBlock) -> Option<&'a mut AudioBlock> {
        let drop = self.to_drop.min(processed.frames());
        self.to_drop -= drop;
        if drop == processed.frames() {
            return None;
        }
        if drop == 0 {
            return Some(processed);
        }
        self.out.set_frames(processed.frames() - drop);
        for (out, channel) in self.out.channels_mut().zip(processed.channels()) {
            out.copy_from_slice(&channel[drop..]);
        }
        Some(&mut self.out)
    }

    /// The chain's latency (frames): how much silence brings out its tail.
    pub fn latency_frames(&self) -> usize {
        self.latency_frames
    }
}

/// Runs `push` over blocks of silence in `work`, at most `block_frames`
/// each, adding up to `frames`: what brings out a chain's tail.
pub fn push_silence<E>(
    frames: usize,
    block_frames: usize,
    work: &mut AudioBlock,
    mut push: impl FnMut(&mut AudioBlock) -> Result<(), E>,
) -> Result<(), E> {
    let mut remaining = frames;
    while remaining > 0 {
        let chunk = remaining.min(block_frames);
        work.set_frames(chunk);
        work.clear();
        push(work)?;
        remaining -= chunk;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_the_latency_and_flushes_the_tail() {
        // A "processor" that delays by 5 frames, over blocks of 4.
        let latency = 5;
        let input: Vec<f32> = (1..=11).map(|n| n as f32).collect();
        let mut delayed: Vec<f32> = vec![0.0; latency];
        let mut aligned = Aligned::new(latency, 1, 4);
        let mut out = Vec::new();
        let mut work = AudioBlock::new(1, 4);
        let mut run = |work: &mut AudioBlock, out: &mut Vec<f32>, aligned: &mut Aligned| {
            for s in work.channel_mut(0) {
                delayed.push(*s);
                *s = delayed.remove(0);
            }
            if let Some(block) = aligned.take(work) {
                out.extend_from_slice(block.channel(0));
            }
        };
        for chunk in input.chunks(4) {
            work.set_frames(chunk.len());
            work.channel_mut(0).copy_from_slice(chunk);
            run(&mut work, &mut out, &mut aligned);
        }
        push_silence(aligned.latency_frames(), 4, &mut work, |w| -> Result<(), ()> {
            run(w, &mut out, &mut aligned);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, input, "as long as the input and aligned with it");
    }
}
