//! The HTML around every dashboard page: escaping, the language switch, the page shell with its
//! navigation, tables, and small formatting helpers. No asset comes from the internet.

use axum::response::Html;

/// `text` escaped for HTML with every occurrence of any of `words` in `<mark>` (ASCII letters
/// matched without case, as the search matches them; the longest word wins where two start).
pub fn highlight(text: &str, words: &[String]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let needles: Vec<Vec<char>> = words
        .iter()
        .map(|w| w.chars().collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = String::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        let matched = needles
            .iter()
            .filter(|n| {
                chars.len() - i >= n.len()
                    && chars[i..i + n.len()]
                        .iter()
                        .zip(n.iter())
                        .all(|(a, b)| a.eq_ignore_ascii_case(b))
            })
            .map(|n| n.len())
            .max();
        match matched {
            Some(len) => {
                out.push_str(&esc(&plain));
                plain.clear();
                let found: String = chars[i..i + len].iter().collect();
                out.push_str(&format!("<mark>{}</mark>", esc(&found)));
                i += len;
            }
            None => {
                plain.push(chars[i]);
                i += 1;
            }
        }
    }
    out.push_str(&esc(&plain));
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page language: Chinese unless the user switched to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lang {
    /// English.
    pub en: bool,
}

impl Lang {
    /// The text in this language.
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        if self.en { en } else { zh }
    }
}

/// The dashboard's one style sheet, inline in every page (the Content-Security-Policy allows
/// exactly this sheet by its hash: [`crate::headers::content_security_policy`]).
pub const STYLE: &str = r#"
body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f7f9}
header{background:#9b1c1c;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700;font-size:1.1rem}
header .right{margin-left:auto;display:flex;gap:.8rem;align-items:center}
main{padding:1rem 1.2rem;max-width:1200px}
h1{font-size:1.4rem;margin:.4rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .6rem;border-left:4px solid #9b1c1c;padding-left:.5rem}
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:1rem;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#eef1f4}
.cards{display:flex;flex-wrap:wrap;gap:.6rem}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .9rem;min-width:8rem}
.card b{display:block;font-size:1.4rem}.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}figure.chart{margin:0 0 1rem}input.num{width:5rem}a.card{color:inherit;text-decoration:none}a.card:hover{border-color:#9b1c1c}.muted{color:#656d76}.overdue{color:#b42318;font-weight:700}
.conflict{background:#fff4e5}.flash{background:#e6f4ea;border:1px solid #8bc79a;padding:.5rem;border-radius:4px}
.error{background:#fdecea;border:1px solid #e6a5a0;padding:.5rem;border-radius:4px}
form.inline{display:inline}input[type=text],input[type=search]{padding:.3rem;font-size:1rem}
button{padding:.3rem .8rem;font-size:.95rem;cursor:pointer}
ul.files{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.6rem}
header nav{display:flex;gap:1.2rem;flex-wrap:wrap}header a.here{border-bottom:2px solid #fff;font-weight:700}
details{margin:.4rem 0 1rem}summary{cursor:pointer;color:#0b57d0;margin-bottom:.4rem}mark{background:#fde68a;color:inherit}
form.filters label{margin-right:.6rem;display:inline-block;margin-bottom:.3rem}
@media (max-width:640px){main{padding:.8rem}table:not(.kv),table:not(.kv) thead,table:not(.kv) tbody,table:not(.kv) tr,table:not(.kv) th,table:not(.kv) td{display:block}table:not(.kv) thead{position:absolute;left:-9999px}td:empty{display:none}table.kv td{overflow-wrap:anywhere}
table:not(.kv) tr{background:#fff;border:1px solid #d0d7de;border-radius:6px;margin-bottom:.6rem;padding:.3rem .5rem}
table:not(.kv) td{border:0;border-bottom:1px solid #eef1f4;padding:.3rem 0;overflow-wrap:anywhere}table:not(.kv) td:last-child{border-bottom:0}
table:not(.kv) td[data-label]::before{content:attr(data-label);display:block;color:#656d76;font-size:.8rem}
svg{max-width:100%;height:auto}}
@media print{@page{size:A4;margin:18mm 15mm}body{background:#fff}header,form,button,.noprint{display:none}
main{max-width:none;padding:0}a{color:inherit;text-decoration:none}table{font-size:10pt}tr{break-inside:avoid}
h2{break-after:avoid}details>summary{display:none}.card{border-color:#999}}
ul.files li{background:#fff;border:1px solid #d0d7de;border-radius:4px;padding:.4rem;overflow-wrap:anywhere}
ul.files img{width:100%;height:9rem;object-fit:cover;display:block;border-radius:3px}ul.files audio,ul.files video{width:100%}svg text{font-size:12px;font-family:inherit}
th button.sort{all:unset;cursor:pointer;font-weight:700}th button.sort:focus-visible{outline:2px solid #0b57d0}
th[aria-sort=ascending] button.sort::after{content:" ▲";color:#656d76}th[aria-sort=descending] button.sort::after{content:" ▼";color:#656d76}
"#;

/// The dashboard's one script, inline at the end of every page (allowed by its hash like
/// [`STYLE`]; an injected script runs nowhere). It only makes the tables built by [`table`]
/// sortable: a click on a column's heading orders the rows by that column (numbers as numbers,
/// everything else in Chinese collation order), a second click reverses, and `aria-sort` tells
/// screen readers. Without it the pages work as they are, in the server's order. A table whose
/// headings hold links (the ledger, sorted by the server) is left as it is.
pub const SCRIPT: &str = r#"
document.querySelectorAll("table.sortable").forEach(function (t) {
  if (!t.tHead || !t.tBodies.length || t.tHead.querySelector("a")) return;
  var heads = Array.prototype.slice.call(t.tHead.rows[0].cells);
  var number = /^-?[0-9][0-9,]*(\.[0-9]+)?%?$/;
  heads.forEach(function (th, i) {
    if (th.querySelector("a") || !th.textContent.trim()) return;
    var b = document.createElement("button");
    b.type = "button";
    b.className = "sort";
    while (th.firstChild) b.appendChild(th.firstChild);
    th.appendChild(b);
    b.addEventListener("click", function () {
      var up = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", up ? "ascending" : "descending");
      var body = t.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (r) { var c = r.cells[i]; return c ? c.textContent.trim() : ""; };
      rows.sort(function (a, z) {
        var x = key(a), y = key(z), n;
        if (number.test(x) && number.test(y)) {
          n = parseFloat(x.replace(/,/g, "")) - parseFloat(y.replace(/,/g, ""));
        } else {
          n = x.localeCompare(y, "zh-Hans-CN", { numeric: true });
        }
        return up ? n : -n;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"#;

/// Which page of a campaign's navigation a page is, to mark it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// None of the navigation's pages (a dossier, a record).
    Elsewhere,
    /// The overview.
    Overview,
    /// The findings ledger.
    Ledger,
    /// The conflicts to review.
    Conflicts,
    /// The review queue.
    Review,
    /// The search page.
    Search,
}

/// A whole page for a signed-in user: shell, navigation for `campaign` when given, and `body`.
pub fn page(lang: Lang, title: &str, campaign: Option<&str>, body: &str) -> Html<String> {
    shell(
        lang,
        title,
        campaign.map(|c| (c, Nav::Elsewhere)),
        body,
        true,
    )
}

/// A page of a campaign's navigation, marked there as the current one.
pub fn nav_page(lang: Lang, title: &str, campaign: &str, here: Nav, body: &str) -> Html<String> {
    shell(lang, title, Some((campaign, here)), body, true)
}

/// A page for anyone (the login page, errors): no navigation, no sign-out button.
pub fn public_page(lang: Lang, title: &str, body: &str) -> Html<String> {
    shell(lang, title, None, body, false)
}

fn shell(
    lang: Lang,
    title: &str,
    campaign: Option<(&str, Nav)>,
    body: &str,
    signed_in: bool,
) -> Html<String> {
    let nav = match campaign {
        Some((c, here)) => {
            let link = |to: Nav, path: &str, text: &str| {
                if to == here {
                    format!(
                        "<a href=\"/ui/c/{c}{path}\" class=\"here\" aria-current=\"page\">{text}</a>"
                    )
                } else {
                    format!("<a href=\"/ui/c/{c}{path}\">{text}</a>")
                }
            };
            format!(
                "<nav>{}{}{}{}</nav>\
                 <form class=\"inline\" action=\"/ui/c/{c}/search\"><input type=\"search\" name=\"q\" \
                 placeholder=\"{}\" aria-label=\"{}\"></form>",
                link(Nav::Overview, "", lang.t("概况", "Overview")),
                link(
                    Nav::Ledger,
                    "/ledger",
                    lang.t("问题整改台账", "Findings ledger")
                ),
                link(
                    Nav::Conflicts,
                    "/conflicts",
                    lang.t("待处理冲突", "Conflicts")
                ),
                link(Nav::Review, "/review", lang.t("审核", "Review")),
                lang.t("搜索记录内容", "Search records"),
                lang.t("搜索", "Search"),
            )
        }
        None => String::new(),
    };
    Html(format!(
        "<!doctype html><html lang=\"{lang_attr}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · fieldsync</title><style>{STYLE}</style></head><body>\
         <header><a class=\"brand\" href=\"/ui\">{brand}</a>{nav}\
         <span class=\"right\"><a href=\"/ui/lang/{other}\">{other_name}</a>{logout}\
         </span></header><main><h1>{title}</h1>{body}</main><script>{SCRIPT}</script></body></html>",
        lang_attr = if lang.en { "en" } else { "zh-CN" },
        title = esc(title),
        brand = lang.t("班子分析研判", "Team reviews"),
        other = if lang.en { "zh" } else { "en" },
        other_name = if lang.en { "中文" } else { "English" },
        logout = if signed_in {
            format!(
                "<form class=\"inline\" method=\"post\" action=\"/logout\"><button>{}</button></form>",
                lang.t("退出", "Sign out")
            )
        } else {
            String::new()
        },
    ))
}

/// A table from a header and rows of already escaped HTML cells. Each cell carries its
/// column's name (`data-label`), which a phone screen shows beside it when the table becomes
/// one card per row; [`SCRIPT`] sorts it by the column whose heading is clicked.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let labels: Vec<String> = header.iter().map(|h| esc(&plain_text(h))).collect();
    let mut out = String::from("<table class=\"sortable\"><thead><tr>");
    for h in header {
        out.push_str(&format!("<th scope=\"col\">{h}</th>"));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            match labels.get(i).filter(|l| !l.is_empty()) {
                Some(label) => out.push_str(&format!("<td data-label=\"{label}\">{c}</td>")),
                None => out.push_str(&format!("<td>{c}</td>")),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The text of an escaped HTML fragment: tags dropped, the five escapes undone.
fn plain_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .trim_end_matches(" ▲")
        .to_string()
}

/// Number cards, each a link to what it counts when it has an address.
pub fn linked_cards(items: &[(&str, String, Option<String>)]) -> String {
    let mut out = String::from("<div class=\"cards\">");
    for (label, value, href) in items {
        let card = format!(
            "<b>{}</b><span class=\"muted\">{}</span>",
            esc(value),
            esc(label)
        );
        match href {
            Some(href) => out.push_str(&format!(
                "<a class=\"card\" href=\"{}\">{card}</a>",
                esc(href)
            )),
            None => out.push_str(&format!("<div class=\"card\">{card}</div>")),
        }
    }
    out.push_str("</div>");
    out
}

/// Number cards.
pub fn cards(items: &[(&str, String)]) -> String {
    let mut out = String::from("<div class=\"cards\">");
    for (label, value) in items {
        out.push_str(&format!(
            "<div class=\"card\"><b>{}</b><span class=\"muted\">{}</span></div>",
            esc(value),
            esc(label)
        ));
    }
    out.push_str("</div>");
    out
}

pub use crate::report::{time, today};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_marks_every_word_and_escapes_the_rest() {
        let words = vec!["集体".to_string(), "经济".to_string(), "ab".to_string()];
        assert_eq!(
            highlight("<b>集体经济</b> AB 集", &words),
            "&lt;b&gt;<mark>集体</mark><mark>经济</mark>&lt;/b&gt; <mark>AB</mark> 集"
        );
        // A word with markup in it is escaped inside the mark too.
        assert_eq!(highlight("x<y", &["<".to_string()]), "x<mark>&lt;</mark>y");
        assert_eq!(highlight("无", &[]), "无");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
