//! Aligned columns for a terminal: every column as wide as its widest cell (or a minimum), cells apart by
//! a gap, lines indented and without trailing spaces.

/// How a column's cells sit in its width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table of text cells; the first row added is usually the header.
#[derive(Debug, Clone)]
pub struct Table {
    align: Vec<Align>,
    min_width: Vec<usize>,
    indent: String,
    gap: String,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table of one column per entry of `align`, with no indent and two spaces between columns.
    pub fn new(align: &[Align]) -> Table {
        Table {
            align: align.to_vec(),
            min_width: vec![0; align.len()],
            indent: String::new(),
            gap: "  ".into(),
            rows: Vec::new(),
        }
    }

    /// Text before every line.
    pub fn indent(mut self, indent: &str) -> Table {
        self.indent = indent.to_owned();
        self
    }

    /// Text between two columns.
    pub fn gap(mut self, gap: &str) -> Table {
        self.gap = gap.to_owned();
        self
    }

    /// Columns at least this wide, however narrow their cells.
    pub fn min_widths(mut self, widths: &[usize]) -> Table {
        for (min, &width) in self.min_width.iter_mut().zip(widths) {
            *min = width;
        }
        self
    }

    /// Adds a row; missing cells are empty, extra ones are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).take(self.align.len()).collect();
        row.resize(self.align.len(), String::new());
        self.rows.push(row);
    }

    pub fn render(&self) -> String {
        self.render_styled(|_, _| None)
    }

    /// The table, with `style(column, text)` giving a cell's text as shown (terminal colours, say) when it
    /// differs from the text that is measured.
    pub fn render_styled(&self, style: impl Fn(usize, &str) -> Option<String>) -> String {
        let chars = |text: &str| text.chars().count();
        let widths: Vec<usize> = (0..self.align.len())
            .map(|i| self.rows.iter().map(|r| chars(&r[i])).max().unwrap_or(0).max(self.min_width[i]))
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = self.indent.clone();
            for (i, text) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(&self.gap);
                }
                let pad = " ".repeat(widths[i] - chars(text));
                let shown = style(i, text).unwrap_or_else(|| text.clone());
                match self.align[i] {
                    Align::Left => {
                        line.push_str(&shown);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(&shown);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_and_lines_end_without_spaces() {
        let mut table = Table::new(&[Align::Left, Align::Right, Align::Left]).indent("  ");
        table.row(["hop", "p50", ""]);
        table.row(["queue wait", "1.2 ms", "FAIL"]);
        let shown = table.render_styled(|_, text| (text == "FAIL").then(|| format!("[{text}]")));
        assert_eq!(shown, "  hop            p50\n  queue wait  1.2 ms  [FAIL]\n");
    }

    #[test]
    fn minimum_widths_and_gaps() {
        let mut table = Table::new(&[Align::Left, Align::Right]).gap(" ").min_widths(&[6, 5]);
        table.row(["a", "1"]);
        table.row(["longer name", "22", "dropped"]);
        assert_eq!(table.render(), "a               1\nlonger name    22\n");
    }
}
