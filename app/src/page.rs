//! The HTML around every page: the language (Chinese first, English by cookie), the page shell
//! with its navigation, the inline style sheet for a 390 px phone and a laptop, and the refusal
//! page. Everything is rendered with maud, which escapes by default.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::guard::cookie;

/// The cookie that keeps the language choice.
pub const LANG_COOKIE: &str = "fieldsync_lang";

/// The page language: Chinese unless the user switched to English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lang {
    /// English.
    pub en: bool,
}

impl Lang {
    /// The language the request's cookie asks for.
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        Lang {
            en: cookie(headers, LANG_COOKIE) == Some("en"),
        }
    }

    /// The text in this language.
    pub fn t<'a>(&self, zh: &'a str, en: &'a str) -> &'a str {
        if self.en { en } else { zh }
    }
}

/// The app's one style sheet, inline in every page (no asset from the internet).
pub const STYLE: &str = r#"
*{box-sizing:border-box}
body{font-family:"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f7f9;font-size:16px;line-height:1.5}
header{background:#9b1c1c;color:#fff;padding:.5rem .8rem;display:flex;gap:.8rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700}header .right{margin-left:auto}
main{padding:.8rem;max-width:60rem;margin:0 auto}
h1{font-size:1.3rem;margin:.3rem 0 .8rem}h2{font-size:1.1rem;margin:1.2rem 0 .5rem;border-left:4px solid #9b1c1c;padding-left:.5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.6rem}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem}
.card h3{margin:0 0 .4rem;font-size:1.05rem}.counts{display:flex;flex-wrap:wrap;gap:.3rem .8rem;font-size:.9rem}
.muted{color:#656d76}.flash{background:#e6f4ea;border:1px solid #8bc79a;padding:.5rem;border-radius:4px;margin:.5rem 0}
.error{background:#fdecea;border:1px solid #e6a5a0;padding:.5rem;border-radius:4px;margin:.5rem 0}
.problem{color:#b42318;font-size:.9rem;margin:.2rem 0}
.field{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem;margin:.5rem 0}
.field.bad{border-color:#b42318;background:#fffafa}
.field label.name{display:block;font-weight:600;margin-bottom:.3rem}.req{color:#b42318}
.help{color:#656d76;font-size:.85rem;margin:.2rem 0}
input[type=text],input[type=number],input[type=date],select,textarea{width:100%;padding:.45rem;font-size:1rem;border:1px solid #afb8c1;border-radius:4px;font-family:inherit}
textarea{min-height:8rem}textarea.long{min-height:16rem}
.opts label{display:inline-block;margin:.15rem .9rem .15rem 0}
table{border-collapse:collapse;background:#fff;width:100%;font-size:.95rem}
th,td{border:1px solid #d0d7de;padding:.35rem .45rem;text-align:left;vertical-align:top}th{background:#eef1f4}
table.grid td.c{text-align:center}table.grid input{width:1.3rem;height:1.3rem}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
button,.button{padding:.5rem 1rem;font-size:1rem;cursor:pointer;border-radius:4px;border:1px solid #9b1c1c;background:#9b1c1c;color:#fff;text-decoration:none;display:inline-block}
button.secondary,.button.secondary{background:#fff;color:#9b1c1c}
ul.records{list-style:none;padding:0}ul.records li{background:#fff;border:1px solid #d0d7de;border-radius:4px;margin:.3rem 0;padding:.5rem .7rem}
dl{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6rem .8rem}dt{font-weight:600;margin-top:.5rem}dd{margin:0 0 0 .2rem;white-space:pre-wrap}
ul.files{list-style:none;padding:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(11rem,1fr));gap:.5rem}
ul.files li{background:#fff;border:1px solid #d0d7de;border-radius:4px;padding:.4rem;overflow-wrap:anywhere}
ul.files img{width:100%;height:8rem;object-fit:cover;display:block;border-radius:3px}ul.files audio,ul.files video{width:100%}
.state{font-size:.85rem;color:#656d76}form.add-files{background:#fff;border:1px dashed #afb8c1;border-radius:6px;padding:.6rem .8rem}
form.add-files input[type=file]{display:block;margin:.4rem 0;max-width:100%}
@media (max-width:480px){main{padding:.5rem}table.grid th,table.grid td{padding:.3rem .2rem;font-size:.85rem}}
"#;

/// A whole page: the shell with its navigation and language switch around `body`.
pub fn page(lang: Lang, title: &str, body: Markup) -> Markup {
    shell(lang, title, body, None)
}

/// A page that reloads itself every `seconds` when scripts are off (while a sync runs; with
/// scripts on, [`crate::script`] updates the progress in place and reloads once at the end).
pub fn page_refreshing(lang: Lang, title: &str, body: Markup, seconds: u32) -> Markup {
    shell(lang, title, body, Some(seconds))
}

fn shell(lang: Lang, title: &str, body: Markup, refresh: Option<u32>) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.t("zh-CN", "en")) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(n) = refresh {
                    noscript { meta http-equiv="refresh" content=(n); }
                }
                title { (title) " · " (lang.t("外业记录", "Field records")) }
                style { (PreEscaped(STYLE)) }
                script src="/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { (lang.t("外业记录", "Field records")) }
                    a href="/conflicts" { (lang.t("冲突", "Conflicts")) }
                    a href="/bundle" { (lang.t("数据包", "Bundles")) }
                    span.right {
                        @if lang.en {
                            a href="/lang/zh" { "中文" }
                        } @else {
                            a href="/lang/en" { "English" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The 403 page of a refused request, in the request's language with the other one below.
pub fn refusal(lang: Lang, zh: &str, en: &str) -> Response {
    let body = html! {
        h1 { (lang.t("无法打开", "Refused")) }
        p.error { (lang.t(zh, en)) }
        p.muted { (lang.t(en, zh)) }
    };
    (
        StatusCode::FORBIDDEN,
        page(lang, lang.t("无法打开", "Refused"), body),
    )
        .into_response()
}

/// A page for something that does not exist (404).
pub fn not_found(lang: Lang) -> Response {
    let body = html! {
        h1 { (lang.t("没有这个页面或记录", "No such page or record")) }
        p { a href="/" { (lang.t("回到首页", "Back to the start")) } }
    };
    (StatusCode::NOT_FOUND, page(lang, "404", body)).into_response()
}

/// A page for a failure inside the app (500): says what failed without internals beyond the
/// store's own message.
pub fn failure(lang: Lang, error: &crate::AppError) -> Response {
    tracing::error!(%error, "field app page failed");
    let body = html! {
        h1 { (lang.t("出错了", "Something went wrong")) }
        p.error { (error.to_string()) }
        p { (lang.t("数据未丢失。", "Nothing was lost.")) " " a href="/" { (lang.t("回到首页", "Back to the start")) } }
    };
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(lang, lang.t("出错了", "Error"), body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_escaped() {
        let html = page(Lang::default(), "<script>x</script>", html! {}).into_string();
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&lt;script&gt;x"));
        assert!(html.contains("English"));
        let en = page(Lang { en: true }, "t", html! {}).into_string();
        assert!(en.contains("中文"));
    }
}
