//! Golden samples of stored events: CI fails when today's types no longer
//! read yesterday's data.
//!
//! [`EventSamples`] keeps one JSON file per event kind and schema version
//! in a folder of your crate (say `tests/event-samples/`), committed with
//! the code. Give it one sample value of each event (or an aggregate and a
//! sample of each of its events), and [`verify`](EventSamples::verify):
//!
//! - a sample whose kind and version have no file yet is recorded (the
//!   first run after adding an event or raising its
//!   [`VERSION`](crate::event::DomainEvent::VERSION); commit the new file);
//! - every recorded file must still decode with today's types, through the
//!   same path a load takes: the kind resolved through
//!   [`ALIASES`](crate::event::DomainEvent::ALIASES), older versions
//!   upcast. A file that no longer decodes fails with a diff between the
//!   recorded payload and today's sample; a file whose kind no event
//!   declares (a `KIND` changed without an alias) fails too, unless an
//!   aggregate given with [`aggregate`](EventSamples::aggregate) retired
//!   that kind.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use sourcery_core::event::DomainEvent;
//! use sourcery_core::test::schema::EventSamples;
//!
//! #[derive(Serialize, Deserialize)]
//! struct FundsDeposited { amount: u64 }
//! impl DomainEvent for FundsDeposited { const KIND: &'static str = "account.deposited"; }
//!
//! # let folder = tempfile::tempdir().unwrap();
//! # let folder = folder.path().join("event-samples");
//! // In a test: `EventSamples::new("tests/event-samples")` (relative to
//! // the crate's root, where `cargo test` runs).
//! let report = EventSamples::new(&folder)
//!     .event(FundsDeposited { amount: 5 })
//!     .verify()?;
//! assert_eq!(report.recorded.len(), 1, "first run: the sample is written");
//!
//! let report = EventSamples::new(&folder)
//!     .event(FundsDeposited { amount: 5 })
//!     .verify()?;
//! assert_eq!(report.checked, 1, "later runs: the recorded sample still decodes");
//! # Ok::<(), sourcery_core::test::schema::SampleFailures>(())
//! ```
//!
//! Samples are JSON: the helper reads and writes them with
//! [`JsonCodec`], whatever codec your store uses.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::codec::JsonCodec;
use crate::event::{DecodeEvent, DecodeFailure, DomainEvent, RawEvent};

/// Decodes a payload as one registered type: `Ok(None)` when the kind is
/// not one it decodes.
type Decoder = Box<dyn Fn(RawEvent<'_>) -> Result<Option<()>, DecodeFailure> + Send + Sync>;

/// The golden samples of a set of events, kept in one folder.
///
/// See the [module docs](self).
pub struct EventSamples {
    folder: PathBuf,
    samples: Vec<Sample>,
    decoders: Vec<(Vec<&'static str>, Decoder)>,
    retired: BTreeSet<&'static str>,
    required: Vec<(&'static str, &'static str)>,
    record_missing: bool,
}

/// Today's sample of one event.
struct Sample {
    kind: &'static str,
    version: u32,
    payload: Result<serde_json::Value, String>,
}

/// What a sample file holds.
#[derive(Debug, Serialize, Deserialize)]
struct SampleFile {
    kind: String,
    schema_version: u32,
    payload: serde_json::Value,
}

impl EventSamples {
    /// Samples kept in `folder` (created when the first sample is
    /// recorded). A relative path is relative to the working directory:
    /// under `cargo test`, the crate's root.
    pub fn new(folder: impl Into<PathBuf>) -> Self {
        Self {
            folder: folder.into(),
            samples: Vec::new(),
            decoders: Vec::new(),
            retired: BTreeSet::new(),
            required: Vec::new(),
            record_missing: true,
        }
    }

    /// Adds today's sample of event `E`: recorded under its kind and
    /// version when that file is missing, compared with the recorded files
    /// otherwise. `E` also decodes the recorded files of its kind and
    /// aliases.
    #[must_use]
    #[expect(
        clippy::needless_pass_by_value,
        reason = "samples are handed over like values: `.event(FundsDeposited { .. })`"
    )]
    pub fn event<E: DomainEvent>(mut self, sample: E) -> Self {
        self.samples.push(Sample {
            kind: E::KIND,
            version: E::VERSION,
            payload: serde_json::to_value(&sample).map_err(|error| error.to_string()),
        });
        self.decoders.push((E::decoded_kinds(), decoder::<E>()));
        self
    }

    /// Adds aggregate `A`: its event enum decodes the recorded files of
    /// all its events' kinds and aliases, the kinds it retired
    /// ([`Aggregate::RETIRED_KINDS`]) may keep their files, and every
    /// event of `A` must have a sample (given with [`event`](Self::event)).
    #[must_use]
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        self.decoders
            .push((A::Event::decoded_kinds(), decoder::<A::Event>()));
        self.retired.extend(A::RETIRED_KINDS.iter().copied());
        self.required
            .extend(A::Event::event_kinds().iter().map(|kind| (A::KIND, *kind)));
        self
    }

    /// Whether a sample without a file is recorded (the default) or is a
    /// failure. Turn recording off where the files must already be
    /// committed.
    #[must_use]
    pub fn record_missing(mut self, record: bool) -> Self {
        self.record_missing = record;
        self
    }

    /// Records the missing samples and checks every recorded one.
    ///
    /// # Errors
    ///
    /// [`SampleFailures`] listing every problem: a recorded sample that no
    /// longer decodes (with a diff against today's sample), a recorded kind
    /// no event declares, an event of an aggregate without a sample, a
    /// folder or file that cannot be read or written.
    pub fn verify(&self) -> Result<SampleReport, SampleFailures> {
        let mut report = SampleReport::default();
        let mut failures = Vec::new();
        for (aggregate, kind) in &self.required {
            if !self.samples.iter().any(|sample| sample.kind == *kind) {
                failures.push(SampleFailure::NoSample {
                    aggregate,
                    kind: (*kind).to_owned(),
                });
            }
        }
        for sample in &self.samples {
            if let Err(failure) = self.record(sample, &mut report) {
                failures.push(failure);
            }
        }
        match self.recorded_files() {
            Ok(files) => {
                for path in files {
                    match self.check(&path) {
                        Ok(()) => report.checked += 1,
                        Err(failure) => failures.push(failure),
                    }
                }
            }
            Err(failure) => failures.push(failure),
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(SampleFailures { failures })
        }
    }

    /// [`verify`](Self::verify), panicking with every failure: for tests.
    ///
    /// # Panics
    ///
    /// When [`verify`](Self::verify) fails.
    #[track_caller]
    #[expect(
        clippy::must_use_candidate,
        reason = "tests call it for its panic; the report is there for those who want it"
    )]
    pub fn assert(&self) -> SampleReport {
        match self.verify() {
            Ok(report) => report,
            Err(failures) => panic!("{failures}"),
        }
    }

    fn path_of(&self, kind: &str, version: u32) -> PathBuf {
        self.folder.join(file_name(kind)).join(format!("v{version}.json"))
    }

    /// Writes `sample` when its file is missing.
    fn record(&self, sample: &Sample, report: &mut SampleReport) -> Result<(), SampleFailure> {
        let path = self.path_of(sample.kind, sample.version);
        if path.exists() {
            return Ok(());
        }
        let payload = sample.payload.clone().map_err(|message| SampleFailure::Encode {
            kind: sample.kind.to_owned(),
            message,
        })?;
        if !self.record_missing {
            return Err(SampleFailure::NotRecorded { path });
        }
        let file = SampleFile {
            kind: sample.kind.to_owned(),
            schema_version: sample.version,
            payload,
        };
        let io = |source| SampleFailure::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let mut text = serde_json::to_string_pretty(&file).map_err(|error| SampleFailure::Encode {
            kind: sample.kind.to_owned(),
            message: error.to_string(),
        })?;
        text.push('\n');
        fs::write(&path, text).map_err(io)?;
        report.recorded.push(path);
        Ok(())
    }

    /// Every `*.json` file one level below the folder, sorted.
    fn recorded_files(&self) -> Result<Vec<PathBuf>, SampleFailure> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| SampleFailure::Io { path, source }
        };
        let mut files = Vec::new();
        let entries = match fs::read_dir(&self.folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(files),
            Err(error) => return Err(io(&self.folder)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.folder))?;
            if !entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                continue;
            }
            for file in fs::read_dir(entry.path()).map_err(io(&entry.path()))? {
                let file = file.map_err(io(&entry.path()))?;
                let path = file.path();
                if path.extension().is_some_and(|extension| extension == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// Decodes one recorded file with today's types.
    fn check(&self, path: &Path) -> Result<(), SampleFailure> {
        let text = fs::read_to_string(path).map_err(|source| SampleFailure::Io {
            path: path.to_owned(),
            source,
        })?;
        let file: SampleFile = serde_json::from_str(&text).map_err(|error| SampleFailure::Malformed {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        if self.retired.contains(file.kind.as_str()) {
            return Ok(());
        }
        let data = serde_json::to_vec(&file.payload).map_err(|error| SampleFailure::Malformed {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        let raw = RawEvent {
            kind: &file.kind,
            schema_version: file.schema_version,
            data: &data,
        };
        let mut decoded = false;
        for (kinds, decode) in &self.decoders {
            if !kinds.contains(&file.kind.as_str()) {
                continue;
            }
            match decode(raw) {
                Ok(Some(())) => decoded = true,
                Ok(None) => {}
                Err(failure) => {
                    return Err(SampleFailure::NoLongerDecodes {
                        path: path.to_owned(),
                        kind: file.kind.clone(),
                        version: file.schema_version,
                        reason: failure_chain(&failure),
                        diff: self.diff_against_today(&file),
                    });
                }
            }
        }
        if decoded {
            Ok(())
        } else {
            Err(SampleFailure::UnknownKind {
                path: path.to_owned(),
                kind: file.kind,
                known: self.known_kinds(),
            })
        }
    }

    /// The diff between a recorded payload and today's sample of the event
    /// that decodes its kind, if there is one.
    fn diff_against_today(&self, file: &SampleFile) -> String {
        let today = self.samples.iter().find(|sample| {
            self.decoders
                .iter()
                .any(|(kinds, _)| kinds.contains(&file.kind.as_str()) && kinds.contains(&sample.kind))
        });
        let recorded = pretty(&file.payload);
        match today.map(|sample| &sample.payload) {
            Some(Ok(payload)) => line_diff(&recorded, &pretty(payload)),
            _ => line_diff(&recorded, ""),
        }
    }

    fn known_kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self
            .decoders
            .iter()
            .flat_map(|(kinds, _)| kinds.iter().copied())
            .chain(self.retired.iter().copied())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }
}

impl fmt::Debug for EventSamples {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSamples")
            .field("folder", &self.folder)
            .field("samples", &self.samples.len())
            .field("known_kinds", &self.known_kinds())
            .field("record_missing", &self.record_missing)
            .finish_non_exhaustive()
    }
}

fn decoder<T: DecodeEvent + 'static>() -> Decoder {
    Box::new(|raw| T::decode_with(&JsonCodec, raw).map(|decoded| decoded.map(|_| ())))
}

/// A kind as a folder name: characters other than ASCII letters, digits,
/// `.`, `-` and `_` are written as `%XX`.
fn file_name(kind: &str) -> String {
    let mut name = String::with_capacity(kind.len());
    for byte in kind.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b'_') {
            name.push(char::from(byte));
        } else {
            let _ = write!(name, "%{byte:02X}");
        }
    }
    if name.is_empty() || name.starts_with('.') {
        name.insert(0, '%');
    }
    name
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn failure_chain(failure: &DecodeFailure) -> String {
    let mut text = failure.to_string();
    let mut source = std::error::Error::source(failure);
    while let Some(error) = source {
        let _ = write!(text, ": {error}");
        source = error.source();
    }
    text
}

/// A line diff of `recorded` against `today`: `-` lines only recorded, `+`
/// lines only today, `  ` lines in both (longest common subsequence).
fn line_diff(recorded: &str, today: &str) -> String {
    let a: Vec<&str> = recorded.lines().collect();
    let b: Vec<&str> = today.lines().collect();
    // lcs[i][j]: the common subsequence length of a[i..] and b[j..].
    let mut lcs = vec![vec![0_usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "  {}", a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "- {}", a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "+ {}", b[j]);
            j += 1;
        }
    }
    out
}

/// What [`EventSamples::verify`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SampleReport {
    /// The sample files written by this run (new kinds or versions):
    /// commit them.
    pub recorded: Vec<PathBuf>,
    /// How many recorded files were decoded with today's types.
    pub checked: usize,
}

/// Why the samples do not pass: every problem found.
#[derive(Debug, thiserror::Error)]
pub struct SampleFailures {
    /// The problems, in the order found.
    pub failures: Vec<SampleFailure>,
}

impl fmt::Display for SampleFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} golden sample problem(s):", self.failures.len())?;
        for failure in &self.failures {
            writeln!(f, "\n- {failure}")?;
            if let SampleFailure::NoLongerDecodes { diff, .. } = failure {
                writeln!(f, "  recorded (-) against today's sample (+):")?;
                for line in diff.lines() {
                    writeln!(f, "    {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// One problem with the golden samples.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleFailure {
    /// A recorded sample no longer decodes with today's types: the event's
    /// shape changed without a new [`VERSION`](crate::event::DomainEvent::VERSION)
    /// and upcaster (or with a broken one).
    #[error(
        "the recorded sample {path} (kind `{kind}`, schema version {version}) no longer decodes: {reason}; \
         raise the event's VERSION and upcast the old shape, or make the change compatible"
    )]
    NoLongerDecodes {
        /// The sample file.
        path: PathBuf,
        /// Its kind.
        kind: String,
        /// Its schema version.
        version: u32,
        /// Why decoding failed.
        reason: String,
        /// The recorded payload against today's sample, line by line.
        diff: String,
    },
    /// A recorded sample's kind is decoded by no event: a `KIND` changed
    /// without an alias, or an event was removed without retiring its kind.
    #[error(
        "the recorded sample {path} has the kind `{kind}`, which no event decodes (known: {known:?}); \
         if the event was renamed, add the old kind to its aliases; if it was removed, retire the kind on the aggregate"
    )]
    UnknownKind {
        /// The sample file.
        path: PathBuf,
        /// Its kind.
        kind: String,
        /// The kinds today's events decode, and the retired ones.
        known: Vec<&'static str>,
    },
    /// An event of an aggregate given to [`EventSamples::aggregate`] has
    /// no sample.
    #[error("the event kind `{kind}` of aggregate `{aggregate}` has no sample: add one with `.event(..)`")]
    NoSample {
        /// The aggregate's kind.
        aggregate: &'static str,
        /// The event kind without a sample.
        kind: String,
    },
    /// A sample has no file and recording is off.
    #[error("the sample {path} is not recorded: run the tests where recording is on and commit the file")]
    NotRecorded {
        /// The missing file.
        path: PathBuf,
    },
    /// Today's sample does not encode as JSON.
    #[error("the sample of `{kind}` does not encode as JSON: {message}")]
    Encode {
        /// The event kind.
        kind: String,
        /// What serde reported.
        message: String,
    },
    /// A sample file is not one this helper wrote.
    #[error("the sample file {path} is malformed: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A folder or file could not be read or written.
    #[error("cannot read or write {path}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_safe_folder_names() {
        assert_eq!(file_name("account.deposited"), "account.deposited");
        assert_eq!(file_name("a/b c"), "a%2Fb%20c");
        assert_eq!(file_name(".."), "%..");
        assert_eq!(file_name(""), "%");
    }

    #[test]
    fn the_diff_marks_removed_and_added_lines() {
        let diff = line_diff("{\n  \"amount\": 5\n}", "{\n  \"amount\": \"5\"\n}");
        assert_eq!(diff, "  {\n-   \"amount\": 5\n+   \"amount\": \"5\"\n  }\n");
    }
}
