#!/usr/bin/env bash
# Vendor the JavaScript and CSS the map pages and the API docs (/docs, /redoc) use, so they
# load from our own origin, and axe-core, which the accessibility tests run inside those pages.
#  - fetches pinned packages from the npm registry with `npm pack` (no node_modules)
#  - copies only the dist files the pages reference into api/static/vendor/ (git-ignored)
#  - quick and silent on a second run: a stamp records the pinned list it was built from
set -euo pipefail
cd "$(dirname "$0")/.."

dest=api/static/vendor
# package@version  files inside the tarball's package/  ->  $dest/<name>/<same path>
packages=(
  "leaflet@1.9.3 dist/leaflet.js dist/leaflet.css dist/images"
  "jquery@3.7.1 dist/jquery.min.js"
  "bootstrap@5.2.2 dist/js/bootstrap.bundle.min.js dist/css/bootstrap.min.css"
  "leaflet.awesome-markers@2.0.5 dist/leaflet.awesome-markers.js dist/leaflet.awesome-markers.css dist/images"
  "@fortawesome/fontawesome-free@6.2.0 css/all.min.css webfonts"
  "leaflet.heat@0.2.0 dist/leaflet-heat.js"
  "leaflet.markercluster@1.1.0 dist/leaflet.markercluster.js dist/MarkerCluster.css dist/MarkerCluster.Default.css"
  # Wards and zones drawn from vector tiles (/tiles) when a layer is too big to inline.
  "leaflet.vectorgrid@1.3.0 dist/Leaflet.VectorGrid.bundled.min.js"
  # Test-only: the accessibility tests run axe in pages (tests/browser.py); no page loads it.
  "axe-core@4.10.3 axe.min.js"
  # The API docs: Swagger UI at /docs, ReDoc's standalone bundle at /redoc (api/routers/docs.py).
  "swagger-ui-dist@5.35.0 swagger-ui-bundle.js swagger-ui.css favicon-32x32.png"
  "redoc@2.5.4 bundles/redoc.standalone.js"
)
# The registry's integrity of a tarball, pinned: npm pack checks a tarball against what the
# registry says it should be; this also refuses a version republished under the same name.
declare -A integrity=(
  [swagger-ui-dist@5.35.0]=sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==
  [redoc@2.5.4]=sha512-M6jWhG1qoBnH6TFmzJnstyCZ87HmOY/UzDm78mHiYihEdlV/YcS9ogOo1NlElnJMeLsyxHFe2yFc4sNjHTrABQ==
)
stamp="$dest/.stamp-$(printf '%s\n' "${packages[@]}" "${integrity[@]}" | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0

command -v npm >/dev/null || { echo "vendor_assets: npm is needed to fetch map assets" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$dest"
mkdir -p "$dest"
for entry in "${packages[@]}"; do
  read -r spec files <<<"$entry"
  name=${spec%@*}
  name=${name##*/}            # @fortawesome/fontawesome-free -> fontawesome-free
  echo "vendor_assets: $spec" >&2
  tarball=$(cd "$work" && npm pack --silent "$spec" 2>/dev/null | tail -n1)
  if [ -n "${integrity[$spec]:-}" ]; then
    got="sha512-$(openssl dgst -sha512 -binary "$work/$tarball" | base64 -w0)"
    [ "$got" = "${integrity[$spec]}" ] || {
      echo "vendor_assets: $spec is $got, not the pinned ${integrity[$spec]}" >&2
      exit 1
    }
  fi
  mkdir -p "$work/$name" "$dest/$name"
  tar -xzf "$work/$tarball" -C "$work/$name"
  for f in $files; do
    src="$work/$name/package/$f"
    [ -e "$src" ] || { echo "vendor_assets: $spec has no $f" >&2; exit 1; }
    # Keep the package's own layout: CSS finds images/ and ../webfonts/ relatively.
    (cd "$work/$name/package" && cp -R --parents "$f" "$OLDPWD/$dest/$name/")
  done
done
touch "$stamp"
