//! Field validation that collects every problem of a request at once,
//! answered as 422 `VALIDATION_FAILED` with `errors: [{field, message}]`.

use serde::Serialize;

/// One invalid field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the field, e.g. `contact.email`.
    pub field: String,
    /// What is wrong, for a human.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors; `finish` turns them into a result.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Requires `value`, trimmed, to be `min..=max` characters long.
    pub fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let len = value.trim().chars().count();
        if len < min {
            if min == 1 {
                self.error(field, "must not be empty");
            } else {
                self.error(field, format!("must be at least {min} characters"));
            }
        } else if value.chars().count() > max {
            self.error(field, format!("must be at most {max} characters"));
        }
    }

    /// Like [`Validation::text`] for an optional field.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.text(field, value, 0, max);
        }
    }

    /// Requires a plausible e-mail address (one `@`, something on both sides, no spaces).
    pub fn email(&mut self, field: &str, value: &str) {
        if !is_plausible_email(value) {
            self.error(field, "must be an e-mail address");
        }
    }

    /// Requires `value` to be within `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.error(field, format!("must be between {min} and {max}"));
        }
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// Longest e-mail address accepted (RFC 5321's path limit).
pub const EMAIL_MAX: usize = 254;

/// A cheap plausibility check; deliverability is the mail system's business.
pub fn is_plausible_email(value: &str) -> bool {
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && value.len() <= EMAIL_MAX
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem() {
        let mut v = Validation::new();
        v.text("subject", "  ", 1, 10);
        v.text("name", "abcdefghijk", 1, 10);
        v.email("email", "not-an-address");
        let errors = v.finish().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["subject", "name", "email"]);
    }

    #[test]
    fn emails() {
        assert!(is_plausible_email("ann@example.com"));
        assert!(!is_plausible_email("ann@example"));
        assert!(!is_plausible_email("ann @example.com"));
        assert!(!is_plausible_email("@example.com"));
    }
}
