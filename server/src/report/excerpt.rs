//! Key sentences out of free text: the sentences of a village's meeting minutes and interview
//! notes that say most about its team, for the draft report to quote when nobody has written the
//! team's 运行情况 yet. A plain word-count heuristic that a reviewer edits after, not a summary.

/// Words that mark a sentence as being about the team and its work.
const KEY_WORDS: [&str; 18] = [
    "班子",
    "团结",
    "运行",
    "集体经济",
    "产业",
    "群众",
    "党员",
    "项目",
    "服务",
    "作风",
    "履职",
    "凝聚力",
    "战斗力",
    "发展",
    "整改",
    "书记",
    "干部",
    "村民",
];

/// The shortest and longest sentence worth quoting, in characters.
const SENTENCE_CHARS: std::ops::RangeInclusive<usize> = 8..=90;

/// Up to `max` sentences of `texts` that name the most [`KEY_WORDS`], in the order they were
/// written, each ending with 。; none that is a question, a fragment or a repeat.
pub(crate) fn key_sentences<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    let mut candidates: Vec<(usize, usize, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for sentence in texts.into_iter().flat_map(sentences) {
        let score = KEY_WORDS.iter().filter(|w| sentence.contains(*w)).count();
        let length = sentence.chars().count();
        if score == 0 || !SENTENCE_CHARS.contains(&length) {
            continue;
        }
        // Two notes that open alike (the same remark written down twice) count once.
        let opening: String = sentence.chars().take(10).collect();
        if !seen.insert(opening) {
            continue;
        }
        let at = candidates.len();
        candidates.push((score, at, sentence));
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    candidates.truncate(max);
    candidates.sort_by_key(|c| c.1);
    candidates.into_iter().map(|c| c.2).collect()
}

/// The sentences of `text`, trimmed, each ending with 。 (a ；, ！ or line end becomes 。);
/// questions are left out, since a quoted question says nothing about the team.
fn sentences(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_inclusive(['。', '！', '？', '；', '\n', '!', '?', ';'])
        .filter(|s| !s.ends_with(['？', '?']))
        .map(|s| {
            let body = s
                .trim()
                .trim_end_matches(['。', '！', '；', '!', ';'])
                .trim_start_matches(['，', '、', '：', ',', ':', ' '])
                .trim();
            format!("{}。", without_label(body))
        })
        .filter(|s| s.chars().count() > 1)
}

/// A sentence without the label a note writer put in front of it: “（补充）”, “组长意见：”.
fn without_label(sentence: &str) -> &str {
    let mut s = sentence;
    if let Some(rest) = s.strip_prefix('（')
        && let Some(close) = rest.find('）')
        && rest[..close].chars().count() <= 4
    {
        s = &rest[close + '）'.len_utf8()..];
    }
    if let Some(colon) = s.find('：')
        && s[..colon].chars().count() <= 5
    {
        s = &s[colon + '：'.len_utf8()..];
    }
    s.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_sentences_about_the_team_in_written_order() {
        let minutes = "会议开始。大家认为班子团结，党员带头作用明显；\
                       去年集体经济收入增长到20万元。天气很好！\
                       班子成员分工是否明确？";
        let notes = "书记说村里群众对道路项目满意，产业发展还缺思路。谢谢。";
        let got = key_sentences([minutes, notes], 2);
        assert_eq!(
            got,
            vec![
                "大家认为班子团结，党员带头作用明显。".to_string(),
                "书记说村里群众对道路项目满意，产业发展还缺思路。".to_string(),
            ]
        );
        // With room for more, the collective-economy sentence joins in its place.
        let got = key_sentences([minutes, notes], 5);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], "去年集体经济收入增长到20万元。");
        // Questions, fragments and sentences without a key word are never quoted.
        assert!(!got.iter().any(|s| s.contains("是否") || s.contains("天气")));
    }

    #[test]
    fn a_remark_written_twice_is_quoted_once_and_nothing_is_invented() {
        let a = "班子成员团结协作，工作上相互配合。";
        let b = "班子成员团结协作，工作上相互配合，群众认可。";
        assert_eq!(key_sentences([a, b], 3).len(), 1);
        assert!(key_sentences(["今天下雨。", ""], 3).is_empty());
        // Labels that note writers put in front are not quoted.
        assert_eq!(
            key_sentences(
                ["（补充）谈话人表示将带头发展产业。组长意见：群众对班子评价较好。"],
                3
            ),
            vec!["谈话人表示将带头发展产业。", "群众对班子评价较好。"]
        );
    }
}
