//! The servers' config files: the repository's samples (through the playground's
//! writers) with the keys that depend on addresses and the spec replaced.

/// `text` (a properties file) with the values of `overrides` in place of its own (keys it
/// lacks are appended), under a line saying who wrote it.
pub fn override_keys(text: &str, overrides: &[(String, String)]) -> String {
    let mut out = String::from("# Written by jepsen-tests at every start: edits are lost.\n");
    let mut seen = vec![false; overrides.len()];
    // The playground's own header would be misleading here.
    for line in text.lines().filter(|l| !l.starts_with("# Written by")) {
        let trimmed = line.trim_start();
        let key = if trimmed.starts_with(['#', '!']) {
            None
        } else {
            trimmed.split(['=', ':']).next().map(str::trim)
        };
        match key.and_then(|k| overrides.iter().position(|(o, _)| o == k)) {
            Some(i) => {
                if !seen[i] {
                    out.push_str(&format!("{}={}\n", overrides[i].0, overrides[i].1));
                }
                seen[i] = true;
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for ((key, value), _) in overrides.iter().zip(&seen).filter(|(_, s)| !**s) {
        out.push_str(&format!("{key}={value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_and_append_keys() {
        let text = "# c\na=1\nb = 2\n#a=9\n";
        let out = override_keys(text, &[("b".into(), "3".into()), ("z".into(), "4".into())]);
        assert_eq!(
            out,
            "# Written by jepsen-tests at every start: edits are lost.\n# c\na=1\nb=3\n#a=9\nz=4\n"
        );
    }
}
