//! The draft report laid out as a 公文 (GB/T 9704-2012) in a Word document: A4 with the
//! standard's margins (版心 156 × 225 mm), a 二号 小标宋 title, 三号 仿宋 body at 29 pt lines
//! with two-character first-line indents, 黑体 and 楷体 heading levels, page numbers as
//! “— 1 —” in 四号 宋体 outside (odd pages right, even pages left), and the date of writing
//! under the text. Every block has a named paragraph style (公文标题, 公文正文, …), so whoever
//! finishes the draft in Word or WPS keeps the layout by picking a style.

use docx_rs::{
    AlignmentType, BreakType, Docx, Footer, LineSpacing, LineSpacingType, PageMargin, PageNum,
    Paragraph, Run, RunFonts, SpecialIndentType, Style, StyleType,
};

use super::draft::draft_markdown;
use crate::storage::Tallies;

/// Twips (1/20 pt) in a millimetre.
const TWIPS_PER_MM: f64 = 1440.0 / 25.4;

fn mm(v: f64) -> i32 {
    (v * TWIPS_PER_MM).round() as i32
}

/// Font sizes in half-points: 二号 22 pt, 三号 16 pt, 四号 14 pt.
const ERHAO: usize = 44;
const SANHAO: usize = 32;
const SIHAO: usize = 28;

/// The fonts the standard names. Where 方正小标宋简体 is not installed Word and WPS show the
/// title in their default Chinese font (宋体).
const TITLE_FONT: &str = "方正小标宋简体";
const BODY_FONT: &str = "仿宋";
const HEADING_FONT: &str = "黑体";
const SUBHEADING_FONT: &str = "楷体";
const PAGE_NUMBER_FONT: &str = "宋体";

/// One line every 29 pt: 22 lines in the 225 mm 版心, as the standard asks.
const LINE_TWIPS: i32 = 580;

/// The paragraph styles of the document, by id; their names are what Word's style list shows.
pub const STYLES: [(&str, &str); 6] = [
    ("GongwenTitle", "公文标题"),
    ("GongwenSubtitle", "公文副标题"),
    ("GongwenHeading1", "公文一级标题"),
    ("GongwenBody", "公文正文"),
    ("GongwenDate", "公文成文日期"),
    ("GongwenPageNumber", "公文页码"),
];

fn fonts(east_asia: &str) -> RunFonts {
    RunFonts::new()
        .east_asia(east_asia)
        .ascii("Times New Roman")
        .hi_ansi("Times New Roman")
}

fn lines() -> LineSpacing {
    LineSpacing::new()
        .line_rule(LineSpacingType::Exact)
        .line(LINE_TWIPS)
}

fn style(id: &str, font: &str, size: usize) -> Style {
    let name = STYLES
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, n)| *n)
        .unwrap_or(id);
    Style::new(id, StyleType::Paragraph)
        .name(name)
        .based_on("Normal")
        .q_format(true)
        .fonts(fonts(font))
        .size(size)
        .line_spacing(lines())
}

/// A block of the draft as the layout sees it.
#[derive(Debug, PartialEq)]
enum Block<'a> {
    Title(&'a str),
    Subtitle(&'a str),
    Heading(&'a str),
    /// A paragraph, with the run-in second-level heading it opens with (“（一）提前摸底谋划。”).
    Body(Option<&'a str>, &'a str),
}

/// The draft's Markdown as blocks: `#` title, the parenthesised line right under it (the
/// counting basis), `##` headings, and paragraphs whose leading “（一）…。” is a heading.
fn blocks(markdown: &str) -> Vec<Block<'_>> {
    let mut out = Vec::new();
    for line in markdown.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let block = if let Some(title) = line.strip_prefix("# ") {
            Block::Title(title)
        } else if let Some(heading) = line.strip_prefix("## ") {
            Block::Heading(heading)
        } else if matches!(out.last(), Some(Block::Title(_))) && line.starts_with('（') {
            Block::Subtitle(line)
        } else {
            match run_in_heading(line) {
                Some(at) => Block::Body(Some(&line[..at]), &line[at..]),
                None => Block::Body(None, line),
            }
        };
        out.push(block);
    }
    out
}

/// Where a paragraph's run-in heading ends: after the first 。 or ？ of a paragraph that opens with a
/// Chinese ordinal in full-width brackets (（一） … （九十九）).
fn run_in_heading(line: &str) -> Option<usize> {
    let rest = line.strip_prefix('（')?;
    let close = rest.find('）')?;
    let ordinal = &rest[..close];
    if ordinal.is_empty() || !ordinal.chars().all(|c| "一二三四五六七八九十".contains(c))
    {
        return None;
    }
    // A run-in heading ends with its first full stop or question mark (a questionnaire item).
    line.find(['。', '？']).map(|i| i + '。'.len_utf8())
}

/// Characters of 二号 type on one line of the 156 mm 版心.
const TITLE_LINE_CHARS: usize = 20;

/// The title in lines: one when it fits, else two broken where the words allow (after a place,
/// a closing bracket or quote) nearest the middle, so that no line holds a lone character.
fn title_lines(title: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = title.char_indices().collect();
    if chars.len() <= TITLE_LINE_CHARS {
        return vec![title];
    }
    let middle = chars.len() / 2;
    let good = |i: usize| i > 0 && "）”镇乡区县村".contains(chars[i - 1].1);
    let at = (1..chars.len())
        .filter(|&i| good(i) && i.max(chars.len() - i) <= TITLE_LINE_CHARS)
        .min_by_key(|&i| i.abs_diff(middle))
        .unwrap_or(middle);
    let (first, second) = title.split_at(chars[at].0);
    vec![first, second]
}

/// The date of writing as the standard writes it: 2026年12月4日 (Arabic numerals, no zeros).
fn date_of_writing(iso: &str) -> String {
    let mut parts = iso.splitn(3, '-').map(|p| p.trim_start_matches('0'));
    match (parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d)) => format!("{y}年{m}月{d}日"),
        _ => iso.to_string(),
    }
}

/// A footer with the page number as “— N —”, on the outer side one character in.
fn page_number(outer: AlignmentType) -> Footer {
    let one_char = (SIHAO as i32 / 2) * 20;
    let (left, right) = match outer {
        AlignmentType::Left => (Some(one_char), None),
        _ => (None, Some(one_char)),
    };
    Footer::new().add_paragraph(
        Paragraph::new()
            .style("GongwenPageNumber")
            .align(outer)
            .indent(left, None, right, None)
            .add_run(Run::new().add_text("— "))
            .add_page_num(PageNum::new())
            .add_run(Run::new().add_text(" —")),
    )
}

/// The draft report ([`draft_markdown`]) as a 公文-layout Word document dated `date`
/// (`YYYY-MM-DD`).
pub fn draft_docx(t: &Tallies, date: &str) -> Result<Vec<u8>, String> {
    docx_from_markdown(&draft_markdown(t), date)
}

/// Markdown in the draft report's form (`#` title, an optional parenthesised line under it,
/// `##` headings, paragraphs opening with “（一）…。”) as a 公文-layout Word document dated
/// `date` (`YYYY-MM-DD`).
pub fn docx_from_markdown(markdown: &str, date: &str) -> Result<Vec<u8>, String> {
    // Two 三号 characters (2 × 16 pt); docx-rs writes no `firstLineChars`, so in twips.
    let first_line = Some(SpecialIndentType::FirstLine(SANHAO as i32 * 20));
    let mut doc = Docx::new()
        .page_size(11_906, 16_838)
        .page_margin(
            PageMargin::new()
                .top(mm(37.0))
                .bottom(mm(35.0))
                .left(mm(28.0))
                .right(mm(26.0))
                .header(mm(15.0))
                .footer(mm(23.0)),
        )
        .default_fonts(fonts(BODY_FONT))
        .default_size(SANHAO)
        .add_style(
            style("GongwenTitle", TITLE_FONT, ERHAO)
                .align(AlignmentType::Center)
                .line_spacing(
                    LineSpacing::new()
                        .line_rule(LineSpacingType::Exact)
                        .line(LINE_TWIPS + 120)
                        .after(LINE_TWIPS as u32),
                ),
        )
        .add_style(style("GongwenSubtitle", SUBHEADING_FONT, SANHAO).align(AlignmentType::Center))
        .add_style(
            style("GongwenHeading1", HEADING_FONT, SANHAO)
                .indent(None, first_line, None, None)
                .outline_lvl(0),
        )
        .add_style(
            style("GongwenBody", BODY_FONT, SANHAO)
                .align(AlignmentType::Both)
                .indent(None, first_line, None, None),
        )
        .add_style(
            style("GongwenDate", BODY_FONT, SANHAO)
                .align(AlignmentType::Right)
                // 右空四字: four 三号 characters of 320 twips (SANHAO is in half-points).
                .indent(None, None, Some(4 * (SANHAO as i32 / 2) * 20), None),
        )
        .add_style(style("GongwenPageNumber", PAGE_NUMBER_FONT, SIHAO))
        .footer(page_number(AlignmentType::Right))
        .even_footer(page_number(AlignmentType::Left));
    for block in blocks(markdown) {
        let paragraph = match block {
            Block::Title(text) => {
                let mut run = Run::new();
                for (i, line) in title_lines(text).into_iter().enumerate() {
                    if i > 0 {
                        run = run.add_break(BreakType::TextWrapping);
                    }
                    run = run.add_text(line);
                }
                Paragraph::new().style("GongwenTitle").add_run(run)
            }
            Block::Subtitle(text) => Paragraph::new()
                .style("GongwenSubtitle")
                .add_run(Run::new().add_text(text)),
            Block::Heading(text) => Paragraph::new()
                .style("GongwenHeading1")
                .outline_lvl(0)
                .add_run(Run::new().add_text(text)),
            Block::Body(lead, text) => {
                let mut p = Paragraph::new().style("GongwenBody");
                if let Some(lead) = lead {
                    p = p.add_run(Run::new().fonts(fonts(SUBHEADING_FONT)).add_text(lead));
                }
                p.add_run(Run::new().add_text(text))
            }
        };
        doc = doc.add_paragraph(paragraph);
    }
    // An empty line, then the date of writing four characters in from the right.
    doc = doc
        .add_paragraph(Paragraph::new().style("GongwenBody"))
        .add_paragraph(
            Paragraph::new()
                .style("GongwenDate")
                .add_run(Run::new().add_text(date_of_writing(date))),
        );
    let mut out = std::io::Cursor::new(Vec::new());
    doc.build().pack(&mut out).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_becomes_title_headings_and_run_in_headings() {
        let md = "# 某镇分析研判报告\n\n（统计口径：全部）\n\n## 一、工作开展情况\n\n\
                  （一）提前摸底谋划。共摸底3人次。\n\n（十二）青龙社区存在的问题。无。\n\n\
                  （由工作组根据以上情况填写。）\n";
        assert_eq!(
            blocks(md),
            vec![
                Block::Title("某镇分析研判报告"),
                Block::Subtitle("（统计口径：全部）"),
                Block::Heading("一、工作开展情况"),
                Block::Body(Some("（一）提前摸底谋划。"), "共摸底3人次。"),
                Block::Body(Some("（十二）青龙社区存在的问题。"), "无。"),
                Block::Body(None, "（由工作组根据以上情况填写。）"),
            ]
        );
    }

    #[test]
    fn a_long_title_breaks_into_two_lines_where_the_words_allow() {
        assert_eq!(
            title_lines("示范镇村（社区）“两委”班子届中分析研判报告"),
            vec!["示范镇村（社区）“两委”", "班子届中分析研判报告"]
        );
        assert_eq!(
            title_lines("城关镇分析研判报告"),
            vec!["城关镇分析研判报告"]
        );
        let long = "一二三四五六七八九十一二三四五六七八九十一二";
        assert_eq!(title_lines(long).concat(), long);
        assert!(title_lines(long).iter().all(|l| l.chars().count() >= 10));
    }

    #[test]
    fn dates_are_written_without_leading_zeros() {
        assert_eq!(date_of_writing("2026-03-09"), "2026年3月9日");
        assert_eq!(date_of_writing("2026-12-10"), "2026年12月10日");
        assert_eq!(mm(37.0), 2098);
    }
}
