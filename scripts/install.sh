#!/usr/bin/env bash
# Installs `profile` for every user, with its shell completions and man
# page (generated from the command-line definition), on Debian/Ubuntu, as
# root. Safe to run again.
#
# usage: scripts/install.sh [PREFIX]     (default /usr/local)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
./scripts/install-deps.sh
cargo build --release --quiet
install -Dm755 target/release/profile "$prefix/bin/profile"
bin="$prefix/bin/profile"
"$bin" completions bash | install -Dm644 /dev/stdin "$prefix/share/bash-completion/completions/profile"
"$bin" completions zsh | install -Dm644 /dev/stdin "$prefix/share/zsh/site-functions/_profile"
"$bin" completions fish | install -Dm644 /dev/stdin "$prefix/share/fish/vendor_completions.d/profile.fish"
"$bin" man | install -Dm644 /dev/stdin "$prefix/share/man/man1/profile.1"
# One page per subcommand, as profile(1) refers to them: profile-record(1)...
for sub in record render serve report import export encode completions man help; do
    "$bin" man "$sub" | install -Dm644 /dev/stdin "$prefix/share/man/man1/profile-$sub.1"
done
install -Dm755 scripts/make_video.sh "$prefix/bin/profile-make-video"
echo "installed $bin, its completions (bash, zsh, fish) and man pages (man profile, man profile-record, ...)"
