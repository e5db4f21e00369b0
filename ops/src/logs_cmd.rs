//! `liandong logs --office CODE [--follow] [--lines N] [--grep TEXT]`: the logs of the hosts
//! carrying an office (`DIR/run/<host>.log`), merged in time order, each line led by its host.
//! Colour codes (older builds wrote them) are removed. Bounded: only the last
//! [`TAIL_BYTES_MAX`] of each file are read for the tail; `--follow` reads at most
//! [`FOLLOW_CHUNK_MAX`] per host and poll, and a line longer than [`LINE_BYTES_MAX`] is cut.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::{json, Value};

use crate::commands::Report;
use crate::layout::Layout;
use crate::view::plain;

/// Bytes of each host's log read for the tail.
pub const TAIL_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Bytes of one host's log read per poll while following.
pub const FOLLOW_CHUNK_MAX: u64 = 1024 * 1024;
/// The longest line shown (longer ones are cut, marked `…`).
pub const LINE_BYTES_MAX: usize = 16 * 1024;
/// The most lines `--lines` may ask for.
pub const LINES_MAX: usize = 100_000;
/// How often `--follow` looks for new lines.
pub const FOLLOW_POLL_MS: u64 = 250;

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The office whose hosts' logs to show.
    #[arg(long)]
    pub office: String,
    /// Keep printing lines as the hosts write them, until interrupted (with `--json`: one JSON
    /// object per line).
    #[arg(long)]
    pub follow: bool,
    /// How many of the latest lines to show, all hosts together (at most 100000).
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    /// Only lines containing this text (e.g. `trace_id=530602001-2026-000001`, `ERROR`).
    #[arg(long)]
    pub grep: Option<String>,
}

/// One line of a host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub host: String,
    /// The line's RFC 3339 timestamp, or the last one before it (a continuation line).
    pub at: String,
    pub text: String,
}

/// The hosts carrying `office`, each with its log file.
fn hosts_of(layout: &Layout, office: &str) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let manifest = layout.load_manifest()?;
    let Some(entry) = manifest.offices.iter().find(|o| o.code == office) else {
        bail!(
            "no office {:?} in this federation",
            liandong_domain::echo(office)
        );
    };
    let mut hosts: Vec<String> = Vec::new();
    for member in &entry.members {
        if !hosts.contains(&member.host) {
            hosts.push(member.host.clone());
        }
    }
    Ok(hosts
        .into_iter()
        .map(|host| {
            let file = layout.log_file(&host);
            (host, file)
        })
        .collect())
}

/// A line as shown: colour removed, cut to [`LINE_BYTES_MAX`].
fn clean(raw: &[u8]) -> String {
    let cut = &raw[..raw.len().min(LINE_BYTES_MAX)];
    let mut text = plain(String::from_utf8_lossy(cut).trim_end_matches(['\n', '\r']));
    if raw.len() > LINE_BYTES_MAX {
        text.push('…');
    }
    text
}

/// The timestamp a log line starts with, if it starts with one.
fn timestamp(text: &str) -> Option<&str> {
    let first = text.split(' ').next()?;
    let looks = first.len() >= 20
        && first.as_bytes()[..4].iter().all(u8::is_ascii_digit)
        && first.as_bytes()[4] == b'-'
        && first.contains('T');
    looks.then_some(first)
}

/// The lines of `bytes` (whole lines only; a first line cut by the tail's start is dropped when
/// `cut_start`), with timestamps carried onto continuation lines from `last_at`.
pub fn lines_of(
    host: &str,
    bytes: &[u8],
    cut_start: bool,
    last_at: &mut String,
    grep: Option<&str>,
) -> Vec<Line> {
    let mut out = Vec::new();
    let mut pieces = bytes.split(|b| *b == b'\n').peekable();
    if cut_start {
        pieces.next();
    }
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() && piece.is_empty() {
            break;
        }
        let text = clean(piece);
        if let Some(at) = timestamp(&text) {
            *last_at = at.to_string();
        }
        if grep.is_some_and(|needle| !text.contains(needle)) {
            continue;
        }
        out.push(Line {
            host: host.to_string(),
            at: last_at.clone(),
            text,
        });
    }
    out
}

/// The last `count` lines of every host, in time order (a host's own order kept).
pub fn merge_tail(mut per_host: Vec<Vec<Line>>, count: usize) -> Vec<Line> {
    let mut all: Vec<(usize, usize, Line)> = Vec::new();
    for (host_index, lines) in per_host.iter_mut().enumerate() {
        let skip = lines.len().saturating_sub(count);
        for (index, line) in lines.drain(..).skip(skip).enumerate() {
            all.push((host_index, index, line));
        }
    }
    all.sort_by(|a, b| (&a.2.at, a.0, a.1).cmp(&(&b.2.at, b.0, b.1)));
    let skip = all.len().saturating_sub(count);
    all.into_iter()
        .skip(skip)
        .map(|(_, _, line)| line)
        .collect()
}

fn line_json(line: &Line) -> Value {
    json!({"host": line.host, "line": line.text})
}

fn line_text(line: &Line) -> String {
    format!("{} | {}", line.host, line.text)
}

/// The last [`TAIL_BYTES_MAX`] of a file (empty when it does not exist yet), whether the read
/// started inside it, and its length.
fn read_tail(path: &PathBuf) -> anyhow::Result<(Vec<u8>, bool, u64)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), false, 0))
        }
        Err(error) => bail!("reading {}: {error}", path.display()),
    };
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES_MAX);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((len - start) as usize);
    file.take(len - start).read_to_end(&mut bytes)?;
    Ok((bytes, start > 0, len))
}

pub async fn logs(layout: &Layout, args: &LogsArgs, json_lines: bool) -> anyhow::Result<Report> {
    if args.lines > LINES_MAX {
        bail!("--lines is at most {LINES_MAX}");
    }
    let hosts = hosts_of(layout, &args.office)?;
    let grep = args.grep.as_deref();
    let mut per_host = Vec::new();
    let mut offsets = Vec::new();
    let mut last_ats = Vec::new();
    for (host, file) in &hosts {
        let (bytes, cut, len) = read_tail(file)?;
        let mut last_at = String::new();
        per_host.push(lines_of(host, &bytes, cut, &mut last_at, grep));
        offsets.push(len);
        last_ats.push(last_at);
    }
    let tail = merge_tail(per_host, args.lines);
    if !args.follow {
        let json = json!({
            "office": args.office,
            "hosts": hosts.iter().map(|(host, file)| json!({"name": host, "log": file.display().to_string()})).collect::<Vec<_>>(),
            "lines": tail.iter().map(line_json).collect::<Vec<_>>(),
        });
        let text = tail.iter().map(line_text).collect::<Vec<_>>().join("\n");
        return Ok(Report::new(json, text));
    }
    let print = |lines: &[Line]| -> bool {
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let shown = if json_lines {
                line_json(line).to_string()
            } else {
                line_text(line)
            };
            if writeln!(stdout, "{shown}").is_err() {
                return false;
            }
        }
        stdout.flush().is_ok()
    };
    if !print(&tail) {
        std::process::exit(0);
    }
    // Partial last lines, per host, until their end arrives (bounded: cut at LINE_BYTES_MAX).
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); hosts.len()];
    loop {
        tokio::time::sleep(Duration::from_millis(FOLLOW_POLL_MS)).await;
        let mut fresh = Vec::new();
        for (index, (host, file)) in hosts.iter().enumerate() {
            let Ok(mut handle) = File::open(file) else {
                continue;
            };
            let len = handle.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offsets[index] {
                // Cut or replaced: read it from its start.
                offsets[index] = 0;
                partial[index].clear();
            }
            if len == offsets[index] {
                continue;
            }
            let take = (len - offsets[index]).min(FOLLOW_CHUNK_MAX);
            let mut bytes = std::mem::take(&mut partial[index]);
            if handle.seek(SeekFrom::Start(offsets[index])).is_err() {
                continue;
            }
            let before = bytes.len();
            if handle.take(take).read_to_end(&mut bytes).is_err() {
                continue;
            }
            offsets[index] += (bytes.len() - before) as u64;
            let whole = match bytes.iter().rposition(|b| *b == b'\n') {
                Some(end) => end + 1,
                None => 0,
            };
            let rest = bytes.split_off(whole);
            partial[index] = if rest.len() > LINE_BYTES_MAX {
                // A line with no end in sight: shown cut, the rest of it skipped as it comes.
                bytes.extend_from_slice(&rest[..LINE_BYTES_MAX]);
                bytes.push(b'\n');
                Vec::new()
            } else {
                rest
            };
            fresh.extend(lines_of(host, &bytes, false, &mut last_ats[index], grep));
        }
        fresh.sort_by(|a, b| a.at.cmp(&b.at));
        if !print(&fresh) {
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_go_and_continuations_keep_the_time() {
        let raw = "\u{1b}[2m2026-12-06T05:16:38.419392Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m host serving\n  at backtrace line\n2026-12-06T05:16:39.000000Z ERROR gone\n";
        let mut last = String::new();
        let lines = lines_of("h1", raw.as_bytes(), false, &mut last, None);
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].text,
            "2026-12-06T05:16:38.419392Z  INFO host serving"
        );
        assert_eq!(lines[1].at, "2026-12-06T05:16:38.419392Z");
        assert_eq!(lines[2].at, "2026-12-06T05:16:39.000000Z");
        let errors = lines_of("h1", raw.as_bytes(), false, &mut last, Some("ERROR"));
        assert_eq!(errors.len(), 1);
        // A tail that starts inside a line drops that piece.
        let cut = lines_of(
            "h1",
            b"ing\n2026-12-06T05:16:40Z x\n",
            true,
            &mut last,
            None,
        );
        assert_eq!(cut.len(), 1);
    }

    #[test]
    fn hosts_merge_in_time_order_and_the_tail_is_the_latest() {
        let line = |host: &str, at: &str| Line {
            host: host.into(),
            at: at.into(),
            text: format!("{at} {host}"),
        };
        let a = vec![
            line("a", "2026-01-01T00:00:01Z"),
            line("a", "2026-01-01T00:00:03Z"),
        ];
        let b = vec![
            line("b", "2026-01-01T00:00:02Z"),
            line("b", "2026-01-01T00:00:04Z"),
        ];
        let merged = merge_tail(vec![a.clone(), b.clone()], 10);
        let hosts: Vec<&str> = merged.iter().map(|l| l.host.as_str()).collect();
        assert_eq!(hosts, ["a", "b", "a", "b"]);
        let last = merge_tail(vec![a, b], 2);
        assert_eq!(last[0].text, "2026-01-01T00:00:03Z a");
        assert_eq!(last[1].text, "2026-01-01T00:00:04Z b");
    }

    #[test]
    fn a_long_line_is_cut() {
        let long = vec![b'x'; LINE_BYTES_MAX + 10];
        let text = clean(&long);
        assert!(text.ends_with('…'));
        assert_eq!(text.chars().count(), LINE_BYTES_MAX + 1);
    }
}
