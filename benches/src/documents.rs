//! The case documents the anchors write: real ones, as Liandong returned them when cases were
//! filed, so etcd and PostgreSQL store records of the same size and shape.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{anyhow, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How many documents a Liandong run keeps for the anchors (they cycle through them).
pub const DOCUMENTS_KEPT_MAX: usize = 256;

/// Documents collected from Liandong's replies: the first [`DOCUMENTS_KEPT_MAX`] kept, the size
/// of every one counted.
#[derive(Default)]
pub struct DocumentSample {
    inner: Mutex<Collected>,
}

#[derive(Default, Serialize, Deserialize)]
struct Collected {
    documents: Vec<Value>,
    bytes_total: u64,
    count: u64,
}

impl DocumentSample {
    /// Counts one reply's document, keeping it while fewer than the limit are kept.
    pub fn note(&self, document: &[u8]) {
        let Ok(mut collected) = self.inner.lock() else {
            return;
        };
        collected.bytes_total += document.len() as u64;
        collected.count += 1;
        if collected.documents.len() < DOCUMENTS_KEPT_MAX {
            if let Ok(value) = serde_json::from_slice(document) {
                collected.documents.push(value);
            }
        }
    }

    /// The mean size of the documents counted.
    pub fn mean_bytes(&self) -> Option<u64> {
        let collected = self.inner.lock().ok()?;
        (collected.count > 0).then(|| collected.bytes_total / collected.count)
    }

    /// Writes the kept documents as JSON, for [`Documents::load`].
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let collected = self
            .inner
            .lock()
            .map_err(|_| anyhow!("document sample lock poisoned"))?;
        std::fs::write(path, serde_json::to_vec(&*collected)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The documents an anchor writes, each as the compact JSON text Liandong's reply held.
pub struct Documents {
    texts: Vec<String>,
}

impl Documents {
    /// Reads documents saved by a Liandong run (`intake --documents-out`).
    pub fn load(path: &Path) -> anyhow::Result<Documents> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "reading case documents from {} (write them first with `intake --system liandong --documents-out FILE`)",
                path.display()
            )
        })?;
        let collected: Collected = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        let texts = collected
            .documents
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()?;
        if texts.is_empty() {
            return Err(anyhow!("{} holds no case documents", path.display()));
        }
        Ok(Documents { texts })
    }

    /// The document for request `sequence`.
    pub fn get(&self, sequence: u64) -> &str {
        &self.texts[(sequence % self.texts.len() as u64) as usize]
    }

    pub fn mean_bytes(&self) -> u64 {
        let total: usize = self.texts.iter().map(String::len).sum();
        (total / self.texts.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents saved from a run load back as the same JSON, and sizes count every reply
    /// while only the first ones are kept (fails if the sample grows without bound or the
    /// anchors would write something else than Liandong's documents).
    #[test]
    fn saved_documents_load_back_bounded_and_unchanged() {
        let sample = DocumentSample::default();
        for n in 0..(DOCUMENTS_KEPT_MAX + 10) {
            sample.note(format!(r#"{{"case_id":"c-{n}","v":1}}"#).as_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documents.json");
        sample.save(&path).unwrap();
        let documents = Documents::load(&path).unwrap();
        assert_eq!(documents.texts.len(), DOCUMENTS_KEPT_MAX);
        assert_eq!(documents.get(1), r#"{"case_id":"c-1","v":1}"#);
        assert_eq!(documents.get(DOCUMENTS_KEPT_MAX as u64), documents.get(0));
        assert!(sample.mean_bytes().unwrap() >= 23);
    }
}
