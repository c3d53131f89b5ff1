//! Organizations: the boundary no row crosses.

/// The prefix of an organization's ticket codes (`ACME` in `ACME-42`): the
/// ASCII letters and digits of the first word of its name that has any,
/// upper-cased, at most 6; `TKT` when the name has none.
pub fn code_prefix(name: &str) -> String {
    name.split_whitespace()
        .map(|word| {
            word.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(6)
                .collect::<String>()
                .to_ascii_uppercase()
        })
        .find(|prefix| !prefix.is_empty())
        .unwrap_or_else(|| "TKT".to_owned())
}

/// A ticket's code, e.g. `ACME-42`.
pub fn ticket_code(prefix: &str, number: i64) -> String {
    format!("{prefix}-{number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(code_prefix("Acme Inc."), "ACME");
        assert_eq!(code_prefix("Northwind Traders"), "NORTHW");
        assert_eq!(code_prefix("Ünïcødé"), "NCD");
        assert_eq!(code_prefix("!!!"), "TKT");
        assert_eq!(ticket_code("ACME", 42), "ACME-42");
    }
}
