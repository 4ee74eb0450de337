//! Progress bars on stderr, shown only when stderr is a terminal (never in pipes, files or
//! tests, so output that is parsed stays clean).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbio_recovery::{Phase, Progress};

/// A progress bar that is a no-op when stderr is not a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar labelled `label`, drawn on stderr if it is a terminal.
    pub fn new(label: &str) -> Bar {
        if !std::io::stderr().is_terminal() {
            return Bar { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>10} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar { bar: Some(bar) }
    }

    /// Shows `done` of `total`.
    pub fn set(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Shows a bringup progress report (validation counts slots; other phases are one step).
    pub fn bringup(&self, progress: Progress) {
        if let Some(bar) = &self.bar {
            let phase = match progress.phase {
                Phase::Select => "selecting checkpoint",
                Phase::Parse => "parsing checkpoint",
                Phase::Apply => "applying",
                Phase::Validate => "validating slot headers",
            };
            bar.set_message(phase);
            self.set(progress.done, progress.total);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
