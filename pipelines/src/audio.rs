//! Planar audio in blocks: what every stage, processor, decoder and
//! encoder hands around. A leaf: it depends on nothing in the crate.

/// Planar audio: one `Vec<f32>` per channel, all of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBlock {
    channels: Vec<Vec<f32>>,
    frames: usize,
}

impl AudioBlock {
    /// Silence: `channels` × `frames`.
    pub fn new(channels: usize, frames: usize) -> Self {
        Self { channels: vec![vec![0.0; frames]; channels], frames }
    }

    /// Takes ownership of planar data; every channel must have the same length.
    pub fn from_planar(channels: Vec<Vec<f32>>) -> Self {
        let frames = channels.first().map_or(0, Vec::len);
        assert!(channels.iter().all(|c| c.len() == frames), "every channel of a block has the same length");
        Self { channels, frames }
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The most frames [`Self::set_frames`] can hold without reallocating.
    pub fn capacity_frames(&self) -> usize {
        self.channels.iter().map(Vec::capacity).min().unwrap_or(0)
    }

    /// Changes the number of valid frames without reallocating, up to the
    /// capacity the block was created with.
    pub fn set_frames(&mut self, frames: usize) {
        for channel in &mut self.channels {
            assert!(frames <= channel.capacity().max(channel.len()), "set_frames beyond the block's capacity");
            channel.resize(frames, 0.0);
        }
        self.frames = frames;
    }

    pub fn channel(&self, index: usize) -> &[f32] {
        &self.channels[index]
    }

    pub fn channel_mut(&mut self, index: usize) -> &mut [f32] {
        &mut self.channels[index]
    }

    pub fn channels(&self) -> impl Iterator<Item = &[f32]> {
        self.channels.iter().map(Vec::as_slice)
    }

    pub fn channels_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.channels.iter_mut().map(Vec::as_mut_slice)
    }

    /// Left and right at once, for stereo processors.
    pub fn stereo_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        let (left, right) = self.channels.split_at_mut(1);
        (&mut left[0], &mut right[0])
    }

    pub fn into_planar(self) -> Vec<Vec<f32>> {
        self.channels
    }

    /// Sets every sample to zero.
    pub fn clear(&mut self) {
        for channel in &mut self.channels {
            channel.fill(0.0);
        }
    }
}
