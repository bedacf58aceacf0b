//! The recording file (`.rsprof`): a run's interval profiles, written as they
//! end, read back later to render, report or export without root.
//!
//! Layout: an 8-byte magic and a u32 version, then records, each
//! `[u32 length][u32 crc32][payload]` (little endian), the payload a
//! deflate-compressed postcard encoding of a [`Record`]. The first record is
//! the run's [`Meta`]; every other one is an interval. Strings and frames
//! are interned: each interval record carries only the strings (names,
//! modules) and frames (name, module, offset, address) not seen before, and
//! stacks are lists of frame ids; frames of user code name their mapping
//! (path, range, file offset, build id) in a mapping table interned the
//! same way. Version 1 (frames were names only) and version 2 (no source
//! lines or mappings) files still read.
//!
//! Append-only and crash-safe: each interval is one write, flushed and
//! synced as it ends, so a recorder killed with -9 leaves a file whose whole
//! records all read back. A reader stops at the first truncated or corrupt
//! record and says where, keeping every interval before it.

mod reader;
mod writer;

use serde::{Deserialize, Serialize};

pub use reader::{parse, read_recording, Recording, RecordingReader};
pub use writer::RecordWriter;

/// First bytes of every recording.
pub const MAGIC: &[u8; 8] = b"RSPROF\n\0";
/// The format version this build writes.
pub const VERSION: u32 = 3;
/// The first version: frames were names only (stacks held string ids).
pub const VERSION_NAMES_ONLY: u32 = 1;
/// The second: frames with module, offset and address, but no source line
/// or mapping.
pub const VERSION_NO_MAPPINGS: u32 = 2;
/// Largest record accepted, compressed or not: anything larger is corrupt.
pub const MAX_RECORD: usize = 256 << 20;

/// What a run was: kept in the first record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// rs-profile's version.
    pub tool_version: String,
    /// The command line that made the recording.
    pub command_line: String,
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// Sampling frequency in Hz, when sampled by frequency.
    pub frequency: Option<u64>,
    /// Sampling period in events, when sampled with -c.
    pub period: Option<u64>,
    /// What was profiled ("all threads", "PID 42").
    pub target: String,
    /// Nominal interval length, nanoseconds.
    pub interval_ns: u64,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub started_unix_ns: u64,
}

/// One stack half in a record: frames are indices into the frame table
/// (into the string table in version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StackRec {
    Absent,
    Missed,
    Frames(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SampleRec {
    comm: u32,
    pid: u32,
    user: StackRec,
    kernel: StackRec,
    count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct LossRec {
    taken: u64,
    counted: u64,
    lost_hash_full: u64,
    lost_in_flight: u64,
    missing_stacks: u64,
    missed_stack_samples: u64,
    stack_collision: bool,
}

/// A frame: its name, module and source file are string ids, its mapping
/// an id in the mapping table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FrameRec {
    name: u32,
    module: Option<u32>,
    offset: Option<u64>,
    addr: Option<u64>,
    source: Option<(u32, u32)>,
    mapping: Option<u32>,
}

/// A mapping: its path and build id are string ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MappingRec {
    path: u32,
    start: u64,
    end: u64,
    file_offset: u64,
    build_id: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IntervalRec {
    index: u64,
    start_ns: u64,
    duration_ns: u64,
    /// Strings first used in this interval, appended to the string table.
    new_strings: Vec<String>,
    /// Mappings first used in this interval, appended to the mapping table.
    new_mappings: Vec<MappingRec>,
    /// Frames first used in this interval, appended to the frame table.
    new_frames: Vec<FrameRec>,
    samples: Vec<SampleRec>,
    loss: LossRec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Record {
    Meta(Meta),
    Interval(IntervalRec),
}

/// Version 2's frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FrameRecV2 {
    name: u32,
    module: Option<u32>,
    offset: Option<u64>,
    addr: Option<u64>,
}

/// Version 2's interval: no mapping table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IntervalRecV2 {
    index: u64,
    start_ns: u64,
    duration_ns: u64,
    new_strings: Vec<String>,
    new_frames: Vec<FrameRecV2>,
    samples: Vec<SampleRec>,
    loss: LossRec,
}

/// Version 2's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum RecordV2 {
    Meta(Meta),
    Interval(IntervalRecV2),
}

/// Version 1's interval: no frame table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IntervalRecV1 {
    index: u64,
    start_ns: u64,
    duration_ns: u64,
    new_strings: Vec<String>,
    samples: Vec<SampleRec>,
    loss: LossRec,
}

/// Version 1's records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum RecordV1 {
    Meta(Meta),
    Interval(IntervalRecV1),
}

#[cfg(test)]
mod tests;
