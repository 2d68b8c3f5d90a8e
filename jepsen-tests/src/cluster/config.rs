//! The servers' config files: the repository's samples (through the playground's
//! writers) with the keys that depend on addresses and the spec replaced.

/// `text` (a properties file) with the values of `overrides` in place of its own (keys it
/// lacks are appended), under a line saying who wrote it.
pub fn override_keys(text: &str, overrides: &[(String, String)]) -> String {
    // The playground's own header would be misleading here.
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("# Written by"))
        .flat_map(|l| [l, "\n"])
        .collect();
    let mut out = String::from("# Written by jepsen-tests at every start: edits are lost.\n");
    out.push_str(&raftmq_tools::playground::conf::replace_keys(
        &body, overrides,
    ));
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
