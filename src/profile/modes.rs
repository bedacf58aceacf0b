//! Frame modes: what one frame of the video shows, given the intervals so
//! far. Pure functions of the interval profiles, shared by every renderer.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use super::{Profile, StackKey};

/// `--frame-mode`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameMode {
    /// Each frame shows its own interval (the default).
    Interval,
    /// Everything sampled so far.
    Cumulative,
    /// The last N intervals.
    Window(usize),
    /// Every interval so far, older ones weighted down by F per frame.
    Decay(f64),
}

impl FromStr for FrameMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            None if s == "interval" => Ok(FrameMode::Interval),
            None if s == "cumulative" => Ok(FrameMode::Cumulative),
            Some(("window", n)) => match n.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(FrameMode::Window(n)),
                _ => Err(format!(
                    "window:{n}: N must be a whole number of intervals, at least 1"
                )),
            },
            Some(("decay", f)) => match f.parse::<f64>() {
                Ok(f) if f > 0.0 && f < 1.0 => Ok(FrameMode::Decay(f)),
                _ => Err(format!(
                    "decay:{f}: F must be a factor between 0 and 1 (exclusive)"
                )),
            },
            _ => Err(format!(
                "unknown frame mode {s:?}; expected interval, cumulative, window:N or decay:F"
            )),
        }
    }
}

impl fmt::Display for FrameMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameMode::Interval => write!(f, "interval"),
            FrameMode::Cumulative => write!(f, "cumulative"),
            FrameMode::Window(n) => write!(f, "window:{n}"),
            FrameMode::Decay(x) => write!(f, "decay:{x}"),
        }
    }
}

/// Turns the stream of interval profiles into the stream of frame profiles.
#[derive(Debug)]
pub struct FrameModeState {
    mode: FrameMode,
    window: VecDeque<Profile>,
    sum: Profile,
    weights: HashMap<StackKey, f64>,
}

impl FrameModeState {
    /// A fresh state for `mode`.
    pub fn new(mode: FrameMode) -> Self {
        Self {
            mode,
            window: VecDeque::new(),
            sum: Profile::default(),
            weights: HashMap::new(),
        }
    }

    /// The frame for the next interval. Its `loss` is always the interval's
    /// own (what this frame's interval lost); counts and time range follow
    /// the mode.
    pub fn next(&mut self, interval: &Profile) -> Profile {
        let mut frame = match self.mode {
            FrameMode::Interval => interval.clone(),
            FrameMode::Cumulative => {
                self.sum.merge(interval);
                self.sum.clone()
            }
            FrameMode::Window(n) => {
                self.window.push_back(interval.clone());
                while self.window.len() > n {
                    self.window.pop_front();
                }
                let mut frame = Profile::default();
                for p in &self.window {
                    frame.merge(p);
                }
                frame
            }
            FrameMode::Decay(factor) => {
                for w in self.weights.values_mut() {
                    *w *= factor;
                }
                for (key, n) in &interval.counts {
                    *self.weights.entry(key.clone()).or_insert(0.0) += *n as f64;
                }
                // Below half a sample a stack has faded out.
                self.weights.retain(|_, w| *w >= 0.5);
                self.sum.merge(&Profile {
                    counts: Default::default(),
                    ..interval.clone()
                });
                Profile {
                    counts: self
                        .weights
                        .iter()
                        .map(|(k, w)| (k.clone(), w.round() as u64))
                        .filter(|(_, n)| *n > 0)
                        .collect(),
                    ..self.sum.clone()
                }
            }
        };
        frame.loss = interval.loss;
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Frame, Stack};
    use std::time::Duration;

    fn interval(i: u64, f: &str, n: u64) -> Profile {
        let mut p = Profile {
            index: i,
            start: Duration::from_secs(i),
            duration: Duration::from_secs(1),
            ..Default::default()
        };
        p.add(
            StackKey {
                comm: "w".into(),
                pid: 1,
                user: Stack::Frames(vec![Frame::from(f)]),
                kernel: Stack::Absent,
            },
            n,
        );
        p.loss.counted = n;
        p
    }

    #[test]
    fn parses_modes() {
        assert_eq!("interval".parse(), Ok(FrameMode::Interval));
        assert_eq!("cumulative".parse(), Ok(FrameMode::Cumulative));
        assert_eq!("window:5".parse(), Ok(FrameMode::Window(5)));
        assert_eq!("decay:0.5".parse(), Ok(FrameMode::Decay(0.5)));
        for bad in [
            "window:0", "window:x", "decay:1", "decay:0", "decay:-1", "sliding", "",
        ] {
            assert!(bad.parse::<FrameMode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn interval_cumulative_window() {
        let ivs = [
            interval(0, "a", 10),
            interval(1, "b", 20),
            interval(2, "a", 30),
        ];
        let mut s = FrameModeState::new(FrameMode::Interval);
        let f: Vec<u64> = ivs.iter().map(|p| s.next(p).samples()).collect();
        assert_eq!(f, vec![10, 20, 30]);

        let mut s = FrameModeState::new(FrameMode::Cumulative);
        let frames: Vec<Profile> = ivs.iter().map(|p| s.next(p)).collect();
        assert_eq!(
            frames.iter().map(Profile::samples).collect::<Vec<_>>(),
            vec![10, 30, 60]
        );
        assert_eq!(frames[2].start, Duration::ZERO);
        assert_eq!(frames[2].duration, Duration::from_secs(3));
        assert_eq!(frames[2].loss.counted, 30, "loss is the interval's own");

        let mut s = FrameModeState::new(FrameMode::Window(2));
        let frames: Vec<Profile> = ivs.iter().map(|p| s.next(p)).collect();
        assert_eq!(
            frames.iter().map(Profile::samples).collect::<Vec<_>>(),
            vec![10, 30, 50]
        );
        assert_eq!(frames[2].start, Duration::from_secs(1));
    }

    #[test]
    fn decay_fades_old_stacks() {
        let mut s = FrameModeState::new(FrameMode::Decay(0.5));
        s.next(&interval(0, "a", 40));
        let f = s.next(&interval(1, "b", 10));
        let by_leaf = |p: &Profile, leaf: &str| {
            p.counts
                .iter()
                .find(|(k, _)| k.user == Stack::Frames(vec![Frame::from(leaf)]))
                .map(|(_, n)| *n)
        };
        assert_eq!(by_leaf(&f, "a"), Some(20));
        assert_eq!(by_leaf(&f, "b"), Some(10));
        let mut last = f;
        for i in 2..10 {
            last = s.next(&interval(i, "b", 10));
        }
        assert_eq!(by_leaf(&last, "a"), None, "faded out");
        assert_eq!(by_leaf(&last, "b"), Some(20));
    }
}
