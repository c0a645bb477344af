//! `$(VAR)` expansion in env values, command and args, with Kubernetes' rules: `$(NAME)`
//! becomes the variable's value when it is defined and stays as written otherwise, `$$`
//! becomes `$`, and any other `$` is kept.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut copied = 0; // bytes of `input` already in `out` or consumed
    let mut cursor = 0;
    while cursor + 1 < bytes.len() {
        if bytes[cursor] != b'$' {
            cursor += 1;
            continue;
        }
        out.push_str(&input[copied..cursor]);
        match bytes[cursor + 1] {
            b'$' => {
                out.push('$');
                cursor += 2;
            }
            b'(' => match input[cursor + 2..].find(')') {
                Some(len) => {
                    let name = &input[cursor + 2..cursor + 2 + len];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&input[cursor..cursor + 3 + len]),
                    }
                    cursor += 3 + len;
                }
                None => {
                    out.push_str("$(");
                    cursor += 2;
                }
            },
            _ => {
                out.push('$');
                cursor += 1;
            }
        }
        copied = cursor;
    }
    out.push_str(&input[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn run(input: &str) -> String {
        let vars = BTreeMap::from([("POD_IP", "127.0.0.2"), ("SECRET", "s3"), ("EMPTY", "")]);
        expand(input, |name| vars.get(name).copied())
    }

    #[test]
    fn follows_kubernetes_rules() {
        let cases = [
            ("--listening-ip=$(POD_IP)", "--listening-ip=127.0.0.2"),
            ("$(POD_IP):$(SECRET)", "127.0.0.2:s3"),
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("$$(POD_IP)", "$(POD_IP)"),
            ("$$$(POD_IP)", "$127.0.0.2"),
            ("a$(EMPTY)b", "ab"),
            ("cost: $5", "cost: $5"),
            ("trailing $", "trailing $"),
            ("$(unclosed", "$(unclosed"),
            ("$()", "$()"),
            ("é$(POD_IP)é", "é127.0.0.2é"),
            ("$é", "$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(run(input), want, "{input}");
        }
    }
}
