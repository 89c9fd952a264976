//! What counts as a JSON Web Key Set, for every stage that reads one: an
//! inline `jwks` is refused at validation by this rule, and the control
//! plane checks a fetched key set by it before handing it to proxies (a
//! set a proxy refused would cost the whole listener, not one rule).

/// A JWKS: a JSON object whose `keys` is a non-empty array of objects,
/// each with a `kty`. `Err` says what is wrong.
pub fn check(text: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a JWKS (not JSON: {e})"))?;
    let keys = v
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("not a JWKS (no keys array)")?;
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    if let Some(i) = keys
        .iter()
        .position(|k| k.get("kty").and_then(|t| t.as_str()).is_none())
    {
        return Err(format!("the JWKS's keys[{i}] has no kty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn a_jwks_needs_keys_with_a_type() {
        assert!(check(r#"{"keys": [{"kty": "EC"}]}"#).is_ok());
        assert!(check("nope").unwrap_err().contains("not JSON"));
        assert!(check(r#"{"keys": []}"#).unwrap_err().contains("no keys"));
        assert!(check(r#"{"keys": [{"n": "x"}]}"#)
            .unwrap_err()
            .contains("keys[0] has no kty"));
        assert!(check(r#"{"k": 1}"#).unwrap_err().contains("no keys array"));
    }
}
