//! The `-g` frame file pattern: printf-style, with exactly one `%d` or `%0Nd`
//! (what ffmpeg's image2 demuxer reads), ending in .png or .svg.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::safe_file::SafeDir;

/// Default `-g` pattern.
pub const DEFAULT_PATTERN: &str = "frames/flamegraph%04d.png";

/// What a frame file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// A PNG of the fixed canvas.
    Png,
    /// inferno's interactive SVG.
    Svg,
}

/// A parsed `-g` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePattern {
    dir: PathBuf,
    prefix: String,
    width: usize,
    suffix: String,
    /// PNG or SVG, from the extension.
    pub format: FrameFormat,
}

impl FramePattern {
    /// Parses a pattern such as `out/fg%04d.png`.
    pub fn parse(pattern: &str) -> Result<FramePattern> {
        if pattern.ends_with('/') {
            bail!("frame pattern {pattern:?} ends in '/': it names a folder, not frame files");
        }
        let path = Path::new(pattern);
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .with_context(|| format!("frame pattern {pattern:?} names no file"))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.to_string_lossy().contains('%') {
            bail!("frame pattern {pattern:?}: the frame number must be in the file name, not the folder");
        }
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut width = None;
        let mut chars = file.chars().peekable();
        while let Some(c) = chars.next() {
            let out = if width.is_some() {
                &mut suffix
            } else {
                &mut prefix
            };
            if c != '%' {
                out.push(c);
                continue;
            }
            if chars.peek() == Some(&'%') {
                chars.next();
                out.push('%');
                continue;
            }
            let mut spec = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                spec.push(*d);
                chars.next();
            }
            if chars.next() != Some('d') {
                bail!("frame pattern {pattern:?}: only %d or %0Nd (and %% for a percent sign) are allowed");
            }
            if width.is_some() {
                bail!("frame pattern {pattern:?} has more than one frame number; it needs exactly one %d or %0Nd");
            }
            let w = if spec.is_empty() {
                0
            } else if spec.starts_with('0') && spec.len() > 1 {
                spec[1..]
                    .parse::<usize>()
                    .ok()
                    .filter(|w| *w <= 12)
                    .with_context(|| {
                        format!("frame pattern {pattern:?}: a width of 1 to 12 digits is needed")
                    })?
            } else {
                bail!("frame pattern {pattern:?}: pad with zeros (%0{spec}d), as ffmpeg expects");
            };
            width = Some(w);
        }
        let Some(width) = width else {
            bail!("frame pattern {pattern:?} has no frame number; it needs exactly one %d or %0Nd, e.g. frames/flamegraph%04d.png");
        };
        let format = match suffix.rsplit_once('.').map(|(_, ext)| ext) {
            Some(e) if e.eq_ignore_ascii_case("png") => FrameFormat::Png,
            Some(e) if e.eq_ignore_ascii_case("svg") => FrameFormat::Svg,
            _ => bail!("frame pattern {pattern:?} must end in .png or .svg"),
        };
        Ok(FramePattern {
            dir,
            prefix,
            width,
            suffix,
            format,
        })
    }

    /// The folder frames go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of frame `n`.
    pub fn file_name(&self, n: u64) -> String {
        format!("{}{:0w$}{}", self.prefix, n, self.suffix, w = self.width)
    }

    /// The pattern as users write it (`out/fg%04d.png`), for messages.
    pub fn display(&self) -> String {
        self.dir.join(self.file_pattern()).display().to_string()
    }

    /// The path of frame `n`.
    pub fn path(&self, n: u64) -> PathBuf {
        self.dir.join(self.file_name(n))
    }

    /// The JSON sidecar beside the frames (`out/fg.video.json` for
    /// `out/fg%04d.png`): what scripts/make_video.sh needs to know.
    pub fn sidecar(&self) -> PathBuf {
        let stem = self.prefix.trim_end_matches(['-', '_', '.']);
        let stem = if stem.is_empty() { "frames" } else { stem };
        self.dir.join(format!("{stem}.video.json"))
    }

    /// The file part as ffmpeg's image2 reads it (`fg%04d.png`).
    pub fn file_pattern(&self) -> String {
        let num = if self.width == 0 {
            "%d".to_string()
        } else {
            format!("%0{}d", self.width)
        };
        let esc = |s: &str| s.replace('%', "%%");
        format!("{}{num}{}", esc(&self.prefix), esc(&self.suffix))
    }

    /// The frame number a file name of this pattern holds.
    pub fn number_of(&self, name: &str) -> Option<u64> {
        if !self.matches(name) {
            return None;
        }
        name.strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?
            .parse()
            .ok()
    }

    /// Whether a file name is a frame of this pattern.
    pub fn matches(&self, name: &str) -> bool {
        let Some(digits) = name
            .strip_prefix(&self.prefix)
            .and_then(|r| r.strip_suffix(&self.suffix))
        else {
            return false;
        };
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (self.width == 0 || digits.len() >= self.width)
    }

    /// Existing files of the folder that match the pattern, sorted.
    pub fn existing(&self, dir: &SafeDir) -> Result<Vec<String>> {
        Ok(dir
            .names()?
            .into_iter()
            .filter(|n| self.matches(n))
            .collect())
    }

    /// Makes the folder ready before sampling starts: creates it, opens it
    /// (refusing a folder others can change, see [`SafeDir`]), checks it
    /// is writable, and refuses to overwrite earlier frames unless
    /// `overwrite`, in which case they are removed (so a video made from the
    /// folder holds this run's frames only). Every frame is then written
    /// through the folder this returns.
    pub fn prepare(&self, overwrite: bool) -> Result<Arc<SafeDir>> {
        let dir = SafeDir::open(&self.dir, true)
            .with_context(|| format!("cannot write frames to {}", self.dir.display()))?;
        dir.check_writable()
            .with_context(|| format!("cannot write frames to {}", self.dir.display()))?;
        let existing = self.existing(&dir)?;
        if let Some(first) = existing.first() {
            if !overwrite {
                bail!(
                    "{} already exists ({} frame file(s) match the pattern); use --overwrite to replace them, or another -g pattern",
                    dir.shown(first).display(),
                    existing.len()
                );
            }
            for f in &existing {
                dir.remove(f)?;
            }
        }
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_frames() {
        let p = FramePattern::parse("out/fg%04d.png").unwrap();
        assert_eq!(p.path(7), PathBuf::from("out/fg0007.png"));
        assert_eq!(p.format, FrameFormat::Png);
        let p = FramePattern::parse("f%d.SVG").unwrap();
        assert_eq!(p.path(12), PathBuf::from("./f12.SVG"));
        assert_eq!(p.format, FrameFormat::Svg);
        let p = FramePattern::parse("a/100%%-%06d.png").unwrap();
        assert_eq!(p.file_name(3), "100%-000003.png");
        assert_eq!(p.display(), "a/100%%-%06d.png");
        assert_eq!(
            FramePattern::parse(DEFAULT_PATTERN).unwrap().file_name(0),
            "flamegraph0000.png"
        );
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "frames/fg.png",
            "frames/fg%04d%04d.png",
            "frames/fg%s.png",
            "frames/fg%4d.png",
            "frames/fg%04d.jpg",
            "frames/fg%04d",
            "fr%02dames/fg%04d.png",
            "frames/fg%",
            "frames/",
            "/f%04d.png/",
            "out/f%04d.png/",
        ] {
            assert!(FramePattern::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn matches_only_its_frames() {
        let p = FramePattern::parse("d/fg%04d.png").unwrap();
        assert!(p.matches("fg0001.png"));
        assert!(p.matches("fg12345.png"));
        assert!(!p.matches("fg01.png"));
        assert!(!p.matches("fg0001.png.tmp"));
        assert!(!p.matches("fgabcd.png"));
        assert!(!p.matches("other0001.png"));
    }

    #[test]
    fn prepare_refuses_existing_frames_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let pattern = format!("{}/sub/fg%03d.png", dir.path().display());
        let p = FramePattern::parse(&pattern).unwrap();
        p.prepare(false).unwrap();
        use std::fs;
        fs::write(p.path(1), b"x").unwrap();
        fs::write(p.dir().join("keep.txt"), b"x").unwrap();
        let err = p.prepare(false).unwrap_err().to_string();
        assert!(err.contains("--overwrite"), "{err}");
        p.prepare(true).unwrap();
        assert!(!p.path(1).exists());
        assert!(p.dir().join("keep.txt").exists());
    }
}
