//! A package's licence as its machine-readable copyright file declares it.
//!
//! Debian packages ship `/usr/share/doc/PKG/copyright`; when it is in the
//! machine-readable format (DEP-5, "copyright-format/1.0") each `Files`
//! paragraph names its licence with a short name (`GPL-2+`, `Expat`,
//! `BSD-3-clause`) and `and`/`or` between names. The SBOM's declared
//! licence is those paragraphs' licences joined with `AND` (the package is
//! under all of them at once), each written as SPDX writes it.
//!
//! Nothing is guessed: a file that is not DEP-5, or that does not parse,
//! declares nothing (`NOASSERTION`); a short name the DEP-5 specification
//! does not tie to one SPDX licence identifier (an unversioned `GPL`,
//! `public-domain`, `Artistic`, anything with an exception) becomes a
//! `LicenseRef-` carrying the name as written, which the SPDX document
//! defines with the name and the text the copyright file gives for it.

use std::collections::BTreeMap;

use crate::apt::deb822::Paragraphs;

/// The prefix SPDX requires of a licence it does not list.
pub const LICENCE_REF_PREFIX: &str = "LicenseRef-";

/// What a copyright file declares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Declared {
    /// The SPDX licence expression; `None` for `NOASSERTION`.
    pub expression: Option<String>,
    /// Each `LicenseRef-` the expression uses, with the licence's name as
    /// the copyright file writes it and the text it gives (a stand-alone
    /// `License` paragraph's, else the `Files` paragraph's own), if any.
    pub references: BTreeMap<String, Reference>,
}

/// A licence that is not on SPDX's list, as a copyright file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The short name as written (`public-domain`).
    pub name: String,
    /// The text the copyright file gives for it, when it gives one.
    pub text: Option<String>,
}

/// The DEP-5 short names that are SPDX identifiers under another
/// spelling, from the specification's table of short names, and the SPDX
/// identifiers a copyright file may use as they are. `+` (or later) is
/// handled apart.
const SPDX_NAMES: &[(&str, &str)] = &[
    ("apache-1.0", "Apache-1.0"),
    ("apache-1.1", "Apache-1.1"),
    ("apache-2.0", "Apache-2.0"),
    ("artistic-1.0", "Artistic-1.0"),
    ("artistic-2.0", "Artistic-2.0"),
    ("bsd-2-clause", "BSD-2-Clause"),
    ("bsd-3-clause", "BSD-3-Clause"),
    ("bsd-4-clause", "BSD-4-Clause"),
    ("bsl-1.0", "BSL-1.0"),
    ("cc-by-3.0", "CC-BY-3.0"),
    ("cc-by-4.0", "CC-BY-4.0"),
    ("cc-by-sa-3.0", "CC-BY-SA-3.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0"),
    ("cc0-1.0", "CC0-1.0"),
    ("cddl-1.0", "CDDL-1.0"),
    ("epl-1.0", "EPL-1.0"),
    ("epl-2.0", "EPL-2.0"),
    ("expat", "MIT"),
    ("mit", "MIT"),
    ("isc", "ISC"),
    ("mpl-1.1", "MPL-1.1"),
    ("mpl-2.0", "MPL-2.0"),
    ("openssl", "OpenSSL"),
    ("python-2.0", "Python-2.0"),
    ("unicode-dfs-2016", "Unicode-DFS-2016"),
    ("zlib", "Zlib"),
    ("0bsd", "0BSD"),
];

/// The GNU licences DEP-5 writes `NAME-VERSION[+]` and SPDX
/// `NAME-VERSION-only` / `-or-later`, with the versions each has.
const GNU_LICENCES: &[(&str, &str, &[&str])] = &[
    ("gpl", "GPL", &["1.0", "2.0", "3.0"]),
    ("lgpl", "LGPL", &["2.0", "2.1", "3.0"]),
    ("agpl", "AGPL", &["1.0", "3.0"]),
    ("gfdl", "GFDL", &["1.1", "1.2", "1.3"]),
];

/// Reads a copyright file's text. Anything but a DEP-5 file that parses
/// declares nothing.
pub fn declared(text: &str) -> Declared {
    let mut paragraphs = Vec::new();
    for paragraph in Paragraphs::new(text) {
        match paragraph {
            Ok(paragraph) => paragraphs.push(paragraph),
            Err(_) => return Declared::default(),
        }
    }
    let Some(header) = paragraphs.first() else {
        return Declared::default();
    };
    let is_dep5 = header
        .get("Format")
        .is_some_and(|format| format.contains("copyright-format/1.0") || format.contains("/dep5"));
    if !is_dep5 {
        return Declared::default();
    }
    // Texts given in stand-alone `License` paragraphs, by short name.
    let mut texts: BTreeMap<&str, String> = BTreeMap::new();
    for paragraph in &paragraphs[1..] {
        if paragraph.get("Files").is_some() {
            continue;
        }
        if let Some(licence) = paragraph.get_multiline("License") {
            let text: Vec<&str> = licence.lines().collect();
            let text = text.join("\n").trim().to_string();
            if !text.is_empty() {
                texts.entry(licence.first_line()).or_insert(text);
            }
        }
    }
    let mut parts: Vec<String> = Vec::new();
    let mut references = BTreeMap::new();
    for paragraph in &paragraphs[1..] {
        if paragraph.get("Files").is_none() {
            continue;
        }
        let Some(licence) = paragraph.get_multiline("License") else {
            // A `Files` paragraph without its licence: the file does not
            // say what the package is under.
            return Declared::default();
        };
        let own_text: Vec<&str> = licence.lines().collect();
        let own_text = own_text.join("\n").trim().to_string();
        let Some(expression) = expression(licence.first_line(), &mut |name| {
            let text = texts
                .get(name)
                .cloned()
                .or_else(|| (!own_text.is_empty()).then(|| own_text.clone()));
            reference(name, text, &mut references)
        }) else {
            return Declared::default();
        };
        if !parts.contains(&expression) {
            parts.push(expression);
        }
    }
    if parts.is_empty() {
        return Declared::default();
    }
    let expression = if parts.len() == 1 {
        parts.remove(0)
    } else {
        parts
            .iter()
            .map(|p| parenthesised(p))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Declared {
        expression: Some(expression),
        references,
    }
}

/// A DEP-5 licence line as an SPDX expression: names joined by `or` and
/// `and` (`and` binding tighter, as in SPDX), and a comma closing what came
/// before it (`A or B, and C` is `(A OR B) AND C`). `name` turns a name
/// SPDX does not list into a `LicenseRef-`. `None` when the line is not
/// one DEP-5 allows.
fn expression(line: &str, name: &mut dyn FnMut(&str) -> String) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let mut result: Option<String> = None;
    for (number, segment) in line.split(',').enumerate() {
        let segment = segment.trim();
        let (operator, rest) = if number == 0 {
            ("", segment)
        } else if let Some(rest) = segment.strip_prefix("and ") {
            ("AND", rest)
        } else if let Some(rest) = segment.strip_prefix("or ") {
            ("OR", rest)
        } else {
            return None;
        };
        let simple = simple_expression(rest, name)?;
        result = Some(match result {
            None => simple,
            Some(before) => format!(
                "{} {operator} {}",
                parenthesised(&before),
                parenthesised(&simple)
            ),
        });
    }
    result
}

/// Names joined by `and` and `or`, without commas. A `with … exception`
/// clause belongs to the name before it; SPDX's exception list does not
/// match Debian's wording, so the name and its exception become one
/// `LicenseRef-`.
fn simple_expression(text: &str, name: &mut dyn FnMut(&str) -> String) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut flush = |current: &mut Vec<&str>, out: &mut Vec<String>| -> Option<()> {
        if current.is_empty() {
            return None;
        }
        let written = current.join(" ");
        out.push(spdx_name(&written).unwrap_or_else(|| name(&written)));
        current.clear();
        Some(())
    };
    for word in words {
        match word {
            "and" | "or" => {
                flush(&mut current, &mut out)?;
                out.push(word.to_ascii_uppercase());
            }
            _ => current.push(word),
        }
    }
    flush(&mut current, &mut out)?;
    Some(out.join(" "))
}

/// The SPDX identifier DEP-5's short name `name` stands for, if exactly
/// one: `GPL-2+` is `GPL-2.0-or-later`, `LGPL-2.1` is `LGPL-2.1-only`,
/// `Expat` is `MIT`. A name with spaces (an exception) has none.
fn spdx_name(name: &str) -> Option<String> {
    if name.contains(char::is_whitespace) {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, spdx)) = SPDX_NAMES.iter().find(|(dep5, _)| *dep5 == lower) {
        return Some((*spdx).to_string());
    }
    let (base, later) = match lower.strip_suffix('+') {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };
    let (family, version) = base.split_once('-')?;
    let (_, spdx, versions) = GNU_LICENCES.iter().find(|(f, _, _)| *f == family)?;
    // `2`, `2.0` and `2.1` as written; SPDX writes two parts.
    let version = if version.contains('.') {
        version.to_string()
    } else {
        format!("{version}.0")
    };
    if !versions.contains(&version.as_str()) {
        return None;
    }
    let suffix = if later { "or-later" } else { "only" };
    Some(format!("{spdx}-{version}-{suffix}"))
}

/// The `LicenseRef-` for a name SPDX does not list, recorded in
/// `references` (the first text given for it stays).
fn reference(
    name: &str,
    text: Option<String>,
    references: &mut BTreeMap<String, Reference>,
) -> String {
    let id = format!("{LICENCE_REF_PREFIX}{}", id_chars(name));
    references.entry(id.clone()).or_insert(Reference {
        name: name.to_string(),
        text,
    });
    id
}

/// `text` with every character an SPDX identifier cannot hold (only
/// letters, digits, `.` and `-`) written as `-`, and `+` as `-plus`.
pub fn id_chars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => out.push(c),
            '+' => out.push_str("-plus"),
            _ => out.push('-'),
        }
    }
    out
}

/// `expression` in parentheses when it joins more than one licence.
fn parenthesised(expression: &str) -> String {
    if expression.contains(' ') && !(expression.starts_with('(') && balanced_outer(expression)) {
        format!("({expression})")
    } else {
        expression.to_string()
    }
}

/// Whether the opening parenthesis of `expression` closes at its end.
fn balanced_outer(expression: &str) -> bool {
    let mut depth = 0;
    for (i, c) in expression.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 != expression.len() {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n";

    fn expression_of(body: &str) -> Option<String> {
        declared(&format!("{HEADER}{body}")).expression
    }

    #[test]
    fn dep5_short_names_become_spdx_identifiers() {
        let text = "Files: *\nCopyright: 2020 A\nLicense: GPL-2+\n\n\
                    Files: lib/*\nCopyright: 2020 B\nLicense: LGPL-2.1 or Expat\n\n\
                    Files: debian/*\nCopyright: 2020 C\nLicense: GPL-2+\n\n\
                    License: GPL-2+\n This program is free software.\n";
        assert_eq!(
            expression_of(text).as_deref(),
            Some("GPL-2.0-or-later AND (LGPL-2.1-only OR MIT)")
        );
        assert_eq!(
            expression_of("Files: *\nCopyright: x\nLicense: BSD-3-clause\n").as_deref(),
            Some("BSD-3-Clause")
        );
        assert_eq!(
            expression_of("Files: *\nCopyright: x\nLicense: GPL-3.0+\n").as_deref(),
            Some("GPL-3.0-or-later")
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_a_comma_closes_the_group() {
        assert_eq!(
            expression_of(
                "Files: *\nCopyright: x\nLicense: GPL-2+ or Artistic-2.0, and BSD-3-clause\n"
            )
            .as_deref(),
            Some("(GPL-2.0-or-later OR Artistic-2.0) AND BSD-3-Clause")
        );
        assert_eq!(
            expression_of("Files: *\nCopyright: x\nLicense: MIT or Zlib and ISC\n").as_deref(),
            Some("MIT OR Zlib AND ISC")
        );
    }

    #[test]
    fn names_spdx_does_not_list_become_references_with_their_text() {
        let text = "Files: *\nCopyright: x\nLicense: public-domain\n\n\
                    Files: a/*\nCopyright: x\nLicense: GPL-2+ with OpenSSL exception\n Some exception text.\n\n\
                    Files: b/*\nCopyright: x\nLicense: GPL\n\n\
                    License: public-domain\n The author disclaims copyright.\n";
        let declared = declared(&format!("{HEADER}{text}"));
        assert_eq!(
            declared.expression.as_deref(),
            Some(
                "LicenseRef-public-domain AND LicenseRef-GPL-2-plus-with-OpenSSL-exception AND LicenseRef-GPL"
            )
        );
        let public = &declared.references["LicenseRef-public-domain"];
        assert_eq!(public.name, "public-domain");
        assert_eq!(
            public.text.as_deref(),
            Some("The author disclaims copyright.")
        );
        let openssl = &declared.references["LicenseRef-GPL-2-plus-with-OpenSSL-exception"];
        assert_eq!(openssl.text.as_deref(), Some("Some exception text."));
        assert_eq!(declared.references["LicenseRef-GPL"].text, None);
    }

    #[test]
    fn anything_but_a_well_formed_dep5_file_declares_nothing() {
        for text in [
            "This is the Debian prepackaged version of foo.\n\nCopyright: GPL\n",
            "",
            // DEP-5, but a `Files` paragraph says no licence.
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\n",
            // A comma not followed by `and` or `or`.
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: x\nLicense: GPL-2, MIT\n",
            // No `Files` paragraph at all.
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nLicense: MIT\n text\n",
            // Not deb822.
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n continuation without a field\n",
        ] {
            assert_eq!(declared(text), Declared::default(), "{text:?}");
        }
    }

    proptest::proptest! {
        /// Any licence line reads without a panic, and what it gives is
        /// made only of SPDX's characters, operators and parentheses.
        #[test]
        fn any_licence_line_gives_nothing_or_a_well_formed_expression(
            line in "[A-Za-z0-9.+ ,()_-]{0,60}|((GPL-2\\+|MIT|public-domain|Expat)( (and|or) (BSD-3-clause|LGPL-2.1\\+|Zlib)){0,3}(, (and|or) ISC)?)",
        ) {
            let text = format!("{HEADER}Files: *\nCopyright: x\nLicense: {line}\n");
            if let Some(expression) = declared(&text).expression {
                let mut depth = 0i32;
                for c in expression.chars() {
                    proptest::prop_assert!(
                        c.is_ascii_alphanumeric() || " .-()".contains(c),
                        "{expression}"
                    );
                    depth += match c { '(' => 1, ')' => -1, _ => 0 };
                    proptest::prop_assert!(depth >= 0, "{expression}");
                }
                proptest::prop_assert_eq!(depth, 0, "{}", expression);
            }
        }
    }

    #[test]
    fn identifiers_hold_only_what_spdx_allows() {
        assert_eq!(
            id_chars("GPL-2+ with OpenSSL_exception"),
            "GPL-2-plus-with-OpenSSL-exception"
        );
        assert_eq!(id_chars("libstdc++6"), "libstdc-plus-plus6");
    }
}
