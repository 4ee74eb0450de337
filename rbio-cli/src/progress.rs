//! Progress bars on stderr, shown only when stderr is a terminal (never in pipes, files or
//! tests, so output that is parsed stays clean).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use rbio_recovery::{Phase, Progress};

/// A progress bar that is a no-op when stderr is not a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
    /// Whether the length shown is an estimate: the time left is then not shown.
    estimated: Arc<AtomicBool>,
}

/// The rate in whole units per second.
fn rate(state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let _ = out.write_str(&rate_text(state.per_sec()));
}

fn rate_text(per_sec: f64) -> String {
    format!("{}/s", per_sec.round() as u64)
}

/// "~" before a length that is an estimate.
fn estimate_mark(estimated: &AtomicBool, out: &mut dyn std::fmt::Write) {
    if estimated.load(Ordering::Relaxed) {
        let _ = out.write_char('~');
    }
}

/// ", N left" when the time left can be estimated.
fn time_left(estimated: &AtomicBool, state: &ProgressState, out: &mut dyn std::fmt::Write) {
    let estimated = estimated.load(Ordering::Relaxed);
    if let Some(text) = time_left_text(estimated, state.per_sec(), state.pos(), state.len()) {
        let _ = out.write_str(&text);
    }
}

/// The time left at `per_sec` from `pos` to `len`, when it can be told: the length is a count
/// (not an estimate), there is a rate to go by, and something is left.
fn time_left_text(estimated: bool, per_sec: f64, pos: u64, len: Option<u64>) -> Option<String> {
    let left = len?.checked_sub(pos).filter(|&left| left > 0)?;
    if estimated || per_sec <= 0.0 || !per_sec.is_finite() {
        return None;
    }
    let left_time = Duration::from_secs_f64(left as f64 / per_sec);
    Some(format!(", {} left", indicatif::HumanDuration(left_time)))
}

impl Bar {
    /// A bar labelled `label`, drawn on stderr if it is a terminal.
    pub fn new(label: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        Bar::drawn(label, bar)
    }

    /// A bar that draws nothing.
    fn hidden() -> Bar {
        Bar {
            bar: None,
            estimated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// `bar`, styled and labelled `label`.
    fn drawn(label: &str, bar: ProgressBar) -> Bar {
        let estimated = Arc::new(AtomicBool::new(false));
        let (mark, left) = (estimated.clone(), estimated.clone());
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40}] {human_pos}/{mark}{human_len} ({rate}{left}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", rate)
        .with_key(
            "mark",
            move |_: &ProgressState, out: &mut dyn std::fmt::Write| estimate_mark(&mark, out),
        )
        .with_key(
            "left",
            move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                time_left(&left, state, out)
            },
        )
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar {
            bar: Some(bar),
            estimated,
        }
    }

    /// Shows `done` of `total` (a count).
    pub fn set(&self, done: u64, total: u64) {
        self.estimated.store(false, Ordering::Relaxed);
        self.show(done, total);
    }

    fn show(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Shows a bringup progress report (validation counts slots; other phases are one step).
    /// While the checkpoint is still being parsed the total is an estimate: marked `~`, with
    /// no time left.
    pub fn bringup(&self, progress: Progress) {
        if let Some(bar) = &self.bar {
            let phase = match (progress.phase, progress.total_is_estimate) {
                (Phase::Select, _) => "selecting checkpoint",
                (Phase::Parse, _) => "parsing checkpoint",
                (Phase::Apply, _) => "applying",
                (Phase::Validate, false) => "validating slot headers",
                (Phase::Validate, true) => "validating slot headers (total estimated, parsing)",
            };
            bar.set_message(phase);
            self.estimated
                .store(progress.total_is_estimate, Ordering::Relaxed);
            self.show(progress.done, progress.total);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One bar per device, drawn together on stderr if it is a terminal.
pub struct Bars {
    bars: Vec<Bar>,
}

impl Bars {
    /// A bar for each of `labels`, in that order.
    pub fn new(labels: &[String]) -> Bars {
        if !std::io::stderr().is_terminal() {
            return Bars {
                bars: labels.iter().map(|_| Bar::hidden()).collect(),
            };
        }
        let group = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let bars = labels
            .iter()
            .map(|label| Bar::drawn(label, group.add(ProgressBar::new(0))))
            .collect();
        Bars { bars }
    }

    /// Shows device `device_index`'s bringup progress on its bar.
    pub fn bringup(&self, device_index: usize, progress: Progress) {
        if let Some(bar) = self.bars.get(device_index) {
            bar.bringup(progress);
        }
    }

    /// Removes every bar from the terminal.
    pub fn finish(&self) {
        self.bars.iter().for_each(Bar::finish);
    }
}

/// A device's label on its bar: the last `width` characters of its path, so the names of
/// several devices stay apart.
pub fn device_label(path: &std::path::Path, width: usize) -> String {
    let text = path.display().to_string();
    let chars: Vec<char> = text.chars().collect();
    match chars.len().checked_sub(width) {
        Some(cut) if cut > 0 => format!("…{}", chars[cut + 1..].iter().collect::<String>()),
        _ => text,
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_labels_keep_the_end_of_the_path() {
        let path = std::path::Path::new("/dev/disk/by-id/nvme-drive-0");
        assert_eq!(device_label(path, 40), "/dev/disk/by-id/nvme-drive-0");
        assert_eq!(device_label(path, 10), "…e-drive-0");
        assert_eq!(device_label(path, 10).chars().count(), 10);
    }

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(rate_text(55_139.367), "55139/s");
        assert_eq!(rate_text(0.4), "0/s");
    }

    #[test]
    fn time_left_only_when_it_can_be_told() {
        assert_eq!(
            time_left_text(false, 100.0, 0, Some(1000)).as_deref(),
            Some(", 10 seconds left")
        );
        assert_eq!(time_left_text(true, 100.0, 0, Some(1000)), None, "estimate");
        assert_eq!(
            time_left_text(false, 0.0, 0, Some(1000)),
            None,
            "no rate yet"
        );
        assert_eq!(time_left_text(false, 100.0, 1000, Some(1000)), None, "done");
        assert_eq!(time_left_text(false, 100.0, 10, None), None, "no length");
    }
}
