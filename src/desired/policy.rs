//! IAM-style policy documents: building them, and comparing them semantically.
//!
//! AWS returns policies re-ordered, with single-element lists collapsed to strings, account IDs
//! in principals expanded to `arn:aws:iam::ID:root`, sometimes URL-encoded. Comparing the raw
//! text would make the operator "fix" a diff that is not one on every reconcile, so both sides
//! are normalised first.

use serde_json::{Map, Value, json};

/// Normalised form: statements sorted, every list sorted and deduplicated, scalars in list
/// positions turned into lists, account-ID principals expanded, `Version` defaulted.
pub fn normalize(doc: &Value) -> Value {
    let mut out = Map::new();
    let version = doc
        .get("Version")
        .and_then(Value::as_str)
        .unwrap_or("2008-10-17");
    out.insert("Version".into(), json!(version));
    if let Some(id) = doc.get("Id") {
        out.insert("Id".into(), id.clone());
    }
    let statements = match doc.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut normalized: Vec<Value> = statements.iter().map(normalize_statement).collect();
    normalized.sort_by_key(|s| s.to_string());
    out.insert("Statement".into(), Value::Array(normalized));
    Value::Object(out)
}

fn normalize_statement(statement: &Value) -> Value {
    let Some(fields) = statement.as_object() else {
        return statement.clone();
    };
    let mut out = Map::new();
    for (key, value) in fields {
        let v = match key.as_str() {
            "Action" | "NotAction" | "Resource" | "NotResource" => string_set(value),
            "Principal" | "NotPrincipal" => normalize_principal(value),
            "Condition" => normalize_condition(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), v);
    }
    Value::Object(out)
}

fn string_set(value: &Value) -> Value {
    let mut items: Vec<String> = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        other => return other.clone(),
    };
    items.sort();
    items.dedup();
    json!(items)
}

fn normalize_principal(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (kind, ids) in map {
                let expanded = match string_set(ids) {
                    Value::Array(list) => {
                        let mut l: Vec<String> = list
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|id| {
                                if kind == "AWS"
                                    && id.len() == 12
                                    && id.chars().all(|c| c.is_ascii_digit())
                                {
                                    format!("arn:aws:iam::{id}:root")
                                } else {
                                    id.to_string()
                                }
                            })
                            .collect();
                        l.sort();
                        l.dedup();
                        json!(l)
                    }
                    other => other,
                };
                out.insert(kind.clone(), expanded);
            }
            Value::Object(out)
        }
        // "*" and {"AWS": "*"} are equivalent in AWS.
        Value::String(s) if s == "*" => json!({"AWS": ["*"]}),
        other => other.clone(),
    }
}

fn normalize_condition(value: &Value) -> Value {
    let Some(operators) = value.as_object() else {
        return value.clone();
    };
    let mut out = Map::new();
    for (operator, keys) in operators {
        let mut inner = Map::new();
        if let Some(keys) = keys.as_object() {
            for (key, v) in keys {
                inner.insert(key.clone(), string_set(v));
            }
        }
        out.insert(operator.clone(), Value::Object(inner));
    }
    Value::Object(out)
}

/// Parses a policy as AWS returns it: JSON, possibly URL-encoded (IAM does that).
pub fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_decode(text)?;
        serde_json::from_str(&decoded).ok()
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// True when two policies mean the same.
pub fn equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Every action an `Allow` statement grants, for least-privilege checks.
pub fn allowed_actions(doc: &Value) -> Vec<String> {
    let normalized = normalize(doc);
    let mut actions = Vec::new();
    for statement in normalized["Statement"].as_array().into_iter().flatten() {
        if statement["Effect"] == "Allow" {
            for a in statement["Action"].as_array().into_iter().flatten() {
                if let Some(a) = a.as_str() {
                    actions.push(a.to_string());
                }
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reordered_and_collapsed_policies_are_equivalent() {
        let ours = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "B", "Effect": "Allow", "Principal": {"AWS": ["111111111111"]}, "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/*"]},
            {"Sid": "A", "Effect": "Deny", "Principal": "*", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
             "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}}
        ]});
        let theirs = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "A", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": ["arn:aws:s3:::b/*", "arn:aws:s3:::b"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "B", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        ]});
        assert!(equivalent(&ours, &theirs));
    }

    #[test]
    fn real_differences_are_detected() {
        let a = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
        let b = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]});
        assert!(!equivalent(&a, &b));
    }

    #[test]
    fn url_encoded_policies_parse() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse(encoded),
            Some(json!({"Version": "2012-10-17", "Statement": []}))
        );
        assert_eq!(parse("{\"a\":1}"), Some(json!({"a": 1})));
        assert_eq!(parse("not json"), None);
    }
}
