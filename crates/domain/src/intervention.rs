//! Interventions (CONTRACT §4, seed 001): definition rules, the MiniJinja
//! templates (checked when saved, rendered with a fuel limit), label tokens,
//! and how an epilog answer is judged.
//!
//! Templates are code supplied by an admin: they render without auto-escaping
//! (ticket messages are plain text, never HTML) and with a fuel limit, so a
//! template that loops forever stops with an error instead of holding a worker.

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::string_enum;
use crate::validation::Validation;

/// Largest data bag, as serialized JSON (seed 001 §11: "< 32KB").
pub const DATA_BAG_MAX: usize = 32 * 1024;
/// Longest template source.
pub const TEMPLATE_MAX: usize = 100_000;
/// Longest title.
pub const TITLE_MAX: usize = 200;
/// Most UI fields of a definition.
pub const FIELDS_MAX: usize = 100;
/// Longest label text.
pub const LABEL_MAX: usize = 2_000;
/// Longest `uid`.
pub const UID_MAX: usize = 255;
/// Bounds of `remote_timeout_seconds`.
pub const TIMEOUT_RANGE: (i64, i64) = (1, 120);
/// Default `remote_timeout_seconds` (seed 001 §5).
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 10;
/// Instructions a template may run per render before it is stopped.
pub const FUEL: u64 = 50_000;
/// Outbox type (and routing key on `<prefix>.commands`) of an epilog call request.
pub const EPILOG_COMMAND: &str = "command.intervention.epilog";

string_enum!(
    /// Where an intervention instance stands.
    PayloadStatus {
        Pending => "pending",
        Submitted => "submitted",
        Accepted => "accepted",
    }
);

string_enum!(
    /// A UI field's kind (seed 001 §6).
    FieldType {
        Text => "text",
        Checkbox => "checkbox",
        Label => "label",
        Hr => "hr",
    }
);

string_enum!(
    /// One of a definition's templates.
    TemplateKind {
        Private => "private",
        Public => "public",
        Final => "final",
    }
);

/// A UI field of a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// `text`, `checkbox`, `label` or `hr`.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Key in the data bag (`text` and `checkbox`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Caption; for `label` the text shown, with `{{ data.KEY }}` and `{{ ticket.FIELD }}` tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Whether `name` is a valid intervention name (it appears in URLs).
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks UI fields: keys where needed and unique, labels that parse.
pub fn check_fields(v: &mut Validation, fields: &[Field]) {
    if fields.len() > FIELDS_MAX {
        v.error("fields", format!("at most {FIELDS_MAX} fields"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, field) in fields.iter().enumerate() {
        let at = format!("fields[{i}]");
        match (field.kind, &field.key) {
            (FieldType::Text | FieldType::Checkbox, None) => {
                v.error(format!("{at}.key"), "is required for text and checkbox");
            }
            (FieldType::Text | FieldType::Checkbox, Some(key)) => {
                if !valid_key(key) {
                    v.error(
                        format!("{at}.key"),
                        "must be 1 to 64 letters, digits, _ or -",
                    );
                } else if !seen.insert(key.clone()) {
                    v.error(format!("{at}.key"), "is used by another field");
                }
            }
            (FieldType::Label | FieldType::Hr, Some(_)) => {
                v.error(
                    format!("{at}.key"),
                    "only text and checkbox fields have a key",
                );
            }
            (FieldType::Label | FieldType::Hr, None) => {}
        }
        match (&field.label, field.kind) {
            (None, FieldType::Label) => v.error(format!("{at}.label"), "is required for label"),
            (Some(label), _) if label.chars().count() > LABEL_MAX => {
                v.error(
                    format!("{at}.label"),
                    format!("must be at most {LABEL_MAX} characters"),
                );
            }
            (Some(label), FieldType::Label) => {
                if let Err(e) = check_template(label) {
                    v.error(format!("{at}.label"), e.to_string());
                }
            }
            _ => {}
        }
    }
}

/// Why a template does not parse or could not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct TemplateError {
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        let reason = match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        };
        TemplateError {
            line: e.line(),
            reason,
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Messages are plain text; nothing renders into HTML here.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env.set_debug(false);
    env
}

/// Parses `source` without rendering it.
pub fn check_template(source: &str) -> Result<(), TemplateError> {
    let env = environment();
    env.template_from_str(source)?;
    Ok(())
}

/// Renders `source` with `context` (a JSON object whose members become the
/// template's variables), within the fuel limit.
pub fn render(source: &str, context: &serde_json::Value) -> Result<String, TemplateError> {
    let env = environment();
    let template = env.template_from_str(source)?;
    Ok(template.render(Value::from(Serde(context)))?)
}

/// A label with its tokens resolved; the raw text when it does not render.
pub fn resolve_label(label: &str, context: &serde_json::Value) -> String {
    render(label, context).unwrap_or_else(|_| label.to_owned())
}

/// Serialized size of a data bag.
pub fn data_bag_size(data: &serde_json::Value) -> usize {
    serde_json::to_vec(data).map_or(usize::MAX, |b| b.len())
}

/// What one epilog answer means (CONTRACT §4, seed 001 §4, §5, §8).
#[derive(Debug, Clone, PartialEq)]
pub enum EpilogVerdict {
    /// `{"ok": true}` (or any 200 JSON object with `ok: true` and no final): done.
    Done,
    /// A final object naming the submitted response: apply it (once).
    Final(serde_json::Map<String, serde_json::Value>),
    /// A final object that cannot be applied (other `response_id`, no
    /// `ticket_audit`): not applied, not retried; the reason is logged.
    Rejected(String),
    /// Not a success: try again (until the attempts run out).
    Retry(String),
}

/// Judges an answer: HTTP `status` (`None`: no answer), the `body` text, and
/// the response id the call was made for.
pub fn judge_epilog_answer(
    status: Option<u16>,
    body: Option<&str>,
    error: Option<&str>,
    response_id: Uuid,
) -> EpilogVerdict {
    let Some(status) = status else {
        return EpilogVerdict::Retry(error.unwrap_or("no answer").to_owned());
    };
    match status {
        200 => {}
        300..=399 => {
            return EpilogVerdict::Retry(format!(
                "HTTP {status}: redirects are not followed; the epilog URL must answer itself"
            ));
        }
        400..=499 => return EpilogVerdict::Retry(format!("HTTP {status}: client error")),
        500..=599 => return EpilogVerdict::Retry(format!("HTTP {status}: server error")),
        _ => return EpilogVerdict::Retry(format!("HTTP {status}: only 200 is a success")),
    }
    if let Some(error) = error {
        return EpilogVerdict::Retry(format!("the answer could not be read: {error}"));
    }
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(body.unwrap_or_default());
    let Ok(serde_json::Value::Object(answer)) = parsed else {
        return EpilogVerdict::Retry("HTTP 200 but the answer is not a JSON object".to_owned());
    };
    match answer.get("final") {
        Some(serde_json::Value::Object(final_object)) => {
            let named = final_object.get("response_id").map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            match named {
                None => EpilogVerdict::Rejected("final object has no response_id".to_owned()),
                Some(named) if named != response_id.to_string() => {
                    EpilogVerdict::Rejected(format!(
                        "final.response_id {:?} does not match the submitted response {response_id}",
                        named.chars().take(64).collect::<String>()
                    ))
                }
                Some(_) => match final_object.get("ticket_audit") {
                    Some(serde_json::Value::String(text)) if !text.trim().is_empty() => {
                        EpilogVerdict::Final(final_object.clone())
                    }
                    _ => EpilogVerdict::Rejected(
                        "final.ticket_audit is missing or not a non-empty string".to_owned(),
                    ),
                },
            }
        }
        Some(serde_json::Value::Null) | None => {
            if answer.get("ok") == Some(&serde_json::Value::Bool(true)) {
                EpilogVerdict::Done
            } else {
                EpilogVerdict::Retry(
                    "HTTP 200 but the answer has neither \"ok\": true nor a final object"
                        .to_owned(),
                )
            }
        }
        Some(_) => EpilogVerdict::Rejected("final is not an object".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_template_names_its_line() {
        let err = check_template("Hello\n{{ data.name }\nbye").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(!err.reason.is_empty());
        assert!(check_template("Hi {{ data.name }}").is_ok());
    }

    #[test]
    fn renders_plain_text_and_runs_out_of_fuel() {
        let ctx = json!({"data": {"name": "<b>Ann</b>"}});
        assert_eq!(render("Hi {{ data.name }}", &ctx).unwrap(), "Hi <b>Ann</b>");
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &ctx,
        )
        .unwrap_err();
        assert!(err.reason.contains("fuel"), "{err}");
    }

    #[test]
    fn judges_answers() {
        let id = Uuid::now_v7();
        let judge = |status, body: &str| judge_epilog_answer(Some(status), Some(body), None, id);
        assert_eq!(judge(200, r#"{"ok":true}"#), EpilogVerdict::Done);
        assert!(matches!(judge(200, "ok"), EpilogVerdict::Retry(_)));
        assert!(matches!(judge(302, ""), EpilogVerdict::Retry(_)));
        assert!(matches!(judge(404, ""), EpilogVerdict::Retry(_)));
        assert!(matches!(judge(503, ""), EpilogVerdict::Retry(_)));
        let good = format!(r#"{{"final":{{"response_id":"{id}","ticket_audit":"done"}}}}"#);
        assert!(matches!(judge(200, &good), EpilogVerdict::Final(_)));
        let other = r#"{"final":{"response_id":"x","ticket_audit":"done"}}"#;
        assert!(matches!(judge(200, other), EpilogVerdict::Rejected(_)));
        assert!(matches!(
            judge_epilog_answer(None, None, Some("timed out"), id),
            EpilogVerdict::Retry(_)
        ));
    }

    #[test]
    fn fields_need_keys_and_parseable_labels() {
        let mut v = Validation::new();
        check_fields(
            &mut v,
            &[
                Field {
                    kind: FieldType::Text,
                    key: None,
                    label: None,
                },
                Field {
                    kind: FieldType::Label,
                    key: None,
                    label: Some("{{ data.x".into()),
                },
                Field {
                    kind: FieldType::Checkbox,
                    key: Some("a".into()),
                    label: None,
                },
                Field {
                    kind: FieldType::Checkbox,
                    key: Some("a".into()),
                    label: None,
                },
            ],
        );
        let fields: Vec<_> = v
            .finish()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            ["fields[0].key", "fields[1].label", "fields[3].key"]
        );
    }
}
