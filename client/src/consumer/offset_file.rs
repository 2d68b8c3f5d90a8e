//! Broadcasting consumers keep their offsets in a local file (RocketMQ:
//! `~/.rocketmq_offsets/<clientId>/<group>/offsets.json`), written atomically
//! (temporary file, fsync, rename) so a crash leaves the old or the new file, never half.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::route::MessageQueue;
use crate::ClientError;

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    topic: String,
    broker_name: String,
    queue_id: i32,
    offset: i64,
}

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileBody {
    offset_table: Vec<Entry>,
}

/// Where a broadcasting group's offsets live: `<root>/<group>/offsets.json`.
pub fn offsets_path(root: &Path, group: &str) -> PathBuf {
    root.join(group).join("offsets.json")
}

/// Reads the offsets; a missing file is an empty table, a corrupt one an error naming it.
pub fn load(path: &Path) -> Result<BTreeMap<MessageQueue, i64>, ClientError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(ClientError::InvalidArgument(format!(
                "cannot read the offset file {}: {e}",
                path.display()
            )))
        }
    };
    let body: FileBody = serde_json::from_slice(&text).map_err(|e| {
        ClientError::InvalidArgument(format!(
            "the offset file {} is corrupt: {e}",
            path.display()
        ))
    })?;
    Ok(body
        .offset_table
        .into_iter()
        .map(|e| {
            (
                MessageQueue {
                    topic: e.topic,
                    broker_name: e.broker_name,
                    queue_id: e.queue_id,
                },
                e.offset,
            )
        })
        .collect())
}

/// Writes the offsets atomically.
pub fn store(path: &Path, offsets: &BTreeMap<MessageQueue, i64>) -> Result<(), ClientError> {
    let io = |what: &str, e: std::io::Error| {
        ClientError::InvalidArgument(format!(
            "cannot {what} the offset file {}: {e}",
            path.display()
        ))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    let body = FileBody {
        offset_table: offsets
            .iter()
            .map(|(q, o)| Entry {
                topic: q.topic.clone(),
                broker_name: q.broker_name.clone(),
                queue_id: q.queue_id,
                offset: *o,
            })
            .collect(),
    };
    let text = serde_json::to_vec_pretty(&body)
        .map_err(|e| ClientError::InvalidArgument(format!("cannot encode offsets: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", e))?;
        f.write_all(&text).map_err(|e| io("write", e))?;
        f.sync_all().map_err(|e| io("sync", e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io("replace", e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn offsets_round_trip_and_corruption_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = offsets_path(dir.path(), "g1");
        assert!(load(&path).unwrap().is_empty());
        let mut m = BTreeMap::new();
        m.insert(
            MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: 3,
            },
            42,
        );
        store(&path, &m).unwrap();
        assert_eq!(load(&path).unwrap(), m);
        std::fs::write(&path, b"{not json").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("corrupt") && e.contains("offsets.json"), "{e}");
    }
}
