//! A progress bar on standard error when it is a terminal, counted in bytes.
//! Nothing is drawn with `--quiet`, with `--json`, or when standard error is not a
//! terminal, so scripts and logs see no control characters.

use std::io::IsTerminal;

/// A byte-counting progress bar that may be disabled.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar for `total` bytes (a spinner when the total is unknown), labelled `what`.
    pub fn new(enabled: bool, total: Option<u64>, what: &str) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let (bar, template) = match total {
                Some(total) => (
                    indicatif::ProgressBar::new(total),
                    format!("{what} {{bar:30}} {{bytes}}/{{total_bytes}} ({{bytes_per_sec}}, {{eta}} left)"),
                ),
                None => {
                    (indicatif::ProgressBar::new_spinner(), format!("{{spinner}} {what} {{bytes}} ({{bytes_per_sec}})"))
                }
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(&template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar }
    }

    /// Counts `bytes` more.
    pub fn add(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
