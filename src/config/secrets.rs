//! Secret references in the configuration file: `${env:NAME}` is replaced by the value of
//! environment variable NAME and `${file:/path}` by the contents of that file (trailing
//! newline dropped) before the file is parsed — so passwords, keys and connection strings
//! come from Kubernetes Secrets (as env vars or mounted files), never from the ConfigMap.

use crate::problems::Problems;

/// The file text with every reference replaced; each unresolvable reference is a problem
/// naming its line.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Problems> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Problems::default();
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let reference = &after[..end];
            let value = match reference.split_once(':') {
                Some(("env", name)) => {
                    env(name).ok_or_else(|| format!("environment variable {name} is not set"))
                }
                Some(("file", path)) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| format!("cannot read {path}: {e}")),
                _ => {
                    // Not a reference of ours: keep the text as it is.
                    out.push_str("${");
                    rest = after;
                    continue;
                }
            };
            match value {
                // Inside a TOML basic string: escape what would end or break it.
                Ok(v) => out.push_str(&v.replace('\\', "\\\\").replace('"', "\\\"")),
                Err(e) => problems.push(
                    format!("config line {}", n + 1),
                    format!("`${{{reference}}}`: {e}"),
                ),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_or_reported() {
        let env = |n: &str| (n == "PW").then(|| "s3\"cret".to_owned());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "key-data\n").unwrap();
        let text = format!(
            "a = \"${{env:PW}}\"\nb = \"${{file:{}}}\"\nc = \"${{other}}\"\n",
            f.display()
        );
        let out = expand(&text, &env).unwrap();
        assert_eq!(
            out,
            "a = \"s3\\\"cret\"\nb = \"key-data\"\nc = \"${other}\"\n"
        );
        assert_eq!(
            expand("# ${env:NOPE}\n", &env).unwrap(),
            "# ${env:NOPE}\n",
            "comments untouched"
        );
        let err = expand("x = 1\ny = \"${env:NOPE}\"\n", &env).unwrap_err();
        assert_eq!(err.as_slice()[0].path, "config line 2");
        assert!(err.as_slice()[0].message.contains("NOPE"));
    }
}
