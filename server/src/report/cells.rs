//! Cells of exported tables: CSV cells a spreadsheet will not run as formulas, and workbook
//! values spread over continuation columns so that none passes Excel's cell limit.

/// The first characters that make a spreadsheet read a cell as a formula (OWASP's list, and
/// their full-width forms, which a Chinese input method types and Excel may take as the same).
const FORMULA_STARTS: [char; 10] = ['=', '+', '-', '@', '\t', '\r', '＝', '＋', '－', '＠'];

/// Whether `s` is a plain decimal number (`-12`, `3.5`): such a cell stays a number.
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// One CSV cell. Text a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`,
/// tab or CR) gets a leading `'` and quotes, as OWASP recommends against CSV injection; plain
/// numbers (`-5`) stay numbers.
pub fn csv_cell(s: &str) -> String {
    if s.starts_with(FORMULA_STARTS) && !is_plain_number(s) {
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The most UTF-16 units written into one workbook cell (Excel holds 32,767).
pub const XLSX_CELL_UNITS: usize = 32_000;
/// The most cells one value fills in a workbook: itself and up to 7 `（续）` columns.
pub const XLSX_MAX_PIECES: usize = 8;
/// What ends a value cut because it would not fit even in its continuation columns.
pub const XLSX_CUT_MARK: &str =
    "……（全文超出 Excel 单元格上限，已截断；完整内容见 CSV 导出或记录页）";

/// `text` in pieces of at most [`XLSX_CELL_UNITS`], at most `max` of them; when it does not
/// fit, the last piece ends with [`XLSX_CUT_MARK`].
fn xlsx_pieces(text: &str, max: usize) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > XLSX_CELL_UNITS {
            if pieces.len() == max {
                let mark_units: usize = XLSX_CUT_MARK.encode_utf16().count();
                let last = pieces.last_mut().expect("one piece at least");
                let mut kept = 0;
                let keep: String = last
                    .chars()
                    .take_while(|c| {
                        kept += c.len_utf16();
                        kept <= XLSX_CELL_UNITS - mark_units
                    })
                    .collect();
                *last = keep + XLSX_CUT_MARK;
                return pieces;
            }
            pieces.push(String::new());
            units = 0;
        }
        units += c.len_utf16();
        pieces.last_mut().expect("one piece at least").push(c);
    }
    pieces
}

/// Spreads a table's long values over continuation columns (`备注（续）`) so that no cell passes
/// Excel's limit; a value longer than [`XLSX_MAX_PIECES`] cells is cut with [`XLSX_CUT_MARK`].
pub(super) fn xlsx_columns(
    header: Vec<String>,
    rows: Vec<Vec<String>>,
) -> (Vec<String>, Vec<Vec<String>>) {
    let needed = |max: usize| -> Vec<usize> {
        (0..header.len())
            .map(|c| {
                rows.iter()
                    .filter_map(|r| r.get(c))
                    .map(|v| {
                        let units = v.encode_utf16().count();
                        units.div_ceil(XLSX_CELL_UNITS).clamp(1, max)
                    })
                    .max()
                    .unwrap_or(1)
            })
            .collect()
    };
    let mut max = XLSX_MAX_PIECES;
    let mut widths = needed(max);
    // Excel has 16,384 columns: with too many continuations, cut every long value instead.
    if widths.iter().sum::<usize>() > 16_384 {
        max = 1;
        widths = needed(max);
    }
    if widths.iter().all(|w| *w == 1) && rows.iter().flatten().all(|v| v.len() <= XLSX_CELL_UNITS) {
        return (header, rows);
    }
    let mut new_header = Vec::new();
    for (h, w) in header.iter().zip(&widths) {
        new_header.push(h.clone());
        for p in 1..*w {
            new_header.push(if p == 1 {
                format!("{h}（续）")
            } else {
                format!("{h}（续{p}）")
            });
        }
    }
    let new_rows = rows
        .into_iter()
        .map(|row| {
            let mut out = Vec::new();
            for (c, v) in row.into_iter().enumerate() {
                let w = widths.get(c).copied().unwrap_or(1);
                let mut pieces = xlsx_pieces(&v, w);
                pieces.resize(w, String::new());
                out.extend(pieces);
            }
            out
        })
        .collect();
    (new_header, new_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_are_neutralised_and_numbers_stay_numbers() {
        assert_eq!(csv_cell("=1+1"), "\"'=1+1\"");
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        for s in [
            "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "＝1+1", "-", "-1e5", "-.5",
        ] {
            assert!(csv_cell(s).starts_with("\"'"), "{s:?} -> {}", csv_cell(s));
        }
        for n in ["-5", "-12.25", "0", "42"] {
            assert_eq!(csv_cell(n), n);
        }
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("普通文字"), "普通文字");
    }

    #[test]
    fn long_values_spread_over_continuation_columns_or_are_cut_with_a_mark() {
        let long = "谈".repeat(40_000);
        let (header, rows) = xlsx_columns(
            vec!["编号".into(), "备注".into()],
            vec![
                vec!["1".into(), long.clone()],
                vec!["2".into(), "短".into()],
            ],
        );
        assert_eq!(header, ["编号", "备注", "备注（续）"]);
        assert_eq!(rows[0][1].chars().count(), XLSX_CELL_UNITS);
        assert_eq!(format!("{}{}", rows[0][1], rows[0][2]), long);
        assert_eq!(rows[1], ["2", "短", ""]);
        let huge = "x".repeat(XLSX_CELL_UNITS * XLSX_MAX_PIECES + 10);
        let pieces = xlsx_pieces(&huge, XLSX_MAX_PIECES);
        assert_eq!(pieces.len(), XLSX_MAX_PIECES);
        assert!(pieces.last().unwrap().ends_with(XLSX_CUT_MARK));
        assert!(
            pieces
                .iter()
                .all(|p| p.encode_utf16().count() <= XLSX_CELL_UNITS)
        );
        // Characters outside the BMP count twice, as Excel counts them.
        let emoji = "😀".repeat(XLSX_CELL_UNITS);
        assert!(
            xlsx_pieces(&emoji, 4)
                .iter()
                .all(|p| p.encode_utf16().count() <= XLSX_CELL_UNITS)
        );
    }
}
