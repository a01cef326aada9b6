//! Where each field of a YAML document is: a map from field paths
//! (`tracks[2].stems[0].gain_db`) to 1-based line and column, so that every
//! problem, not only the parser's, can say where to look.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// Field path → (line, column) of the key that names it, or of the node
/// itself for sequence items and the document root.
#[derive(Debug, Default)]
pub struct Locator {
    positions: HashMap<String, (usize, usize)>,
    /// Where the first alias (`*name`) is used.
    first_alias: Option<(usize, usize)>,
    /// Where a second YAML document starts (a manifest is one).
    second_document: Option<(usize, usize)>,
}

enum Frame {
    Map { path: String, pending_key: Option<String> },
    Seq { path: String, next_index: usize },
}

impl Locator {
    /// Indexes the first document of `text`. Text that does not parse yields
    /// whatever was indexed before the error.
    pub fn new(text: &str) -> Self {
        let mut positions = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        let mut first_alias = None;
        let mut second_document = None;
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let here = (span.start.line(), span.start.col() + 1);
            if matches!(event, Event::Alias(_)) && first_alias.is_none() {
                first_alias = Some(here);
            }
            let opens = match &event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        second_document = Some(here);
                        break;
                    }
                    continue;
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    continue;
                }
                Event::MappingStart(..) => Some(true),
                Event::SequenceStart(..) => Some(false),
                Event::Scalar(..) | Event::Alias(_) => None,
                _ => continue,
            };
            // Where this node sits: a key, a value, an item or the root.
            let node_path = match stack.last_mut() {
                None => String::new(),
                Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                    Some(key) => join(path, &key),
                    None => {
                        // A key. Plain scalar keys name a field.
                        let key = match &event {
                            Event::Scalar(value, ..) => value.to_string(),
                            _ => "?".to_owned(),
                        };
                        positions.entry(join(path, &key)).or_insert(here);
                        *pending_key = Some(key);
                        if opens.is_some() {
                            // A complex key: index nothing inside it.
                            stack.push(Frame::Map { path: "?".into(), pending_key: None });
                        }
                        continue;
                    }
                },
                Some(Frame::Seq { path, next_index }) => {
                    let item = format!("{path}[{next_index}]");
                    *next_index += 1;
                    item
                }
            };
            positions.entry(node_path.clone()).or_insert(here);
            match opens {
                Some(true) => stack.push(Frame::Map { path: node_path, pending_key: None }),
                Some(false) => stack.push(Frame::Seq { path: node_path, next_index: 0 }),
                None => {}
            }
        }
        Self { positions, first_alias, second_document }
    }

    /// Where a second document starts, if any.
    pub fn second_document(&self) -> Option<(usize, usize)> {
        self.second_document
    }

    /// Where the first alias (`*name`) is used, if any.
    pub fn first_alias(&self) -> Option<(usize, usize)> {
        self.first_alias
    }

    /// The position of `path`, or of its nearest ancestor that is written
    /// in the document (a missing field points at the block it belongs in).
    pub fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut candidate = path;
        loop {
            if let Some(position) = self.positions.get(candidate) {
                return Some(*position);
            }
            if candidate.is_empty() {
                return None;
            }
            // A top-level field that is not written points at the root.
            candidate = &candidate[..candidate.rfind(['.', '[']).unwrap_or(0)];
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::Locator;

    #[test]
    fn block_and_flow_styles() {
        let text = "version: 1\nalbum: { title: T, artist: A }\ntracks:\n  - id: one\n    stems:\n      - { name: vox, gain_db: 3 }\n      - name: bass\n        gain_db: -2\n";
        let locator = Locator::new(text);
        assert_eq!(locator.locate("version"), Some((1, 1)));
        assert_eq!(locator.locate("album.artist"), Some((2, 20)));
        assert_eq!(locator.locate("tracks[0]"), Some((4, 5)));
        assert_eq!(locator.locate("tracks[0].stems[0].gain_db"), Some((6, 22)));
        assert_eq!(locator.locate("tracks[0].stems[1].gain_db"), Some((8, 9)));
        // Missing fields point at their nearest written ancestor.
        assert_eq!(locator.locate("tracks[0].stems[1].pan"), Some((7, 9)));
        assert_eq!(locator.locate("tracks[0].stems[1].eq[3].q"), Some((7, 9)));
    }
}
