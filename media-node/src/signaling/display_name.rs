//! The name a participant is shown by: what it asked for in `join` (`name`), checked, or its
//! token's identity when it asked for none. The identity stays the participant's key (one
//! session per identity, TURN usernames); the name is only shown.

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The name to show for a participant that joined as `identity` asking for `requested`;
/// the reason, naming the field, when the request cannot be shown.
pub fn display_name(requested: Option<&str>, identity: &str) -> Result<String, String> {
    let Some(name) = requested.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(identity.to_owned());
    };
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "join.name is {chars} characters long: at most {MAX_NAME_CHARS} are allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("join.name contains control characters (line breaks, tabs, escapes)".into());
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_name_or_a_blank_one_shows_the_identity() {
        assert_eq!(display_name(None, "alice").unwrap(), "alice");
        assert_eq!(display_name(Some("   "), "alice").unwrap(), "alice");
    }

    #[test]
    fn a_name_is_shown_trimmed_whatever_its_script() {
        assert_eq!(
            display_name(Some("  Ana María "), "u-17").unwrap(),
            "Ana María"
        );
        assert_eq!(display_name(Some("李小龍"), "u-18").unwrap(), "李小龍");
    }

    #[test]
    fn long_names_and_control_characters_are_refused_naming_the_field() {
        let long = "é".repeat(MAX_NAME_CHARS + 1);
        let e = display_name(Some(&long), "a").unwrap_err();
        assert!(e.starts_with("join.name is 65 characters"), "{e}");
        assert!(display_name(Some(&"é".repeat(MAX_NAME_CHARS)), "a").is_ok());
        let e = display_name(Some("Bob\n(admin)"), "a").unwrap_err();
        assert!(e.contains("join.name"), "{e}");
    }
}
