//! The service's store: an append-only journal of [`Event`]s, one JSON object per line, written
//! and `fsync`ed before a call is answered, and replayed at start.
//!
//! A crash can leave a torn last line; it is dropped (and the file cut back to the last complete
//! line), since its call was never answered. When the journal has grown past `compact_after`
//! lines, [`Journal::compact`] rewrites it from the current state (through a temporary file,
//! `fsync` and `rename`, so a crash leaves either the old or the new file).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::engine::Event;

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// File system error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A complete line that is not an event (not a torn write: the file was changed by hand or by
    /// another version).
    #[error("{path}: line {line} is not a journal event: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        reason: String,
    },
}

/// An open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    lines: usize,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and returns it with the events it holds.
    pub fn open(path: &Path) -> Result<(Journal, Vec<Event>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let mut events = Vec::new();
        let mut good_len: u64 = 0;
        if path.exists() {
            let mut reader = BufReader::new(File::open(path).map_err(io)?);
            let mut line = String::new();
            let mut n = 0;
            loop {
                line.clear();
                let read = reader.read_line(&mut line).map_err(io)?;
                if read == 0 {
                    break;
                }
                n += 1;
                if !line.ends_with('\n') {
                    tracing::warn!(path = %path.display(), line = n, "journal: dropping a torn last line");
                    break;
                }
                let event: Event =
                    serde_json::from_str(line.trim_end()).map_err(|e| JournalError::Corrupt {
                        path: path.to_owned(),
                        line: n,
                        reason: e.to_string(),
                    })?;
                events.push(event);
                good_len += read as u64;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.set_len(good_len).map_err(io)?;
        let lines = events.len();
        Ok((
            Journal {
                path: path.to_owned(),
                file,
                lines,
            },
            events,
        ))
    }

    /// Appends events and makes them durable.
    pub fn append(&mut self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for e in events {
            // Events are plain data: serialising them cannot fail.
            serde_json::to_writer(&mut buf, e).map_err(|e| JournalError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            buf.push(b'\n');
        }
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.lines += events.len();
        Ok(())
    }

    /// Lines in the file.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Replaces the journal with `events` (the current state, from [`crate::engine::Engine`]).
    pub fn compact(&mut self, events: &[Event]) -> Result<(), JournalError> {
        let tmp = self.path.with_extension("compact");
        let io = |source| JournalError::Io {
            path: tmp.clone(),
            source,
        };
        {
            let mut f = File::create(&tmp).map_err(io)?;
            for e in events {
                let line = serde_json::to_string(e).map_err(|e| io(std::io::Error::other(e)))?;
                f.write_all(line.as_bytes()).map_err(io)?;
                f.write_all(b"\n").map_err(io)?;
            }
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        self.file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.lines = events.len();
        Ok(())
    }
}
