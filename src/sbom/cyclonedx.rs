//! The inventory as a CycloneDX 1.5 JSON document (`<image>.cdx.json`).
//!
//! The image is `metadata.component`; the distribution is an
//! `operating-system` component (how scanners such as Trivy learn which
//! advisories apply); each package is a `library` with its package URL,
//! the `.deb`'s SHA-256 and download URL, and its declared licence. The
//! `dependencies` say the image depends on the distribution and every
//! package, and each package on those its `Depends` name. Elements are
//! components of `scope: excluded` (they made the image, they are not in
//! it). The serial number is derived from the document's content.

use serde_json::{Value, json};

use super::{Inventory, Package, derived_uuid, iso8601_utc};

/// The CycloneDX version written.
pub const SPEC_VERSION: &str = "1.5";

/// The document.
pub fn document(inventory: &Inventory) -> Value {
    let image_ref = format!("kiln:image:{}", inventory.image);
    let os_ref = format!("kiln:os:{}-{}", inventory.os.id, inventory.os.release);
    let mut os = json!({
        "bom-ref": os_ref,
        "type": "operating-system",
        "name": inventory.os.id,
        "description": format!("{} {} ({})", inventory.os.id, inventory.os.release, inventory.arch),
    });
    if let Some(version) = &inventory.os.version {
        os["version"] = json!(version);
    }
    let mut components = vec![os];
    let mut image_depends = vec![json!(os_ref)];
    let mut dependencies = Vec::new();
    if let Some(base) = &inventory.base_image {
        let base_ref = "kiln:base-image";
        let mut component = json!({
            "bom-ref": base_ref,
            "type": "operating-system",
            "name": base.url.rsplit('/').next().unwrap_or(&base.url),
            "hashes": [{"alg": "SHA-256", "content": base.sha256}],
            "externalReferences": [{"type": "distribution", "url": base.url}],
            "properties": [
                {"name": "kiln:role", "value": "base image"},
                {"name": "kiln:format", "value": base.format},
            ],
        });
        if let Some(version) = &base.version {
            component["version"] = json!(version);
        }
        components.push(component);
        image_depends.push(json!(base_ref));
    }
    for element in &inventory.elements {
        components.push(json!({
            "bom-ref": format!("kiln:element:{}", element.name),
            "type": "file",
            "name": element.name,
            "scope": "excluded",
            "description": "kiln element the image was built with",
            "properties": [
                {"name": "kiln:element:origin", "value": element.origin},
                {"name": "kiln:element:tree", "value": element.tree},
            ],
        }));
    }
    let purls: std::collections::BTreeMap<String, String> = inventory
        .packages
        .iter()
        .map(|p| (p.key(), p.purl(&inventory.os)))
        .collect();
    for package in &inventory.packages {
        let purl = &purls[&package.key()];
        components.push(package_json(package, purl));
        image_depends.push(json!(purl));
        let depends: Vec<&String> = package
            .depends
            .iter()
            .filter_map(|key| purls.get(key))
            .collect();
        dependencies.push(json!({"ref": purl, "dependsOn": depends}));
    }
    dependencies.insert(0, json!({"ref": image_ref, "dependsOn": image_depends}));
    let mut document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": "",
        "version": 1,
        "metadata": {
            "timestamp": iso8601_utc(inventory.source_date_epoch),
            "tools": {"components": [{
                "type": "application",
                "name": "kiln",
                "version": inventory.kiln_version,
            }]},
            "component": {
                "bom-ref": image_ref,
                "type": "platform",
                "name": inventory.image,
                "description": format!("machine image built by kiln ({})", inventory.arch),
            },
            "properties": [
                {"name": "kiln:lock:sha256", "value": inventory.lock_sha256},
                {"name": "kiln:imagefile:sha256", "value": inventory.manifest_sha256},
                {"name": "kiln:basis", "value": super::spdx::basis_comment(inventory)},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    });
    let uuid = derived_uuid(super::to_text(&document).as_bytes());
    document["serialNumber"] = json!(format!("urn:uuid:{uuid}"));
    document
}

fn package_json(package: &Package, purl: &str) -> Value {
    let mut value = json!({
        "bom-ref": purl,
        "type": "library",
        "name": package.name,
        "version": package.version,
        "purl": purl,
    });
    if let Some(maintainer) = &package.maintainer {
        let mut supplier = json!({"name": maintainer.name});
        if let Some(email) = &maintainer.email {
            supplier["contact"] = json!([{"email": email}]);
        }
        value["supplier"] = supplier;
    }
    if let Some(expression) = &package.licence.expression {
        value["licenses"] = json!([{"expression": expression}]);
    }
    let mut properties = vec![json!({"name": "kiln:arch", "value": package.arch})];
    match &package.locked {
        Some(file) => {
            value["hashes"] = json!([{"alg": "SHA-256", "content": file.sha256}]);
            value["externalReferences"] = json!([{"type": "distribution", "url": file.url}]);
            properties.push(json!({"name": "kiln:repository", "value": file.repository}));
        }
        None => properties.push(json!({
            "name": "kiln:outside-lock",
            "value": "installed by the base image or its package manager, not pinned by the lock",
        })),
    }
    value["properties"] = Value::Array(properties);
    value
}

#[cfg(test)]
mod tests {
    use super::super::tests::lock;
    use super::super::{Inventory, Origin};
    use super::*;

    #[test]
    fn packages_are_libraries_the_image_depends_on() {
        let lock = lock();
        let inventory = Inventory::from_lock(
            Origin {
                image: "demo",
                lock: &lock,
                lock_text: b"x",
            },
            None,
        );
        let document = document(&inventory);
        assert_eq!(document["specVersion"], "1.5");
        assert_eq!(document["metadata"]["timestamp"], "2025-05-10T00:00:00Z");
        let components = document["components"].as_array().expect("components");
        assert_eq!(components[0]["type"], "operating-system");
        assert_eq!(components[0]["version"], "12");
        let libc = components
            .iter()
            .find(|c| c["name"] == "libc6")
            .expect("libc6");
        assert_eq!(
            libc["purl"],
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u10?arch=amd64&distro=bookworm"
        );
        assert_eq!(libc["hashes"][0]["alg"], "SHA-256");
        assert!(libc.get("licenses").is_none(), "no licence is guessed");
        let image = &document["dependencies"][0];
        assert_eq!(image["ref"], "kiln:image:demo");
        // The distribution and the four packages.
        assert_eq!(image["dependsOn"].as_array().expect("list").len(), 5);
        let text = super::super::to_text(&document);
        assert_eq!(text, super::super::to_text(&super::document(&inventory)));
        assert!(
            document["serialNumber"]
                .as_str()
                .expect("serial")
                .starts_with("urn:uuid:")
        );
    }
}
