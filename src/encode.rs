//! `profile encode PATTERN -o talk.mp4`: PNG frames already on disk into a
//! video, through the same safe writer as `-o talk.mp4` (what
//! scripts/make_video.sh calls).
//!
//! The frame folder is opened once (refused if others can change it, see
//! [`crate::safe_file`]) and ffmpeg reads the frames through that open
//! folder (`/proc/PID/fd/N/...`), so renaming the folder meanwhile changes
//! nothing; the video is written to a descriptor we hand ffmpeg, never to a
//! path, and named at the end without replacing anything unless
//! `--overwrite`.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::cli::EncodeArgs;
use crate::output::frames::pattern::{FrameFormat, FramePattern};
use crate::output::video::{spawn_ffmpeg_into, wait_ffmpeg, VideoFormat};
use crate::safe_file::{SafeDir, Target, TempFile};

/// Bytes of a sidecar read at most (it is a one-line JSON object).
const MAX_SIDECAR: u64 = 64 << 10;

/// Runs `profile encode`.
pub fn encode(args: EncodeArgs) -> Result<()> {
    let pattern = FramePattern::parse(&args.pattern)?;
    if pattern.format != FrameFormat::Png {
        bail!(
            "SVG frames can't be assembled into a video: write PNG frames (-g 'frames/fg%04d.png')"
        );
    }
    let format = VideoFormat::from_path(&args.output).with_context(|| {
        format!(
            "-o {}: the video must end in .mp4, .webm or .gif",
            args.output.display()
        )
    })?;
    let dir = SafeDir::open(pattern.dir(), false)
        .with_context(|| format!("cannot read frames from {}", pattern.dir().display()))?;
    let mut numbers: Vec<u64> = pattern
        .existing(&dir)?
        .iter()
        .filter_map(|n| pattern.number_of(n))
        .collect();
    numbers.sort_unstable();
    let start = match args.start_number {
        Some(s) => s,
        None => *numbers
            .first()
            .with_context(|| format!("no frames match {}", pattern.display()))?,
    };
    // ffmpeg's image2 reads from the first number up to the first gap.
    let count = numbers
        .iter()
        .skip_while(|n| **n < start)
        .zip(start..)
        .take_while(|(n, want)| *n == want)
        .count();
    if count == 0 {
        bail!(
            "no frame {} found",
            dir.shown(&pattern.file_name(start)).display()
        );
    }
    let fps = match args.fps {
        Some(f) => f,
        None => sidecar_fps(&dir, &pattern)?,
    };
    if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
        bail!("--fps must be a number above 0 and at most 1000, got {fps}");
    }
    let transparent = has_alpha(&dir, &pattern.file_name(start))?;
    if transparent && format != VideoFormat::Webm {
        bail!("the frames are transparent: use .webm (H.264 and GIF have no alpha channel)");
    }
    let target = Target::resolve(&args.output, args.overwrite)?;
    let Target::File {
        dir: out_dir,
        name,
        replace,
    } = &target
    else {
        bail!("-o {}: a video must go to a file", args.output.display());
    };
    let temp = TempFile::new(out_dir, name)?;
    // The open folder, as ffmpeg (a child of ours) sees it.
    let input = PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        dir.as_raw_fd()
    ))
    .join(pattern.file_pattern());
    let mut ffargs: Vec<String> = vec![
        "-framerate".into(),
        format!("{fps}"),
        "-start_number".into(),
        start.to_string(),
        "-f".into(),
        "image2".into(),
        "-i".into(),
        input.to_string_lossy().into_owned(),
        "-frames:v".into(),
        count.to_string(),
    ];
    if format == VideoFormat::Mp4 {
        // Frames of an odd size (older runs) padded for H.264.
        ffargs.extend(["-vf".into(), "pad=ceil(iw/2)*2:ceil(ih/2)*2".into()]);
    }
    ffargs.extend(format.codec_args(transparent));
    let child = spawn_ffmpeg_into(&ffargs, Stdio::null(), &temp, &args.output)?;
    wait_ffmpeg(child)?;
    temp.persist(*replace, true)?;
    eprintln!(
        "wrote {}: {count} frames at {fps} fps ({:.1} s)",
        args.output.display(),
        count as f64 / fps
    );
    Ok(())
}

/// The fps `-E` and `render` wrote beside the frames.
fn sidecar_fps(dir: &SafeDir, pattern: &FramePattern) -> Result<f64> {
    let path = pattern.sidecar();
    let name = path
        .file_name()
        .and_then(OsStr::to_str)
        .context("the sidecar names no file")?;
    let text = read_small(dir, name).with_context(|| {
        format!(
            "no --fps and no readable {} (written by profile -E and render): give --fps",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the JSON profile writes", path.display()))?;
    v.get("fps")
        .and_then(serde_json::Value::as_f64)
        .with_context(|| format!("{} has no fps", path.display()))
}

/// A small regular file of the folder, not through a link.
fn read_small(dir: &SafeDir, name: &str) -> Result<String> {
    let mut f = dir.open_regular(name)?;
    let mut s = String::new();
    f.by_ref().take(MAX_SIDECAR).read_to_string(&mut s)?;
    Ok(s)
}

/// Whether a PNG frame has any pixel that is not opaque.
fn has_alpha(dir: &SafeDir, name: &str) -> Result<bool> {
    let f = dir.open_regular(name)?;
    let shown = dir.shown(name);
    let mut dec = png::Decoder::new(std::io::BufReader::new(f));
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec
        .read_info()
        .with_context(|| format!("{} is not a PNG", shown.display()))?;
    let (color, depth) = reader.output_color_type();
    let mut buf = vec![0; reader.output_buffer_size().context("frame too large")?];
    reader
        .next_frame(&mut buf)
        .with_context(|| format!("{} is not a whole PNG", shown.display()))?;
    let step = match (color, depth) {
        (png::ColorType::Rgba, png::BitDepth::Eight) => 4,
        (png::ColorType::GrayscaleAlpha, png::BitDepth::Eight) => 2,
        _ => return Ok(false),
    };
    Ok(buf.chunks_exact(step).any(|px| px[step - 1] != 255))
}
