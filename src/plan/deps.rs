//! Expanding the manifest's elements into the full set an image is built
//! from, with diskimage-builder's `element-deps` / `element-provides`
//! semantics.
//!
//! Mirrors `diskimage_builder/element_dependencies.py`: a breadth-first walk
//! from the requested elements through `element-deps`; names listed in some
//! element's `element-provides` are satisfied by that element and dropped
//! from the final set; an explicitly requested element that another one
//! provides is an error; exactly one element must provide
//! `operating-system`. DIB returns a set; kiln keeps the manifest's order for
//! the requested elements and discovery order for dependencies, so plans
//! and error messages are stable.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use crate::manifest::ElementName;

use super::search::{Element, SearchPath};
use super::{PlanError, read_text};

/// The virtual element every image needs exactly one provider of.
pub const OPERATING_SYSTEM: &str = "operating-system";

/// One element of the expanded set.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) element: Element,
    /// The element whose `element-deps` pulled this one in; `None` for the
    /// manifest's own elements.
    pub(crate) required_by: Option<ElementName>,
}

/// Expands `requested` (in manifest order, already without duplicates).
///
/// `os_from_base` says that the image's operating system comes from
/// kiln's own bootstrap of the manifest's `base` rather than from a DIB
/// operating-system element, so no element needs to provide
/// `operating-system`; two providers are still an error.
pub(crate) fn expand(
    requested: &[ElementName],
    search: &SearchPath,
    os_from_base: bool,
) -> Result<Vec<Resolved>, PlanError> {
    let mut queue: VecDeque<ElementName> = requested.iter().cloned().collect();
    let mut parent: HashMap<ElementName, Option<ElementName>> =
        requested.iter().map(|n| (n.clone(), None)).collect();
    let mut order: Vec<ElementName> = requested.to_vec();
    let mut found: HashMap<ElementName, Element> = HashMap::new();
    // Provided name -> every element that provides it, in discovery order.
    let mut provided_by: BTreeMap<String, Vec<Element>> = BTreeMap::new();
    // Names that could not be found. DIB only looks an element up when it
    // reaches it in the queue, so whether a dependency on a provided name
    // fails depends on queue order there; kiln decides after the walk.
    let mut missing: Vec<ElementName> = Vec::new();

    while let Some(name) = queue.pop_front() {
        if provided_by.contains_key(name.as_str()) {
            continue;
        }
        let Some(element) = search.find(&name) else {
            missing.push(name);
            continue;
        };
        let mut deps = read_name_list(&element.dir.join("element-deps"))?;
        for dep in super::element_yaml::dependencies(&element.dir)? {
            if !deps.contains(&dep) {
                deps.push(dep);
            }
        }
        for provide in read_name_list(&element.dir.join("element-provides"))? {
            provided_by
                .entry(provide.as_str().to_string())
                .or_default()
                .push(element.clone());
        }
        for dep in deps {
            if !parent.contains_key(&dep) {
                parent.insert(dep.clone(), Some(name.clone()));
                order.push(dep.clone());
                queue.push_back(dep);
            }
        }
        found.insert(name, element);
    }

    for (provided, providers) in &provided_by {
        if provided == OPERATING_SYSTEM && providers.len() > 1 {
            return Err(PlanError::SeveralOperatingSystems {
                providers: providers
                    .iter()
                    .map(|e| (e.name.clone(), e.dir.clone()))
                    .collect(),
            });
        }
        if let [first, second, ..] = providers.as_slice() {
            return Err(PlanError::ProvidedTwice {
                provided: provided.clone(),
                first: first.name.clone(),
                first_dir: first.dir.clone(),
                second: second.name.clone(),
                second_dir: second.dir.clone(),
            });
        }
    }
    for name in requested {
        if let Some(provider) = provided_by.get(name.as_str()).and_then(|p| p.first()) {
            return Err(PlanError::AlreadyProvided {
                element: name.clone(),
                provider: provider.name.clone(),
            });
        }
    }
    if let Some(name) = missing
        .into_iter()
        .find(|n| !provided_by.contains_key(n.as_str()))
    {
        return Err(not_found(&name, &parent, search));
    }
    if !os_from_base && !provided_by.contains_key(OPERATING_SYSTEM) {
        return Err(PlanError::NoOperatingSystem {
            elements: order
                .iter()
                .filter(|n| found.contains_key(*n))
                .cloned()
                .collect(),
        });
    }

    Ok(order
        .into_iter()
        .filter(|n| !provided_by.contains_key(n.as_str()))
        .filter_map(|n| {
            let element = found.remove(&n)?;
            let required_by = parent.get(&n).cloned().flatten();
            Some(Resolved {
                element,
                required_by,
            })
        })
        .collect())
}

/// Reads an `element-deps` or `element-provides` file: one name a line,
/// blank lines and `#` comments ignored. A missing file means none.
fn read_name_list(path: &Path) -> Result<Vec<ElementName>, PlanError> {
    let Some(text) = read_text(path)? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let name: ElementName =
            line.parse()
                .map_err(|e: crate::manifest::ValueError| PlanError::BadElementName {
                    path: path.to_path_buf(),
                    line: index + 1,
                    name: line.to_string(),
                    reason: e.message,
                })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

fn not_found(
    name: &ElementName,
    parent: &HashMap<ElementName, Option<ElementName>>,
    search: &SearchPath,
) -> PlanError {
    let mut chain = vec![name.clone()];
    let mut current = name;
    // The parent map is a tree rooted at the requested elements (each name
    // gets its parent once), so this walk ends; the bound is belt and braces.
    while let Some(Some(up)) = parent.get(current) {
        if chain.len() > parent.len() {
            break;
        }
        chain.push(up.clone());
        current = up;
    }
    chain.reverse();
    let suggestion = search
        .list()
        .into_iter()
        .map(|e| (strsim::jaro_winkler(name.as_str(), e.name.as_str()), e.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n);
    PlanError::ElementNotFound(Box::new(super::NotFound {
        name: name.clone(),
        chain,
        suggestion,
        searched: search.dirs().to_vec(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::fixtures;

    fn names(list: &[&str]) -> Vec<ElementName> {
        list.iter().map(|s| s.parse().expect("valid")).collect()
    }

    fn basic() -> SearchPath {
        SearchPath::from_parts(&[], None, &fixtures("basic"))
    }

    #[test]
    fn closure_keeps_manifest_order_then_discovery_order() {
        let resolved =
            expand(&names(&["fixture-os", "fixture-lib"]), &basic(), false).expect("plan");
        let got: Vec<&str> = resolved.iter().map(|r| r.element.name.as_str()).collect();
        // fixture-lib needs fixture-virtual, which fixture-app provides;
        // fixture-app is pulled in by fixture-lib too, so the virtual
        // name is satisfied and never looked up as a directory.
        assert_eq!(got, ["fixture-os", "fixture-lib", "fixture-app"]);
        assert_eq!(
            resolved[2].required_by.as_ref().map(ElementName::as_str),
            Some("fixture-lib")
        );
    }

    #[test]
    fn missing_element_names_the_chain_and_a_suggestion() {
        let err =
            expand(&names(&["fixture-os", "fixture-ap"]), &basic(), false).expect_err("missing");
        let PlanError::ElementNotFound(nf) = err else {
            panic!("wrong error: {err}");
        };
        assert_eq!(nf.name.as_str(), "fixture-ap");
        assert_eq!(
            nf.suggestion.as_ref().map(ElementName::as_str),
            Some("fixture-app")
        );
    }

    #[test]
    fn missing_dependency_shows_who_required_it() {
        let search = SearchPath::from_parts(&[fixtures("broken-dep")], None, &fixtures("basic"));
        let err =
            expand(&names(&["fixture-os", "needs-missing"]), &search, false).expect_err("missing");
        let PlanError::ElementNotFound(nf) = &err else {
            panic!("wrong error: {err}");
        };
        let chain: Vec<&str> = nf.chain.iter().map(ElementName::as_str).collect();
        assert_eq!(chain, ["needs-missing", "no-such-element"]);
        assert!(err.to_string().contains("needs-missing -> no-such-element"));
    }

    #[test]
    fn no_operating_system_is_an_error() {
        let err = expand(&names(&["fixture-legacy"]), &basic(), false).expect_err("no os");
        assert!(matches!(err, PlanError::NoOperatingSystem { .. }), "{err}");
    }

    #[test]
    fn no_operating_system_is_fine_when_the_base_provides_it() {
        let resolved = expand(&names(&["fixture-legacy"]), &basic(), true).expect("plan");
        assert_eq!(resolved.len(), 1);
    }

    #[test]
    fn two_operating_systems_are_an_error_even_when_the_base_provides_one() {
        let search = SearchPath::from_parts(&[fixtures("two-providers")], None, &fixtures("basic"));
        let err = expand(&names(&["fixture-os", "other-os"]), &search, true).expect_err("two");
        assert!(matches!(err, PlanError::SeveralOperatingSystems { .. }));
    }

    #[test]
    fn two_operating_systems_are_an_error_naming_both() {
        let search = SearchPath::from_parts(&[fixtures("two-providers")], None, &fixtures("basic"));
        let err = expand(&names(&["fixture-os", "other-os"]), &search, false).expect_err("two");
        let text = err.to_string();
        assert!(
            text.contains("fixture-os") && text.contains("other-os"),
            "{text}"
        );
        assert!(matches!(err, PlanError::SeveralOperatingSystems { .. }));
    }

    #[test]
    fn the_same_name_provided_twice_is_an_error() {
        let search = SearchPath::from_parts(&[fixtures("two-providers")], None, &fixtures("basic"));
        let err = expand(
            &names(&["fixture-os", "fixture-app", "other-virtual"]),
            &search,
            false,
        )
        .expect_err("twice");
        assert!(
            matches!(&err, PlanError::ProvidedTwice { provided, .. } if provided == "fixture-virtual"),
            "{err}"
        );
    }

    #[test]
    fn requesting_a_provided_element_is_an_error() {
        let search = SearchPath::from_parts(&[fixtures("two-providers")], None, &fixtures("basic"));
        let err = expand(
            &names(&["fixture-os", "fixture-app", "fixture-virtual"]),
            &search,
            false,
        )
        .expect_err("already provided");
        assert!(matches!(err, PlanError::AlreadyProvided { .. }), "{err}");
    }
}
