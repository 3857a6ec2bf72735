//! The inventory as an SPDX 2.3 JSON document (`<image>.spdx.json`).
//!
//! The image is the described package (`DESCRIBES`); it `CONTAINS` each
//! installed package, which `DEPENDS_ON` the packages its `Depends` and
//! `Pre-Depends` name; each element is a `BUILD_TOOL_OF` the image, and the
//! image is a `DESCENDANT_OF` its base image, for image bases. Fields SPDX
//! requires that kiln does not know are `NOASSERTION`, never a guess.
//! The document namespace is a `urn:uuid:` derived from the document's own
//! content, so the same inventory gives the same bytes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::licence::{self, id_chars};
use super::{Basis, Inventory, Package, derived_uuid, iso8601_utc};

const NOASSERTION: &str = "NOASSERTION";

/// The SPDX identifier of the image's own package.
const IMAGE_ID: &str = "SPDXRef-Image";

/// The document.
pub fn document(inventory: &Inventory) -> Value {
    let mut packages = vec![image_package(inventory)];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];
    if let Some(base) = &inventory.base_image {
        let id = "SPDXRef-BaseImage";
        let mut package = json!({
            "SPDXID": id,
            "name": base.url.rsplit('/').next().unwrap_or(&base.url),
            "downloadLocation": base.url,
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": base.sha256}],
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
            "comment": format!("the {} image the base tree was taken out of", base.format),
        });
        if let Some(version) = &base.version {
            package["versionInfo"] = json!(version);
        }
        packages.push(package);
        relationships.push(relationship(IMAGE_ID, "DESCENDANT_OF", id));
    }
    for element in &inventory.elements {
        let id = format!("SPDXRef-Element-{}", spdx_id_part(&element.name));
        packages.push(json!({
            "SPDXID": id,
            "name": element.name,
            "downloadLocation": NOASSERTION,
            "filesAnalyzed": false,
            "licenseConcluded": NOASSERTION,
            "licenseDeclared": NOASSERTION,
            "copyrightText": NOASSERTION,
            "sourceInfo": format!("kiln element from {}", element.origin),
            "comment": format!("element tree hash {}", element.tree),
        }));
        relationships.push(relationship(&id, "BUILD_TOOL_OF", IMAGE_ID));
    }
    let ids: BTreeMap<String, String> = inventory
        .packages
        .iter()
        .map(|p| (p.key(), package_id(p)))
        .collect();
    let mut references: BTreeMap<String, licence::Reference> = BTreeMap::new();
    for package in &inventory.packages {
        packages.push(package_json(inventory, package, &ids[&package.key()]));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &ids[&package.key()]));
        for dependency in &package.depends {
            if let Some(to) = ids.get(dependency) {
                relationships.push(relationship(&ids[&package.key()], "DEPENDS_ON", to));
            }
        }
        for (id, reference) in &package.licence.references {
            references
                .entry(id.clone())
                .or_insert_with(|| reference.clone());
        }
    }
    let extracted: Vec<Value> = references
        .iter()
        .map(|(id, reference)| {
            json!({
                "licenseId": id,
                "name": reference.name,
                "extractedText": reference.text.clone().unwrap_or_else(|| format!(
                    "The licence a Debian machine-readable copyright file calls `{}`; it gives no text for it.",
                    reference.name
                )),
            })
        })
        .collect();
    let mut document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inventory.image,
        "documentNamespace": "",
        "creationInfo": {
            "created": iso8601_utc(inventory.source_date_epoch),
            "creators": [format!("Tool: kiln-{}", inventory.kiln_version)],
            "comment": basis_comment(inventory),
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        document["hasExtractedLicensingInfos"] = Value::Array(extracted);
    }
    // The namespace is derived from everything else the document says.
    let uuid = derived_uuid(super::to_text(&document).as_bytes());
    document["documentNamespace"] = json!(format!("urn:uuid:{uuid}"));
    document
}

/// What the document was made from, and so what it can and cannot say.
pub(crate) fn basis_comment(inventory: &Inventory) -> String {
    let lock = format!(
        "lock sha256:{}, imagefile sha256:{}",
        inventory.lock_sha256, inventory.manifest_sha256
    );
    match inventory.basis {
        Basis::Tree => format!(
            "Made by kiln build from the finished image's dpkg database ({lock}): packages removed during the build are not listed; packages installed outside the lock are, with a comment saying so. Licences are those the packages' machine-readable copyright files declare, NOASSERTION where there is none."
        ),
        Basis::Lock { control_files } => format!(
            "Made by kiln sbom from the lock alone, without building ({lock}): every locked package is listed, including any a hook removes during the build; an image base's own packages are not (the lock pins the image, not them); licences are NOASSERTION (they are read from the built tree). {}",
            if control_files {
                "Suppliers and dependencies are read from the locked .deb files in the cache."
            } else {
                "Some locked .deb files were not in the cache (run kiln fetch first): their suppliers are NOASSERTION and their dependencies are not listed."
            }
        ),
    }
}

fn image_package(inventory: &Inventory) -> Value {
    json!({
        "SPDXID": IMAGE_ID,
        "name": inventory.image,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "supplier": NOASSERTION,
        "comment": format!(
            "machine image built by kiln from {} {} ({}), lock sha256:{}",
            inventory.os.id, inventory.os.release, inventory.arch, inventory.lock_sha256
        ),
    })
}

fn package_json(inventory: &Inventory, package: &Package, id: &str) -> Value {
    let supplier = package.maintainer.as_ref().map_or_else(
        || NOASSERTION.to_string(),
        |m| match &m.email {
            // SPDX cannot tell a team from a person; a Debian maintainer
            // is written as a person, as other SBOM tools do.
            Some(email) => format!("Person: {} ({email})", clean(&m.name)),
            None => format!("Person: {}", clean(&m.name)),
        },
    );
    let mut value = json!({
        "SPDXID": id,
        "name": package.name,
        "versionInfo": package.version,
        "supplier": supplier,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": false,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": package.licence.expression.as_deref().unwrap_or(NOASSERTION),
        "copyrightText": NOASSERTION,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": package.purl(&inventory.os),
        }],
    });
    match &package.locked {
        Some(file) => {
            value["downloadLocation"] = json!(file.url);
            value["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": file.sha256}]);
            value["sourceInfo"] =
                json!(format!("{}, locked from {}", package.arch, file.repository));
        }
        None => {
            value["sourceInfo"] = json!(format!("{}, installed outside the lock", package.arch));
            value["comment"] = json!(
                "installed outside the lock (by the base image or its package manager): not pinned by imagefile.lock"
            );
        }
    }
    value
}

/// A name without the parentheses SPDX's `Person: name (email)` form
/// would misread.
fn clean(name: &str) -> String {
    name.replace(['(', ')'], "")
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({
        "spdxElementId": from,
        "relationshipType": kind,
        "relatedSpdxElement": to,
    })
}

/// `SPDXRef-Package-deb-NAME-ARCH`, unique: a name with characters SPDX
/// identifiers cannot hold gets a hash of the original added.
fn package_id(package: &Package) -> String {
    let format = match package.format {
        super::PackageFormat::Deb => "deb",
        super::PackageFormat::Rpm => "rpm",
    };
    format!(
        "SPDXRef-Package-{format}-{}-{}",
        spdx_id_part(&package.name),
        spdx_id_part(&package.arch)
    )
}

/// `text` as SPDX identifiers allow (letters, digits, `.`, `-`); when it
/// had to change, the start of the SHA-256 of the original keeps two names
/// apart.
fn spdx_id_part(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if plain {
        return text.to_string();
    }
    let hash = crate::cache::Digest::of_bytes(text.as_bytes()).sha256;
    format!("{}-{}", id_chars(text), &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::super::tests::lock;
    use super::super::{Inventory, Origin};
    use super::*;

    fn inventory() -> Inventory {
        let lock = lock();
        let mut inventory = Inventory::from_lock(
            Origin {
                image: "demo",
                lock: &lock,
                lock_text: b"x",
            },
            None,
        );
        inventory.packages[1].licence = licence::declared(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
             Files: *\nCopyright: x\nLicense: public-domain\n",
        );
        inventory
    }

    #[test]
    fn the_image_contains_each_package_with_its_purl_hash_and_download() {
        let document = document(&inventory());
        assert_eq!(document["spdxVersion"], "SPDX-2.3");
        assert_eq!(document["creationInfo"]["created"], "2025-05-10T00:00:00Z");
        let packages = document["packages"].as_array().expect("packages");
        // The image, the element, four packages.
        assert_eq!(packages.len(), 6);
        let libstdcxx = packages
            .iter()
            .find(|p| p["name"] == "libstdc++6")
            .expect("libstdc++6");
        assert!(
            libstdcxx["SPDXID"]
                .as_str()
                .expect("id")
                .starts_with("SPDXRef-Package-deb-libstdc-plus-plus6-"),
            "{libstdcxx}"
        );
        assert_eq!(
            libstdcxx["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=amd64&distro=bookworm"
        );
        assert_eq!(libstdcxx["licenseDeclared"], "NOASSERTION");
        let libc = packages
            .iter()
            .find(|p| p["name"] == "libc6")
            .expect("libc6");
        assert_eq!(libc["licenseDeclared"], "LicenseRef-public-domain");
        assert_eq!(
            libc["downloadLocation"],
            "http://mirror.example.invalid/debian/pool/main/libc6_2.36-9+deb12u10_amd64.deb"
        );
        assert_eq!(libc["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            document["hasExtractedLicensingInfos"][0]["licenseId"],
            "LicenseRef-public-domain"
        );
        let relationships = document["relationships"].as_array().expect("relationships");
        let contains = relationships
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count();
        assert_eq!(contains, 4);
        assert!(
            relationships
                .iter()
                .any(|r| r["relationshipType"] == "BUILD_TOOL_OF"
                    && r["spdxElementId"] == "SPDXRef-Element-vm")
        );
    }

    #[test]
    fn an_image_base_is_the_images_ancestor_and_its_own_packages_are_marked() {
        let mut inventory = inventory();
        inventory.base_image = Some(crate::lock::LockedImage {
            url: "http://images.example.invalid/cloud/debian-12-generic-amd64.qcow2".to_string(),
            size: 1,
            sha256: "5".repeat(64),
            format: "qcow2".to_string(),
            checksums: None,
            signed_by: None,
            version: Some("20250510-2106".to_string()),
        });
        inventory.packages[0].locked = None;
        let document = document(&inventory);
        let packages = document["packages"].as_array().expect("packages");
        let base = packages
            .iter()
            .find(|p| p["SPDXID"] == "SPDXRef-BaseImage")
            .expect("the base image");
        assert_eq!(base["name"], "debian-12-generic-amd64.qcow2");
        assert_eq!(base["versionInfo"], "20250510-2106");
        assert_eq!(base["checksums"][0]["checksumValue"], "5".repeat(64));
        assert!(
            document["relationships"]
                .as_array()
                .expect("list")
                .iter()
                .any(|r| {
                    r["spdxElementId"] == IMAGE_ID
                        && r["relationshipType"] == "DESCENDANT_OF"
                        && r["relatedSpdxElement"] == "SPDXRef-BaseImage"
                })
        );
        let unlocked = packages
            .iter()
            .find(|p| p["name"] == inventory.packages[0].name.as_str())
            .expect("the unlocked package");
        assert_eq!(unlocked["downloadLocation"], NOASSERTION);
        assert!(unlocked.get("checksums").is_none());
        assert!(
            unlocked["comment"]
                .as_str()
                .expect("comment")
                .starts_with("installed outside the lock")
        );
    }

    #[test]
    fn the_same_inventory_gives_the_same_bytes_and_another_another_namespace() {
        let a = super::super::to_text(&document(&inventory()));
        assert_eq!(a, super::super::to_text(&document(&inventory())));
        let mut other = inventory();
        other.packages.pop();
        let b = document(&other);
        assert_ne!(
            serde_json::from_str::<Value>(&a).expect("json")["documentNamespace"],
            b["documentNamespace"]
        );
        assert!(
            b["documentNamespace"]
                .as_str()
                .expect("namespace")
                .starts_with("urn:uuid:")
        );
    }
}
