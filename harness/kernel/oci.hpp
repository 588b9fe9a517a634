#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"

namespace kgate::kernel {

// What an image's config says to start its process with (the parts a container runtime uses).
struct ImageConfig {
  std::vector<std::string> env;         // "NAME=value"
  std::vector<std::string> entrypoint;  // may be empty
  std::vector<std::string> cmd;         // may be empty
  std::string working_dir;              // empty: "/"
  std::string user;                     // as given, or empty
};

// A kernel imported from an OCI image layout (what `skopeo copy docker://REF oci:DIR` writes, and the
// form cilium/ci-kernels images are published in): where its layers were unpacked and what was found.
struct OciImage {
  std::string manifest_digest;  // "sha256:<hex>" of the manifest chosen
  std::string pinned_digest;    // the digest checked against the pin: the index.json entry's (the index's or
                                // the manifest's), which is the image digest a registry reports
  std::vector<std::string> layer_digests;
  ImageConfig image_config;
  fs::path root;  // the unpacked layers (dest)
  // The kernel file found in root: boot/vmlinuz*, boot/vmlinux*, boot/bzImage, or a top-level vmlinuz,
  // vmlinux or bzImage, in that order of preference.
  fs::path image;
  fs::path config;       // boot/config* if present, else empty
  fs::path modules_dir;  // lib/modules/<release> (or usr/lib/modules/<release>) if present, else empty
  std::string release;   // the <release> directory name, or the kernel file name's suffix, else empty
  // Symbolic links the layers carried that point outside root (absolute, or with a ".." component), which
  // were removed after unpacking, relative to root ("lib/modules/6.1.0/build").
  std::vector<std::string> dropped_links;
  // Their targets, for those still absent from root (a higher layer may write the name again): an
  // image run as a root of its own in the guest gets them back there, where they resolve inside it.
  std::map<std::string, std::string> dropped_link_targets;
};

// Reads an OCI image layout (oci-layout, index.json, blobs/sha256/<hex>) and unpacks one image into
// `dest`, which must be absent or empty.
//
// The manifest is the index.json entry whose org.opencontainers.image.ref.name annotation is `ref`, or
// the only entry when `ref` is empty. An image index (OCI or Docker manifest list) is followed to its
// linux manifest for `arch` ("x86_64" -> amd64, "arm64" -> arm64). Every blob read (index, manifest,
// config, layers) has its size and sha256 compared with its descriptor before it is used: a mismatch is
// class digest_mismatch naming the blob, the expected and the actual digest. All layers are read,
// verified and decompressed, and their member lists checked, before the first is unpacked. When `pinned`
// is non-empty ("sha256:<hex>") the index.json entry's digest must equal it (digest_mismatch); without a
// pin the import proves only that the layout is consistent with its own index.json.
//
// Errors in the layout (files missing, malformed JSON, schemaVersion other than 2, unknown media types,
// unsafe tar members) are class usage. On failure `dest` may hold part of the layers: unpack into a
// staging directory and move it into place on success.
Result<OciImage> import_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch, const fs::path& dest, const Deadline& deadline);

// The same reading, checks and unpacking for any image (a loader's, not a kernel's): `dest` holds the
// image's filesystem; image, config, modules_dir and release stay empty.
Result<OciImage> unpack_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch, const fs::path& dest, const Deadline& deadline);

// Reads the layout as unpack_oci_layout does and checks every layer blob's size and sha256 without
// decompressing or unpacking anything (a flipped byte is class digest_mismatch naming the layer).
// root is empty in what it returns. For an image unpacked before, by its manifest digest.
Result<OciImage> verify_oci_layout(const fs::path& layout, std::string_view ref, std::string_view pinned,
                                   std::string_view arch);

// A registry reference that carries a digest: "ghcr.io/cilium/ci-kernels:6.1@sha256:<hex>" or
// "ghcr.io/cilium/ci-kernels@sha256:<hex>" (a leading "docker://" is accepted).
struct OciReference {
  std::string name;    // "ghcr.io/cilium/ci-kernels"
  std::string tag;     // "6.1", or empty
  std::string digest;  // "sha256:<hex>"
};

// Class usage for a reference without a digest (a tag alone can move) or with a malformed part.
Result<OciReference> parse_oci_reference(std::string_view reference);

// The ref.name pull_oci gives the image in the layout: the tag, or "sha256-<hex>" when there is none.
// Pass it, and the reference's digest as the pin, to import_oci_layout.
std::string oci_layout_ref(const OciReference& ref);

// The skopeo command line pull_oci runs (pure, for tests). It copies by digest alone (skopeo refuses a
// reference with both a tag and a digest), copies every platform of an index (--all) so that the
// index digest a registry reports stays the one in index.json, and refuses to convert Docker media
// types to OCI ones (--preserve-digests), which would change every digest and defeat the pin.
std::vector<std::string> skopeo_copy_argv(const fs::path& skopeo, const OciReference& ref,
                                          const fs::path& layout_dir);

// Copies a remote image into an OCI layout directory with skopeo (looked up on PATH when called).
// `reference` must carry a digest (class usage otherwise). Failures are class infra and say which
// source failed, skopeo's message, and how to supply the kernel by hand. Returns `dest_layout`.
Result<fs::path> pull_oci(std::string_view reference, const fs::path& dest_layout, const Deadline& deadline);

}  // namespace kgate::kernel
