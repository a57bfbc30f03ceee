//! Charts drawn as SVG on the server: horizontal bars, stacked bars and progress bars. No
//! script, no external asset; bars carry their numbers as a table for screen readers, and only
//! ratings are coloured green to red.

use super::page::esc;

const COLORS: [&str; 6] = [
    "#2f7d32", "#f0a202", "#b42318", "#1f6feb", "#8250df", "#656d76",
];

/// How a chart's bars are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// One colour: categories and counts, where no bar is better than another.
    Plain,
    /// Good, middling, bad in green, amber, red (ratings in their fixed order).
    Rating,
}

/// The one colour of [`Tone::Plain`] charts.
const PLAIN: &str = "#3b6ea8";

/// Horizontal bars, one per `(label, value)`, scaled to the largest, in a `<figure>` with the
/// same numbers as a table for screen readers (the drawing itself is hidden from them).
pub fn bars(title: &str, items: &[(String, u64)], tone: Tone) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 24;
    let label_w = 150;
    let bar_w = 360;
    let height = row * items.len() as u32 + 28;
    let mut out = format!(
        "<figure class=\"chart\"><svg aria-hidden=\"true\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"0\" y=\"14\" font-weight=\"bold\">{t}</text>",
        t = esc(title),
        w = label_w + bar_w + 60,
    );
    for (i, (label, value)) in items.iter().enumerate() {
        let y = 24 + row * i as u32;
        let colour = match tone {
            Tone::Plain => PLAIN,
            Tone::Rating => COLORS[i.min(2)],
        };
        let w = (*value as f64 / max as f64 * bar_w as f64).round() as u32;
        out.push_str(&format!(
            "<text x=\"0\" y=\"{ty}\">{l}</text>\
             <rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"16\" fill=\"{c}\"><title>{l}: {value}</title></rect>\
             <text x=\"{tx}\" y=\"{ty}\">{value}</text>",
            ty = y + 13,
            l = esc(label),
            c = colour,
            tx = label_w + w + 6,
        ));
    }
    out.push_str("</svg>");
    out.push_str(&format!(
        "<table class=\"sr-only\"><caption>{}</caption><tbody>",
        esc(title)
    ));
    for (label, value) in items {
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{value}</td></tr>",
            esc(label)
        ));
    }
    out.push_str("</tbody></table></figure>");
    out
}

/// One stacked bar per row: `(label, [(part label, count)])`, parts in a fixed colour order.
pub fn stacked(title: &str, legend: &[String], rows: &[(String, Vec<u64>)]) -> String {
    let row = 24;
    let label_w = 150;
    let bar_w = 360;
    let height = row * rows.len() as u32 + 48;
    let mut out = format!(
        "<svg role=\"img\" aria-label=\"{t}\" width=\"{w}\" height=\"{height}\" \
         viewBox=\"0 0 {w} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"0\" y=\"14\" font-weight=\"bold\">{t}</text>",
        t = esc(title),
        w = label_w + bar_w + 60,
    );
    let mut x = label_w;
    for (i, name) in legend.iter().enumerate() {
        out.push_str(&format!(
            "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{c}\"/>\
             <text x=\"{tx}\" y=\"14\">{n}</text>",
            c = COLORS[i % COLORS.len()],
            tx = x + 14,
            n = esc(name)
        ));
        x += 30 + 13 * name.chars().count() as u32;
    }
    for (i, (label, parts)) in rows.iter().enumerate() {
        let y = 28 + row * i as u32;
        let total: u64 = parts.iter().sum::<u64>().max(1);
        out.push_str(&format!(
            "<text x=\"0\" y=\"{}\">{}</text>",
            y + 13,
            esc(label)
        ));
        let mut x = label_w as f64;
        for (j, n) in parts.iter().enumerate() {
            let w = *n as f64 / total as f64 * bar_w as f64;
            if *n > 0 {
                out.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"{c}\">\
                     <title>{l} {p}: {n}</title></rect>",
                    c = COLORS[j % COLORS.len()],
                    l = esc(label),
                    p = esc(legend.get(j).map(String::as_str).unwrap_or("")),
                ));
            }
            x += w;
        }
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">{}</text>",
            label_w + bar_w + 6,
            y + 13,
            parts.iter().sum::<u64>()
        ));
    }
    out.push_str("</svg>");
    out
}

/// A small progress bar: `done` of `total`.
pub fn progress(done: u64, total: u64) -> String {
    let w = 100.0;
    let frac = if total == 0 {
        0.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    format!(
        "<svg width=\"110\" height=\"12\" role=\"img\" aria-label=\"{done}/{total}\" \
         xmlns=\"http://www.w3.org/2000/svg\"><rect width=\"{w}\" height=\"10\" fill=\"#d0d7de\"/>\
         <rect width=\"{:.1}\" height=\"10\" fill=\"{}\"/></svg>",
        frac * w,
        if frac >= 1.0 { COLORS[0] } else { COLORS[1] }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "评价<分布>",
            &[("好".into(), 6), ("较差".into(), 3)],
            Tone::Rating,
        );
        assert!(svg.contains("评价&lt;分布&gt;"));
        // Green for good, then amber; the numbers again as a table for screen readers.
        assert!(svg.contains("fill=\"#2f7d32\"") && svg.contains("fill=\"#f0a202\""));
        assert!(svg.contains("<th scope=\"row\">好</th><td>6</td>"), "{svg}");
        let plain = bars(
            "类别",
            &[("党建".into(), 2), ("作风".into(), 1)],
            Tone::Plain,
        );
        assert_eq!(
            plain.matches(&format!("fill=\"{PLAIN}\"")).count(),
            2,
            "{plain}"
        );
        assert!(
            svg.contains("width=\"360\""),
            "the largest bar is full width"
        );
        assert!(
            svg.contains("width=\"180\""),
            "half the largest is half as wide"
        );
        let p = progress(3, 4);
        assert!(p.contains("width=\"75.0\""), "{p}");
        let s = stacked(
            "满意度",
            &["满意".into(), "不满意".into()],
            &[("王".into(), vec![3, 1])],
        );
        assert!(
            s.contains("width=\"270.0\"") && s.contains("width=\"90.0\""),
            "{s}"
        );
    }
}
