//! The progress of a set of downloads, shown while they run: the packages
//! of `kiln fetch` and of a build's fetch stage, a base image, the indexes
//! `kiln lock` reads.
//!
//! A set is one [`Downloads`], shared by every transfer in it (they run in
//! parallel) and fed the bytes as they arrive, not when a file completes.
//! On a terminal it is one `indicatif` bar in [`super::bars`], below the
//! build's step spinner: bytes done and expected, rate, time left, files
//! done and expected. Elsewhere (CI logs, pipes) it is a plain line now
//! and then, at most every [`LINE_INTERVAL`] and every tenth of the bytes,
//! so a log gets a handful of lines however fast or slow the mirror. Both
//! end with one summary line. A set in which nothing is downloaded (all
//! cached) shows nothing at all, and `--quiet` shows nothing either.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The least time between two plain progress lines.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// The least share of the expected bytes between two plain progress lines,
/// in tenths.
const LINE_STEP_TENTHS: u64 = 1;

/// How often the bar is redrawn when no byte arrives, so its rate and
/// time left stay current during a stall.
const BAR_TICK: Duration = Duration::from_millis(200);

/// The progress of one set of downloads. Cloning it gives another handle
/// on the same set.
#[derive(Clone)]
pub struct Downloads {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads")
            .field("unit", &self.inner.unit)
            .field("bytes", &self.inner.bytes.load(Ordering::Relaxed))
            .field(
                "total_bytes",
                &self.inner.total_bytes.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

struct Inner {
    /// What one file is called in the count: `package`, `file`.
    unit: &'static str,
    /// When the set was first shown: the summary's time counts from here,
    /// not from the cache lookups before.
    shown_at: OnceLock<Instant>,
    bytes: AtomicU64,
    total_bytes: AtomicU64,
    files: AtomicUsize,
    total_files: AtomicUsize,
    /// Files expected whose size is not known until the server announces
    /// it.
    unsized_files: AtomicUsize,
    show: Mutex<Show>,
}

/// How the set is shown.
enum Show {
    /// `--quiet`, offline, or the set is finished.
    Nothing,
    /// Nothing is expected yet; the bar or lines start with the first file.
    NotYet,
    /// On a terminal.
    Bar(indicatif::ProgressBar),
    /// Elsewhere.
    Lines(Throttle),
}

impl Downloads {
    /// A set of downloads of `unit`s (`package`, `file`), with nothing
    /// expected yet: nothing is shown until [`Downloads::expect`] adds a
    /// file.
    pub fn new(unit: &'static str) -> Downloads {
        let show = if super::quiet() {
            Show::Nothing
        } else {
            Show::NotYet
        };
        Downloads {
            inner: Arc::new(Inner {
                unit,
                shown_at: OnceLock::new(),
                bytes: AtomicU64::new(0),
                total_bytes: AtomicU64::new(0),
                files: AtomicUsize::new(0),
                total_files: AtomicUsize::new(0),
                unsized_files: AtomicUsize::new(0),
                show: Mutex::new(show),
            }),
        }
    }

    /// A set that is never shown (offline, where nothing is downloaded).
    pub fn hidden(unit: &'static str) -> Downloads {
        let downloads = Downloads::new(unit);
        if let Ok(mut show) = downloads.inner.show.lock() {
            *show = Show::Nothing;
        }
        downloads
    }

    /// Adds `files` downloads of `bytes` in all to the set. The first file
    /// shows the set.
    pub fn expect(&self, files: usize, bytes: u64) {
        if files == 0 && bytes == 0 {
            return;
        }
        self.inner.total_files.fetch_add(files, Ordering::Relaxed);
        let total_bytes = self.inner.total_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let Ok(mut show) = self.inner.show.lock() else {
            return;
        };
        match &mut *show {
            Show::NotYet => self.start(&mut show),
            Show::Bar(bar) => {
                bar.set_length(total_bytes);
                bar.set_message(self.count());
            }
            _ => {}
        }
    }

    /// Adds one download whose size is not known yet (an image found by
    /// name): its size counts once the server announces it.
    pub fn expect_unsized(&self) {
        self.inner.unsized_files.fetch_add(1, Ordering::Relaxed);
        self.expect(1, 0);
    }

    /// The server announced the size of a download: it counts if the set
    /// expects one of unknown size (a size the set already counts is not
    /// counted twice).
    pub fn announced(&self, bytes: u64) {
        let unsized_one = self
            .inner
            .unsized_files
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if unsized_one {
            self.expect(0, bytes);
        }
    }

    /// Starts showing the set once it has a file and a size to show (an
    /// image of unknown size, once its size is announced or its first
    /// bytes arrive): a bar of 0 bytes would show as full.
    fn start(&self, show: &mut Show) {
        let total_bytes = self.inner.total_bytes.load(Ordering::Relaxed);
        let bytes = self.inner.bytes.load(Ordering::Relaxed);
        if self.inner.total_files.load(Ordering::Relaxed) == 0 || total_bytes.max(bytes) == 0 {
            return;
        }
        self.inner.shown_at.get_or_init(Instant::now);
        *show = match super::bars() {
            Some(bars) => Show::Bar(self.new_bar(bars, total_bytes)),
            None => Show::Lines(Throttle::new(Instant::now())),
        };
    }

    fn new_bar(&self, bars: &indicatif::MultiProgress, total_bytes: u64) -> indicatif::ProgressBar {
        let bar = bars.add(indicatif::ProgressBar::new(total_bytes));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} downloading {msg}, {binary_bytes}/{binary_total_bytes}, {binary_bytes_per_sec}, {eta} left [{wide_bar}]",
        ) {
            // The bar takes what the text leaves of the line: an 80-column
            // terminal still shows the line whole, on one line.
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(self.count());
        bar.set_position(self.inner.bytes.load(Ordering::Relaxed));
        bar.enable_steady_tick(BAR_TICK);
        bar
    }

    /// `40/112 packages`.
    fn count(&self) -> String {
        let total = self.inner.total_files.load(Ordering::Relaxed);
        format!(
            "{}/{}",
            self.inner.files.load(Ordering::Relaxed),
            counted(total, self.inner.unit)
        )
    }

    /// The bytes received so far and the bytes expected.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.inner.bytes.load(Ordering::Relaxed),
            self.inner.total_bytes.load(Ordering::Relaxed),
        )
    }

    /// Counts `bytes` more received, as they arrive.
    pub fn received(&self, bytes: u64) {
        let done = self.inner.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.update(done);
    }

    /// Takes back `bytes` received by a transfer that failed and is tried
    /// again from the start.
    pub fn unreceived(&self, bytes: u64) {
        let before = self
            .inner
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            })
            .unwrap_or(0);
        self.update(before.saturating_sub(bytes));
    }

    /// Counts one more file complete.
    pub fn file_done(&self) {
        self.inner.files.fetch_add(1, Ordering::Relaxed);
        let done = self.inner.bytes.load(Ordering::Relaxed);
        if let Ok(show) = self.inner.show.lock()
            && let Show::Bar(bar) = &*show
        {
            bar.set_message(self.count());
        }
        self.update(done);
    }

    fn update(&self, done: u64) {
        // A transfer does not wait for another one's line to be printed.
        let Ok(mut show) = self.inner.show.try_lock() else {
            return;
        };
        match &mut *show {
            Show::Bar(bar) => bar.set_position(done),
            Show::Lines(throttle) => {
                let total = self.inner.total_bytes.load(Ordering::Relaxed);
                if let Some(rate) = throttle.due(Instant::now(), done, total) {
                    let line = line(
                        done,
                        total,
                        self.inner.files.load(Ordering::Relaxed),
                        self.inner.total_files.load(Ordering::Relaxed),
                        self.inner.unit,
                        rate,
                    );
                    super::status(&line);
                }
            }
            Show::NotYet => self.start(&mut show),
            Show::Nothing => {}
        }
    }

    /// Ends the set: removes the bar and prints one summary line, when
    /// anything was downloaded. A set dropped without this (a download
    /// failed) only removes the bar.
    pub fn finish(&self) {
        let Ok(mut show) = self.inner.show.lock() else {
            return;
        };
        let shown = std::mem::replace(&mut *show, Show::Nothing);
        let summary = summary(
            self.inner.bytes.load(Ordering::Relaxed),
            self.inner.files.load(Ordering::Relaxed),
            self.inner.unit,
            self.inner
                .shown_at
                .get()
                .map_or(Duration::ZERO, Instant::elapsed),
        );
        match shown {
            Show::Bar(bar) => {
                // The last frame, complete, then the summary in its place.
                bar.finish();
                bar.finish_and_clear();
                super::status(&summary);
            }
            Show::Lines(_) => super::status(&summary),
            Show::Nothing | Show::NotYet => {}
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(show) = self.show.get_mut()
            && let Show::Bar(bar) = show
        {
            bar.finish_and_clear();
        }
    }
}

/// When the next plain progress line is due: [`LINE_INTERVAL`] after the
/// last one and a tenth of the expected bytes further, whichever comes
/// later, so that neither a fast nor a slow download floods a log.
#[derive(Debug, Clone)]
pub struct Throttle {
    last_at: Instant,
    last_bytes: u64,
}

impl Throttle {
    /// Counting from `now`, with nothing received.
    pub fn new(now: Instant) -> Throttle {
        Throttle {
            last_at: now,
            last_bytes: 0,
        }
    }

    /// Whether a line is due at `now` with `done` of `total` bytes
    /// received; if so, the rate since the last line in bytes per second
    /// (and the next line counts from here).
    pub fn due(&mut self, now: Instant, done: u64, total: u64) -> Option<f64> {
        let waited = now.saturating_duration_since(self.last_at);
        let step = (total / 10 * LINE_STEP_TENTHS).max(1);
        if waited < LINE_INTERVAL || done < self.last_bytes.saturating_add(step) {
            return None;
        }
        let rate = (done - self.last_bytes) as f64 / waited.as_secs_f64();
        self.last_at = now;
        self.last_bytes = done;
        Some(rate)
    }
}

/// `1 package`, `112 packages`.
fn counted(n: usize, unit: &str) -> String {
    if n == 1 {
        format!("{n} {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// A plain progress line: `downloading: 61.2 of 137.0 MiB, 40 of 112
/// packages, 12.3 MiB/s`.
pub fn line(
    done: u64,
    total: u64,
    files: usize,
    total_files: usize,
    unit: &str,
    bytes_per_second: f64,
) -> String {
    let (divisor, name) = scale(total.max(done));
    format!(
        "downloading: {:.1} of {:.1} {name}, {files} of {}, {}",
        done as f64 / divisor,
        total as f64 / divisor,
        counted(total_files, unit),
        rate(bytes_per_second)
    )
}

/// The line that ends a set: `downloaded 137.0 MiB (112 packages) in
/// 11.2 s, 12.3 MiB/s`.
pub fn summary(bytes: u64, files: usize, unit: &str, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    format!(
        "downloaded {} ({}) in {seconds:.1} s, {}",
        size(bytes),
        counted(files, unit),
        rate(bytes as f64 / seconds.max(0.001))
    )
}

/// A size for people, in the largest binary unit it reaches: `512 B`,
/// `12.0 KiB`, `137.0 MiB`, `1.2 GiB`.
pub fn size(bytes: u64) -> String {
    let (divisor, name) = scale(bytes);
    if name == "B" {
        format!("{bytes} B")
    } else {
        format!("{:.1} {name}", bytes as f64 / divisor)
    }
}

/// A rate for people: `12.3 MiB/s`.
pub fn rate(bytes_per_second: f64) -> String {
    let whole = if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
        bytes_per_second as u64
    } else {
        0
    };
    format!("{}/s", size(whole))
}

/// The binary unit to show `bytes` in, and its size.
fn scale(bytes: u64) -> (f64, &'static str) {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return (1.0, "B");
    }
    let mut divisor = 1024.0;
    let mut unit = 0;
    while bytes as f64 >= divisor * 1024.0 && unit + 1 < UNITS.len() {
        divisor *= 1024.0;
        unit += 1;
    }
    (divisor, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn sizes_take_the_largest_unit_they_reach() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(MIB - 1), "1024.0 KiB");
        assert_eq!(size(137 * MIB), "137.0 MiB");
        assert_eq!(size(1288 * MIB), "1.3 GiB");
        assert_eq!(size(3 << 40), "3.0 TiB");
    }

    #[test]
    fn rates_are_sizes_per_second() {
        assert_eq!(rate(12.3 * MIB as f64), "12.3 MiB/s");
        assert_eq!(rate(800.0), "800 B/s");
        assert_eq!(rate(0.0), "0 B/s");
        assert_eq!(rate(f64::NAN), "0 B/s");
        assert_eq!(rate(f64::INFINITY), "0 B/s");
    }

    #[test]
    fn a_line_shows_bytes_in_the_totals_unit_files_and_rate() {
        let done = 61 * MIB + MIB / 5;
        assert_eq!(
            line(done, 137 * MIB, 40, 112, "package", 12.3 * MIB as f64),
            "downloading: 61.2 of 137.0 MiB, 40 of 112 packages, 12.3 MiB/s"
        );
        // Early on, a few KiB of a GiB still read in GiB, like the total.
        assert_eq!(
            line(5 * 1024, 2 << 30, 0, 1, "file", 1024.0),
            "downloading: 0.0 of 2.0 GiB, 0 of 1 file, 1.0 KiB/s"
        );
    }

    #[test]
    fn the_summary_gives_size_count_time_and_average_rate() {
        assert_eq!(
            summary(137 * MIB, 112, "package", Duration::from_secs(10)),
            "downloaded 137.0 MiB (112 packages) in 10.0 s, 13.7 MiB/s"
        );
        // A download too fast to time does not divide by zero.
        assert!(
            summary(MIB, 1, "file", Duration::ZERO)
                .starts_with("downloaded 1.0 MiB (1 file) in 0.0 s, ")
        );
    }

    #[test]
    fn lines_wait_for_both_the_interval_and_a_tenth_of_the_bytes() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        let total = 100 * MIB;
        // Fast: all of it in a second, no line (the summary says it).
        assert_eq!(
            throttle.due(start + Duration::from_secs(1), total, total),
            None
        );

        let mut throttle = Throttle::new(start);
        // 5 s, but only 5 %: not yet.
        assert_eq!(throttle.due(start + LINE_INTERVAL, 5 * MIB, total), None);
        // 10 %, but only 5 s: the rate counts from the start.
        let rate = throttle.due(start + LINE_INTERVAL, 10 * MIB, total);
        assert_eq!(rate, Some(2.0 * MIB as f64));
        // A further 50 % in 2 s: not yet, the interval wins.
        let at = start + LINE_INTERVAL;
        assert_eq!(
            throttle.due(at + Duration::from_secs(2), 60 * MIB, total),
            None
        );
        // 5 s after the last line: due, with the rate since that line.
        let rate = throttle.due(at + LINE_INTERVAL, 60 * MIB, total);
        assert_eq!(rate, Some(10.0 * MIB as f64));
        // Nothing new since: a stall prints no line however long it lasts.
        assert_eq!(
            throttle.due(at + Duration::from_secs(60), 60 * MIB, total),
            None
        );
    }

    #[test]
    fn lines_for_a_set_of_unknown_size_still_wait_for_the_interval() {
        let start = Instant::now();
        let mut throttle = Throttle::new(start);
        assert_eq!(throttle.due(start + Duration::from_secs(4), MIB, 0), None);
        assert!(throttle.due(start + LINE_INTERVAL, MIB, 0).is_some());
        assert_eq!(throttle.due(start + 2 * LINE_INTERVAL, MIB, 0), None);
    }

    #[test]
    fn a_set_with_nothing_to_download_shows_nothing_and_says_nothing() {
        let downloads = Downloads::new("package");
        downloads.expect(0, 0);
        downloads.finish();
        assert!(matches!(
            *downloads.inner.show.lock().expect("lock"),
            Show::NotYet | Show::Nothing
        ));
    }

    #[test]
    fn an_announced_size_counts_only_for_a_file_of_unknown_size() {
        let downloads = Downloads::new("file");
        downloads.expect(1, 10);
        downloads.announced(10);
        assert_eq!(downloads.inner.total_bytes.load(Ordering::Relaxed), 10);
        downloads.expect_unsized();
        downloads.announced(32);
        downloads.announced(32);
        assert_eq!(downloads.inner.total_bytes.load(Ordering::Relaxed), 42);
        assert_eq!(downloads.count(), "0/2 files");
    }

    #[test]
    fn a_finished_set_shows_nothing_more() {
        let downloads = Downloads::new("file");
        downloads.finish();
        downloads.expect(1, 10);
        downloads.received(10);
        assert!(matches!(
            *downloads.inner.show.lock().expect("lock"),
            Show::Nothing
        ));
    }

    #[test]
    fn a_hidden_set_stays_hidden() {
        let downloads = Downloads::hidden("package");
        downloads.expect(2, 20);
        downloads.received(20);
        assert!(matches!(
            *downloads.inner.show.lock().expect("lock"),
            Show::Nothing
        ));
    }

    #[test]
    fn retried_bytes_are_taken_back() {
        let downloads = Downloads::new("file");
        downloads.expect(1, 10);
        downloads.received(6);
        downloads.unreceived(6);
        downloads.received(10);
        downloads.file_done();
        assert_eq!(downloads.inner.bytes.load(Ordering::Relaxed), 10);
        assert_eq!(downloads.count(), "1/1 file");
    }
}
