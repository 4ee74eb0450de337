//! Rendering for people (aligned tables, one-line summaries) and for programs (JSON).

use std::fmt::Write as _;

use rbio_recovery::{Inspection, MirrorVerdict, Recovered};

/// Entries not kept that the text report lists without `--entries`.
const ENTRIES_SHOWN_MAX: usize = 20;

/// A plain-text table: a header row, a rule, then the rows; numbers are right-aligned.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.headers.len(), "row width");
        self.rows.push(cells);
    }

    /// The table as text: columns of numbers (every cell starts with a digit, or is `-`)
    /// right-aligned, the others left-aligned.
    pub fn render(&self) -> String {
        let numeric: Vec<bool> = (0..self.headers.len())
            .map(|column| {
                self.rows.iter().all(|row| {
                    let cell = &row[column];
                    cell == "-" || cell.starts_with(|c: char| c.is_ascii_digit() || c == '+')
                })
            })
            .collect();
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|column| {
                let cells = self.rows.iter().map(|row| row[column].chars().count());
                cells.fold(self.headers[column].chars().count(), usize::max)
            })
            .collect();
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            for (column, cell) in cells.iter().enumerate() {
                let width = widths[column];
                let separator = if column == 0 { "" } else { "  " };
                if !numeric[column] || column == 0 {
                    let _ = write!(out, "{separator}{cell:<width$}");
                } else {
                    let _ = write!(out, "{separator}{cell:>width$}");
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        };
        line(&mut out, &self.headers);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&mut out, &rule);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }
}

/// The bringup report for people: the report, the index it produced, and the entries not
/// kept (all entries with `all_entries`).
pub fn bringup_text(recovered: &Recovered, all_entries: bool) -> String {
    let mut out = format!("{}\n", recovered.report);
    let _ = writeln!(
        out,
        "index: {} entries, {} free slots below next_slot {}",
        recovered.index.len(),
        recovered.free_slots.len(),
        recovered.next_slot
    );
    let entries = &recovered.report.entries;
    if entries.is_empty() {
        return out;
    }
    let shown = if all_entries {
        entries.len()
    } else {
        entries.len().min(ENTRIES_SHOWN_MAX)
    };
    let mut table = Table::new(&["key", "offset", "size", "state", "reason"]);
    for entry in &entries[..shown] {
        let number = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
        table.row(vec![
            entry.key.clone(),
            number(entry.offset_bytes),
            number(entry.size_bytes),
            entry.state.name().to_owned(),
            entry.state.reason().unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    if shown < entries.len() {
        let _ = writeln!(
            out,
            "... and {} more (--entries lists them all, --json gives them as data)",
            entries.len() - shown
        );
    }
    out
}

/// The inspection for people.
pub fn inspect_text(inspection: &Inspection) -> String {
    let g = &inspection.geometry;
    let mut out = format!(
        "geometry: capacity {} bytes, mirrors of {} bytes, data at {}, {} slots\n\n",
        g.capacity_bytes(),
        g.mirror_bytes(),
        g.data_base_bytes(),
        g.max_slots()
    );
    let mut mirrors = Table::new(&[
        "mirror",
        "offset",
        "seq",
        "payload bytes",
        "crc ok",
        "verdict",
    ]);
    for mirror in &inspection.mirrors {
        let header = mirror.header;
        mirrors.row(vec![
            mirror.mirror_index.to_string(),
            mirror.offset_bytes.to_string(),
            header.map_or_else(|| "-".to_owned(), |h| h.seq.to_string()),
            header.map_or_else(|| "-".to_owned(), |h| h.payload_len_bytes.to_string()),
            if mirror.verdict == MirrorVerdict::Valid {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            mirror.verdict.to_string(),
        ]);
    }
    out.push_str(&mirrors.render());
    out.push('\n');
    match inspection.checkpoint {
        Some(chosen) => {
            let _ = writeln!(
                out,
                "chosen: seq {} from mirror {} ({} bytes)",
                chosen.seq, chosen.mirror_index, chosen.payload_len_bytes
            );
        }
        None => out.push_str("chosen: none valid (the device reads as empty)\n"),
    }
    if let Some(head) = &inspection.head {
        let _ = writeln!(
            out,
            "recorded device_path {:?}, next_slot {}",
            head.device_path.as_deref().unwrap_or(""),
            head.next_slot.unwrap_or(0)
        );
    }
    if let Some(ignored) = &inspection.ignored {
        let _ = writeln!(out, "bringup would ignore it: {ignored}");
    }
    let _ = writeln!(
        out,
        "entries: {} in checkpoint, {} break a per-entry rule",
        inspection.entry_count, inspection.rejected_count
    );
    if !inspection.entries.is_empty() {
        let mut table = Table::new(&["key", "offset", "size", "slot", "rejection"]);
        for entry in &inspection.entries {
            let number = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            table.row(vec![
                entry.key.clone(),
                number(entry.offset_bytes),
                number(entry.size_bytes),
                number(entry.slot_index),
                entry.rejection.clone().unwrap_or_default(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    out
}

/// Seconds with three decimals, or milliseconds below one second for short runs.
pub fn seconds(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.3} s")
    }
}

/// A count with thousands separators: `1 234 567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Bytes in the largest whole binary unit: `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right() {
        let mut table = Table::new(&["engine", "s"]);
        table.row(vec!["serial".into(), "1.5".into()]);
        table.row(vec!["uring q=64".into(), "0.25".into()]);
        assert_eq!(
            table.render(),
            "engine         s\n----------  ----\nserial       1.5\nuring q=64  0.25\n"
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(seconds(0.0123), "12.3 ms");
        assert_eq!(seconds(2.5), "2.500 s");
    }
}
