//! Turns interval profiles into frames ready to draw: the frame mode
//! applied, the flame-graph tree built from the profile model, arranged
//! (see [`super::arrange`]), fitted to the canvas and numbered.
//!
//! Making a frame is split so that its costly part runs on the render
//! threads: [`FrameMaker::start`] (on the sampling or reading side) only
//! applies the frame mode and numbers the frame; [`PendingFrame::make`]
//! (on any thread, any number at once) builds the tree, then arranges it
//! in its turn: the arrangement (sibling order, depth lock, diff colours,
//! palette slots) depends on the frames before, so frames take their turn
//! in the order they were started, and only for that short step.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rayon::iter::{ParallelBridge, ParallelIterator};

use super::arrange::{Arranger, PrefixMap};
use super::layout::{self, Canvas, Fit, FrameInfo};
use super::palette::{self, Colors, Look};
use super::tree::{FlameTree, Namer, Naming, RawTree, TreeBuilder};
use crate::output::StackFormat;
use crate::profile::modes::{FrameMode, FrameModeState};
use crate::profile::Profile;

/// Characters of label a bar must have room for to count for the layout's
/// depth (`do_sys..`).
const LABEL_CHARS: f64 = 8.0;

/// A frame ready to draw: its tree (cut to fit, in the order to draw it),
/// how it fits the canvas, and what its header says.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The flame graph.
    pub tree: Arc<FlameTree>,
    /// Bar height, font size, depth cap.
    pub fit: Fit,
    /// The header band.
    pub info: FrameInfo,
    /// `--colors diff`: how much each bar grew since the previous frame, in
    /// points of the frame's share, by path hash.
    pub deltas: Option<Arc<PrefixMap<f32>>>,
    /// `--colors comm`: each process's palette slot, given once per run
    /// (biggest first when the run is known), so colours never change.
    pub comm_slots: Option<Arc<HashMap<String, usize>>>,
}

impl Default for Fit {
    fn default() -> Self {
        layout::fit_canvas(Canvas::default(), 1)
    }
}

impl Frame {
    /// A frame of folded lines (`stack count`), drawn in the order given.
    pub fn from_lines(lines: &[String], fit: Fit, info: FrameInfo) -> Frame {
        Frame {
            tree: Arc::new(FlameTree::from_folded(lines)),
            fit,
            info,
            deltas: None,
            comm_slots: None,
        }
    }

    /// The frame's folded lines (`stack count`) in drawing order.
    pub fn lines(&self) -> Vec<String> {
        self.tree.folded_lines()
    }
}

/// What every frame of a maker shares: fixed settings, the names, and the
/// arrangement taken in turn.
#[derive(Debug)]
struct Shared {
    naming: Naming,
    canvas: Canvas,
    colors: Colors,
    min_share: f64,
    /// Namers not in use (one per thread at most).
    namers: Mutex<Vec<Namer>>,
    /// Bars in the last tree built.
    last_size: std::sync::atomic::AtomicUsize,
    order: Mutex<Order>,
    turn: Condvar,
}

/// The arrangement, and whose turn it is.
#[derive(Debug)]
struct Order {
    next: u64,
    arranger: Arranger,
    comm_slots: Arc<HashMap<String, usize>>,
}

impl Order {
    /// Gives processes not seen before the next palette slots, while the
    /// palette has distinct colours left: the first twelve processes to
    /// matter keep their colour for the whole run.
    fn assign_slots<'a>(&mut self, comms: impl Iterator<Item = &'a str>) {
        let free = palette::CATEGORICAL
            .len()
            .saturating_sub(self.comm_slots.len());
        let new: Vec<&str> = comms
            .filter(|c| !self.comm_slots.contains_key(*c))
            .take(free)
            .collect();
        if new.is_empty() {
            return;
        }
        let slots = Arc::make_mut(&mut self.comm_slots);
        for c in new {
            let n = slots.len();
            slots.entry(c.to_string()).or_insert(n);
        }
    }
}

impl Shared {
    fn namer(&self) -> Namer {
        let mut free = self.namers.lock().unwrap_or_else(|e| e.into_inner());
        // One that grew too big is dropped here, between two trees.
        free.pop()
            .filter(|n| !n.full())
            .unwrap_or_else(|| Namer::new(self.naming))
    }

    fn give_back(&self, namer: Namer) {
        self.namers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(namer);
    }

    /// The tree of a profile, uncut and unordered.
    fn build(&self, profile: &Profile) -> RawTree {
        let mut namer = self.namer();
        // Sized like the last tree: consecutive frames are alike.
        let hint = self.last_size.load(std::sync::atomic::Ordering::Relaxed);
        let b = TreeBuilder::of_profile(profile, &mut namer, hint).seal(&namer);
        self.give_back(namer);
        self.last_size
            .store(b.len(), std::sync::atomic::Ordering::Relaxed);
        b
    }

    /// Waits for frame `seq`'s turn to arrange.
    fn wait_turn(&self, seq: u64) -> MutexGuard<'_, Order> {
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        while order.next != seq {
            order = self.turn.wait(order).unwrap_or_else(|e| e.into_inner());
        }
        order
    }

    fn end_turn(&self, mut order: MutexGuard<'_, Order>) {
        order.next += 1;
        drop(order);
        self.turn.notify_all();
    }
}

/// Turns interval profiles into frames. Shared by `-E`, `-o VIDEO`,
/// `render` and the live feed, so all draw the same frame from the same
/// intervals.
#[derive(Debug)]
pub struct FrameMaker {
    modes: FrameModeState,
    mode: FrameMode,
    target: String,
    title: String,
    start_number: u64,
    /// Frames started so far: the next one's turn to be arranged.
    next_seq: u64,
    /// The run's length, when known (render): the header's progress bar.
    run_end: Option<Duration>,
    shared: Arc<Shared>,
}

/// What the header says of a frame's own interval.
struct Own {
    samples: u64,
    duration: Duration,
    loss: crate::profile::LossReport,
}

impl Own {
    fn of(interval: &Profile) -> Own {
        Own {
            samples: interval.samples(),
            duration: interval.duration,
            loss: interval.loss,
        }
    }
}

/// A frame started: built and arranged by [`PendingFrame::make`].
#[derive(Debug)]
pub struct PendingFrame {
    seq: u64,
    profile: Profile,
    info: FrameInfo,
    shared: Arc<Shared>,
    made: bool,
}

impl FrameMaker {
    /// A maker numbering frames from `start_number`.
    pub fn new(
        mode: FrameMode,
        canvas: Canvas,
        format: StackFormat,
        target: String,
        start_number: u64,
    ) -> Self {
        let mut m = FrameMaker {
            modes: FrameModeState::new(mode),
            mode,
            target,
            title: String::new(),
            start_number,
            next_seq: 0,
            run_end: None,
            shared: Arc::new(Shared {
                naming: Naming::default(),
                canvas,
                colors: Colors::Hot,
                min_share: 0.0,
                namers: Mutex::default(),
                last_size: Default::default(),
                order: Mutex::new(Order {
                    next: 0,
                    arranger: Arranger::new(),
                    comm_slots: Arc::default(),
                }),
                turn: Condvar::new(),
            }),
        };
        m.configure(format, Look::default());
        m
    }

    fn configure(&mut self, format: StackFormat, look: Look) {
        let canvas = self.shared.canvas;
        let scale = layout::Scale::of(canvas);
        let px = LABEL_CHARS * scale.min_font as f64 * layout::FONT_WIDTH;
        let shared = Arc::get_mut(&mut self.shared).expect("configured before the first frame");
        shared.naming = Naming {
            format,
            kernel_marks: format.annotations || look.colors == Colors::Kernel,
            jit_marks: look.colors == Colors::Kernel,
        };
        shared.colors = look.colors;
        // The share of a frame a bar needs to count for the layout's depth:
        // room for a short label. Narrower stacks are still drawn, but
        // never shrink the bars.
        shared.min_share = px / (f64::from(canvas.width) - 2.0 * layout::XPAD).max(1.0);
    }

    /// Sets the title and the look.
    pub fn styled(mut self, title: String, look: Look) -> Self {
        self.title = title;
        let format = self.shared.naming.format;
        self.configure(format, look);
        self
    }

    /// `render`'s first pass: sees every interval once (with the frame
    /// mode applied; trees built on rayon's threads) so that sibling order
    /// and layout depth are fixed for the whole run, and the header can
    /// show progress.
    pub fn prime(&mut self, intervals: impl Iterator<Item = Profile> + Send) {
        #[derive(Default)]
        struct Seen {
            totals: PrefixMap<u64>,
            by_comm: HashMap<String, u64>,
            depth: usize,
            end: Duration,
        }
        impl Seen {
            fn merge(mut self, other: Seen) -> Seen {
                Arranger::add_totals(&mut self.totals, other.totals.into_iter());
                for (c, n) in other.by_comm {
                    *self.by_comm.entry(c).or_insert(0) += n;
                }
                self.depth = self.depth.max(other.depth);
                self.end = self.end.max(other.end);
                self
            }
        }
        let mut modes = FrameModeState::new(self.mode);
        let shared = self.shared.clone();
        let comm = shared.colors == Colors::Comm;
        let interval_mode = self.mode == FrameMode::Interval;
        let seen = intervals
            .map(|p| {
                let end = p.start + p.duration;
                // Each interval is its own frame: no copy needed.
                let frame = if interval_mode { p } else { modes.next(&p) };
                (frame, end)
            })
            .par_bridge()
            .fold(Seen::default, |mut seen, (frame, end)| {
                let b = shared.build(&frame);
                seen.depth = seen.depth.max(b.visible_depth(shared.min_share));
                Arranger::add_totals(&mut seen.totals, b.prefixes().map(|(h, n, _)| (h, n)));
                if comm {
                    for (name, n) in b.processes() {
                        *seen.by_comm.entry(name.to_string()).or_insert(0) += n;
                    }
                }
                seen.end = seen.end.max(end);
                seen
            })
            .reduce(Seen::default, Seen::merge);
        // Processes by their samples over the run: the biggest get the
        // first palette slots.
        let mut comms: Vec<(String, u64)> = seen.by_comm.into_iter().collect();
        comms.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // The first pass's frames may be other copies of the same frames
        // (another reader): start the names afresh so they are not kept.
        self.shared
            .namers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        let mut order = self.shared.order.lock().unwrap_or_else(|e| e.into_inner());
        order.assign_slots(comms.iter().map(|(c, _)| c.as_str()));
        order.arranger.freeze(&seen.totals, seen.depth);
        drop(order);
        self.run_end = (seen.end > Duration::ZERO).then_some(seen.end);
    }

    /// Starts the next frame, from the next interval: cheap (the frame
    /// mode and the header); [`PendingFrame::make`] does the rest.
    pub fn start(&mut self, interval: &Profile) -> PendingFrame {
        let frame = self.modes.next(interval);
        self.pending(Own::of(interval), frame)
    }

    /// [`FrameMaker::start`] on an interval the caller gives away (a
    /// recording being rendered): in `interval` mode it is the frame, not
    /// a copy of it.
    pub fn start_owned(&mut self, interval: Profile) -> PendingFrame {
        if self.mode != FrameMode::Interval {
            return self.start(&interval);
        }
        self.pending(Own::of(&interval), interval)
    }

    /// The frame `frame`, made for an interval that was `own`.
    fn pending(&mut self, own: Own, frame: Profile) -> PendingFrame {
        let loss = &own.loss;
        let lost = (loss.lost() > 0).then(|| {
            let mut why = Vec::new();
            if loss.lost_hash_full > 0 {
                why.push(format!("{} hash full", loss.lost_hash_full));
            }
            if loss.lost_in_flight > 0 {
                why.push(format!("{} in flight", loss.lost_in_flight));
            }
            why.join(", ")
        });
        let seq = self.next_seq;
        self.next_seq += 1;
        let number = self.start_number + seq;
        let end = frame.start + frame.duration;
        let info = FrameInfo {
            number,
            target: self.target.clone(),
            title: self.title.clone(),
            start: frame.start,
            duration: frame.duration,
            samples: frame.samples(),
            interval_samples: own.samples,
            interval: own.duration,
            lost,
            mode: (self.mode != FrameMode::Interval).then(|| self.mode.to_string()),
            weighted: matches!(self.mode, FrameMode::Decay(_)),
            depth_cap: None,
            progress: self
                .run_end
                .map(|e| (end.as_secs_f64() / e.as_secs_f64()).clamp(0.0, 1.0)),
        };
        PendingFrame {
            seq,
            profile: frame,
            info,
            shared: self.shared.clone(),
            made: false,
        }
    }

    /// The next frame, from the next interval, made on this thread.
    pub fn make(&mut self, interval: &Profile) -> Frame {
        self.start(interval).make()
    }
}

impl PendingFrame {
    /// The frame's number (its file name's).
    pub fn number(&self) -> u64 {
        self.info.number
    }

    /// Builds the frame's tree, then arranges it once the frames started
    /// before it are arranged.
    pub fn make(mut self) -> Frame {
        let shared = self.shared.clone();
        let built = shared.build(&self.profile);
        // The profile is not needed any more: free it before waiting.
        self.profile = Profile::default();
        let visible = built.visible_depth(shared.min_share);
        let mut order = shared.wait_turn(self.seq);
        let depth = order
            .arranger
            .observe(built.prefixes().map(|(h, n, _)| (h, n)), visible);
        let fit = layout::fit_canvas(shared.canvas, depth);
        let tree = {
            let arranger = &order.arranger;
            built.finish(fit.depth_cap, |n| arranger.order_key(n))
        };
        let deltas =
            (shared.colors == Colors::Diff).then(|| Arc::new(order.arranger.deltas(&tree)));
        let comm_slots = (shared.colors == Colors::Comm).then(|| {
            // Live: a process gets a slot of its own once it holds 2% of a
            // frame (a short-lived helper seen first would take one of the
            // twelve from a process that matters).
            let total = tree.total().max(1);
            order.assign_slots(
                tree.processes()
                    .into_iter()
                    .filter(|(_, n)| n * 50 >= total)
                    .map(|(c, _)| c),
            );
            order.comm_slots.clone()
        });
        shared.end_turn(order);
        self.made = true;
        let mut info = std::mem::take(&mut self.info);
        info.depth_cap = fit.depth_cap;
        Frame {
            tree: Arc::new(tree),
            fit,
            info,
            deltas,
            comm_slots,
        }
    }
}

impl Drop for PendingFrame {
    /// A frame dropped unmade (a cancelled run) still passes its turn, so
    /// the frames after it are not kept waiting.
    fn drop(&mut self) {
        if !self.made {
            let order = self.shared.wait_turn(self.seq);
            self.shared.end_turn(order);
        }
    }
}
