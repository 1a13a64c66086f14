#!/usr/bin/env bash
# Mutation testing of the security-critical files with a pinned cargo-mutants: each file's
# mutants are built and tested against only the test targets that cover it (no doctests, no
# unrelated crates), so a run costs one incremental build of one crate per mutant.
#
#   scripts/mutants.sh                  every group below (long: about an hour per 100 mutants here)
#   scripts/mutants.sh hmac jwt         some groups
#   scripts/mutants.sh --quick          only mutants in lines of security files changed by the last
#                                       commit (`git diff HEAD~1 HEAD`), stopped after MUTANTS_QUICK_CAP s
#   scripts/mutants.sh --list [GROUP]   the mutants, without running them
#
# Environment: MUTANTS_JOBS (parallel builds, default 1: each job builds in a copy of the tree, and
# on 2 shared cores a second job only thrashes), MUTANTS_TIMEOUT (seconds per test run, default
# 300), MUTANTS_TARGET_DIR (where the copies build; default target/mutants, kept between runs so
# dependencies compile once), MUTANTS_QUICK_CAP (default 240), MUTANTS_RE (only mutants whose name
# matches this regex, e.g. 'is_region|poll_ready').
# MUTANTS_BASE (with --quick: the diff is `git diff $MUTANTS_BASE HEAD`, default HEAD~1).
# Results: target/mutants-out/<group>/mutants.out/{caught,missed,unviable,timeout}.txt. Exit status
# is cargo-mutants' (0 all caught, 2 some missed, 3 timeouts) of the last group that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0
TOOLS="$PWD/.tools/cargo-mutants"
MUTANTS="$TOOLS/bin/cargo-mutants"
if ! "$MUTANTS" mutants --version 2>/dev/null | grep -q " $VERSION\$"; then
  cargo install --locked --root "$TOOLS" "cargo-mutants@$VERSION"
fi

# group | package | files (space-separated) | test targets
GROUPS_TABLE="
cidr|guard-core|guard-core/src/verify/cidr.rs|--lib --test verify
hmac|guard-core|guard-core/src/verify/hmac.rs|--lib --test verify
sns-cert-url|guard-aws|guard-aws/src/sns/cert_url.rs|--lib --test sns
jwt|guard-core|guard-core/src/verify/jwt.rs|--lib --test verify
ingress|guard-core|guard-core/src/ingress.rs|--lib --test foundation
jwks|guard-core|guard-core/src/verify/jwks.rs|--lib --test verify
sns-verify|guard-aws|guard-aws/src/sns/verify.rs|--lib --test sns
rate-key|guard-core|guard-core/src/rate_limit/key.rs|--lib --test rate_limit_memory
secrets-store|guard-core|guard-core/src/secrets/store.rs|--lib --test secrets
replay|guard-core|guard-core/src/verify/replay.rs guard-core/src/replay.rs|--lib --test verify
"

quick=false
list=false
wanted=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=true ;;
    --list) list=true ;;
    -*) echo "unknown option $arg" >&2; exit 64 ;;
    *) wanted+=("$arg") ;;
  esac
done

export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
JOBS="${MUTANTS_JOBS:-1}"
TIMEOUT="${MUTANTS_TIMEOUT:-300}"
OUT="$PWD/target/mutants-out"
mkdir -p "$OUT"

diff_file=""
if $quick; then
  diff_file="$OUT/last-commit.diff"
  git diff "${MUTANTS_BASE:-HEAD~1}" HEAD -- '*.rs' >"$diff_file"
fi

status=0
deadline=$((SECONDS + ${MUTANTS_QUICK_CAP:-240}))
while IFS='|' read -r group package files tests; do
  [ -n "$group" ] || continue
  if [ "${#wanted[@]}" -gt 0 ] && [[ " ${wanted[*]} " != *" $group "* ]]; then
    continue
  fi
  args=(mutants --package "$package" --jobs "$JOBS" --timeout "$TIMEOUT" --build-timeout 900
        --colors never --no-times --caught --unviable)
  touched=false
  for f in $files; do
    args+=(--file "$f")
    if $quick && grep -q "^+++ b/$f\$" "$diff_file"; then touched=true; fi
  done
  if $quick; then
    $touched || continue
    args+=(--in-diff "$diff_file")
  fi
  for t in $tests; do
    args+=(--cargo-test-arg "$t")
  done
  if [ -n "${MUTANTS_RE:-}" ]; then
    args+=(--re "$MUTANTS_RE")
  fi
  if $list; then
    "$MUTANTS" "${args[@]}" --list
    continue
  fi
  echo "== $group ($files; tests: $tests)"
  rc=0
  if $quick; then
    left=$((deadline - SECONDS))
    if [ "$left" -le 0 ]; then
      echo "   quick cap reached: $group not run"
      continue
    fi
    timeout --kill-after=10 "$left" "$MUTANTS" "${args[@]}" --output "$OUT/$group" || rc=$?
  else
    "$MUTANTS" "${args[@]}" --output "$OUT/$group" || rc=$?
  fi
  dir="$OUT/$group/mutants.out"
  for kind in caught missed unviable timeout; do
    printf '   %-9s %s\n' "$kind" "$(cat "$dir/$kind.txt" 2>/dev/null | wc -l)"
  done
  case "$rc" in
    0) ;;
    124) echo "   quick cap reached while testing $group" ;;
    *) status=$rc ;;
  esac
done <<<"$GROUPS_TABLE"
exit "$status"
