//! Progress bars on standard error: one bar at a time, counted in bytes (with a
//! rate and time left) or in operations. Whether they are drawn at all is the
//! settings' decision (a terminal, not `--quiet`, not `--json`), so scripts and
//! logs never see control characters.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a bar counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: shown with a rate and the time left.
    Bytes,
    /// Operations (files renamed, backed up, restored).
    Operations,
}

/// Progress bars that may be disabled; safe to drive from several threads.
pub struct Progress {
    enabled: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress {
    /// Bars drawn only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Progress { enabled, bar: Mutex::new(None) }
    }

    /// A bar labelled `what` for `total` units (a spinner when the total is unknown).
    pub fn start(&self, what: &str, unit: Unit, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let (bar, template) = match (total, unit) {
            (Some(total), Unit::Bytes) => (
                ProgressBar::new(total),
                format!("{what:<10} {{bar:30}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"),
            ),
            (Some(total), Unit::Operations) => {
                (ProgressBar::new(total), format!("{what:<10} {{bar:30}} {{pos}}/{{len}} operations ({{eta}} left)"))
            }
            (None, Unit::Bytes) => {
                (ProgressBar::new_spinner(), format!("{{spinner}} {what} {{bytes}} ({{bytes_per_sec}})"))
            }
            (None, Unit::Operations) => (ProgressBar::new_spinner(), format!("{{spinner}} {what} {{pos}} operations")),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        let mut current = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(previous) = current.replace(bar) {
            previous.finish_and_clear();
        }
    }

    /// Counts `n` more units on the current bar.
    pub fn add(&self, n: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(n);
        }
    }

    /// Prints a line on standard error above the bar (or plainly without one).
    pub fn println(&self, line: &str) {
        match self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(bar) => bar.suspend(|| crate::write_stderr(format_args!("{line}\n"))),
            None => crate::write_stderr(format_args!("{line}\n")),
        }
    }

    /// An installer's progress event.
    pub fn install_event(&self, event: upkg_install::Progress) {
        match event {
            upkg_install::Progress::Start { stage, total } => {
                let unit = if stage.counts_bytes() { Unit::Bytes } else { Unit::Operations };
                self.start(stage.label(), unit, Some(total));
            }
            upkg_install::Progress::Advance(n) => self.add(n),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
