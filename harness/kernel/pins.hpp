// kernels/kernels.lock: the digest each OCI catalog entry's tag pointed at when `kgate kernels pin`
// resolved it, the way bpf/digests.lock pins the gate objects. The catalog beside it reads it: an
// OCI entry whose "digest" is null boots the locked digest, and only while the lock's reference is
// still the catalog's (a catalog moved to a new tag is pinned again, never silently).
//
//   # comment
//   <entry> <arch> <reference> sha256:<64 hex>
//
// <reference> is an "oci" entry's reference ("ghcr.io/cilium/ci-kernels:6.6.157"), or an
// "oci-layout" entry's ref name in its layout ("-" when it names none).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/deadline.hpp"
#include "core/error.hpp"
#include "core/files.hpp"
#include "kernel/catalog.hpp"

namespace kgate::kernel {

struct KernelPin {
  std::string entry;
  std::string arch;
  std::string reference;
  std::string digest;
  int line = 0;  // in the lock file, for messages
};

// The lock kgate reads for a catalog: kernels.lock in the catalog's directory.
fs::path kernel_pins_path(const fs::path& catalog);

Result<std::vector<KernelPin>> parse_kernel_pins(std::string_view text, std::string_view origin);
std::string render_kernel_pins(const std::vector<KernelPin>& pins);

// The reference a pin records for an OCI entry (above); "" for other sources.
std::string pin_reference(const CatalogEntry& e);

// Fills each OCI entry's missing digest from its pin. A pin whose entry is gone, whose reference is
// no longer the catalog's, or that contradicts a digest the catalog gives is a usage error naming
// the lock's line: the lock must be pinned again.
Status apply_kernel_pins(Catalog& catalog, const std::vector<KernelPin>& pins, std::string_view origin);

// skopeo's argv to read the manifest digest an OCI entry's reference points at now: docker:// for
// "oci", oci:PATH[:REF] for "oci-layout", for the entry's arch. Pure, for tests.
std::vector<std::string> skopeo_inspect_argv(const fs::path& skopeo, const CatalogEntry& e);

// Runs it: "sha256:<hex>", or why not (skopeo missing: infra; its refusal: infra with its words).
Result<std::string> resolve_pin(const CatalogEntry& e, const Deadline& deadline);

}  // namespace kgate::kernel
