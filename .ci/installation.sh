#!/usr/bin/env bash
# The installation page, followed as written: a new cargo project in a temp
# directory, the page's first TOML block as its dependencies (with a path to
# this checkout in place of the git URL), the quickstart as src/main.rs,
# then `cargo run`. Fails when the page drifts from what builds.
#
# It shares CARGO_TARGET_DIR (default: this checkout's target/) and starts
# from this checkout's Cargo.lock, so the dependencies CI has already built
# are reused rather than built again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
page="$root/docs/src/getting-started/installation.md"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

fail() {
    echo "installation page: $*" >&2
    exit 1
}

# The repository URL the page must name, from the workspace manifest.
url=$(sed -n 's/^repository = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[ -n "$url" ] || fail "no repository URL in $root/Cargo.toml"

# The first ```toml block of the page.
block=$(awk '
    !done && /^```toml$/ { inside = 1; next }
    inside && /^```$/ { inside = 0; done = 1; next }
    inside { print }
' "$page")
[ -n "$block" ] || fail "no \`\`\`toml block in $page"
grep -q '^\[dependencies\]$' <<<"$block" || fail "its first TOML block has no [dependencies] table"
git_source="git = \"$url\""
grep -qF "$git_source" <<<"$block" || fail "its first TOML block has no $git_source"
block=${block//"$git_source"/"path = \"$root\""}
! grep -q 'git = ' <<<"$block" || fail "its first TOML block has a git dependency on another URL than $url"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cd "$work"
cargo new --quiet --vcs none bank
cd bank
# cargo new ends the manifest with an empty [dependencies]: the page's block
# takes its place.
grep -q '^\[dependencies\]$' Cargo.toml || fail "cargo new wrote no [dependencies] to replace"
sed -i '/^\[dependencies\]$/,$d' Cargo.toml
printf '%s\n' "$block" >>Cargo.toml
cp "$root/examples/quickstart.rs" src/main.rs
cp "$root/Cargo.lock" Cargo.lock

echo "--- Cargo.toml"
cat Cargo.toml
echo "--- cargo run"
# The quickstart keeps its SQLite file in the temp directory: this one.
output=$(TMPDIR="$work" cargo run --quiet) || fail "the quickstart did not build or run as the page says"
printf '%s\n' "$output"
grep -q '^bank totals: ' <<<"$output" || fail "the quickstart ran but printed no bank totals"
