//! `@name` and `@email` mentions in message bodies.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Distinct mentions read from one body at most; the rest of the body is
/// not scanned for more (no message names this many colleagues).
pub const MAX_MENTIONS: usize = 100;

/// The words after `@` in a body, lower-cased and without duplicates, in
/// order of first appearance, at most [`MAX_MENTIONS`]. One pass over the
/// body (duplicates are found in a set), so a hostile body costs its length.
///
/// A mention starts at `@` at the start of the body or after a character that
/// cannot be part of an e-mail address (so `ann@example.com` inside a sentence
/// is not read as a mention of `example.com`), and runs over letters, digits
/// and `. _ - + @`; a trailing dot (end of sentence) is dropped.
pub fn mention_tokens(body: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut prev: Option<char> = None;
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let starts = c == '@' && prev.is_none_or(|p| !is_token_char(p));
        prev = Some(c);
        if !starts {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some(&(j, d)) = chars.peek() {
            if !is_token_char(d) {
                break;
            }
            end = j + d.len_utf8();
            prev = Some(d);
            chars.next();
        }
        let token = body[start..end]
            .trim_end_matches(['.', '-', '_'])
            .to_lowercase();
        if !token.is_empty() && token.len() <= 254 && seen.insert(token.clone()) {
            tokens.push(token);
            if tokens.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    tokens
}

fn is_token_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@')
}

/// The handle a user can be mentioned by besides their e-mail: the name
/// lower-cased without spaces ("Ann Lee" → `annlee`).
pub fn name_handle(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// A mention as the API returns it (and as mention events carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MentionOut {
    /// Id.
    pub id: Uuid,
    /// The mentioned user.
    pub user_id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The message that mentions.
    pub message_id: Uuid,
    /// Who wrote the message.
    pub author_user_id: Option<Uuid>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the mentioned user acknowledged it; `null` while unread.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub acknowledged_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_names_and_addresses() {
        let body = "Hi @AnnLee, can you and @bob@example.com look? Mail me at eve@example.org.";
        assert_eq!(mention_tokens(body), vec!["annlee", "bob@example.com"]);
    }

    #[test]
    fn drops_sentence_punctuation_and_duplicates() {
        assert_eq!(mention_tokens("@ann. @ann @"), vec!["ann"]);
    }

    #[test]
    fn handles_from_names() {
        assert_eq!(name_handle("Ann  Lee"), "annlee");
    }

    #[test]
    fn a_hostile_body_yields_at_most_the_cap_in_order() {
        // 64 KiB of distinct mentions, and as many repeats of one.
        let many: String = (0..12_000).map(|i| format!("@u{i} ")).collect();
        let tokens = mention_tokens(&many);
        assert_eq!(tokens.len(), MAX_MENTIONS);
        assert_eq!(tokens[0], "u0");
        assert_eq!(tokens[MAX_MENTIONS - 1], format!("u{}", MAX_MENTIONS - 1));
        let repeated = "@ann ".repeat(12_000);
        assert_eq!(mention_tokens(&repeated), vec!["ann"]);
    }
}
