#!/usr/bin/env bash
# Mutation testing of the security-critical files with a pinned cargo-mutants: each file's
# mutants are built and tested against only the test targets that cover it (no doctests, no
# unrelated crates), so a run costs one incremental build of one crate per mutant.
#
#   scripts/mutants.sh                  every group below (about 25 s a mutant on 2 cores)
#   scripts/mutants.sh hmac jwt         some groups
#   scripts/mutants.sh --quick          only mutants in lines of security files changed by the last
#                                       commit (`git diff HEAD~1 HEAD`), in place in this tree,
#                                       reusing its target dir, no baseline, capped in time (CI)
#   scripts/mutants.sh --list [GROUP]   the mutants, without running them
#
# Full runs mutate a copy of the tracked files kept at target/mutants-tree (refreshed from this
# tree at each run, so only what changed recompiles), built in target/mutants without debuginfo
# (linking is most of an incremental build): a mutant costs one incremental build of the crate
# and its test targets plus the tests.
#
# Environment: MUTANTS_TIMEOUT (seconds per test run, default 120), MUTANTS_TARGET_DIR (where the
# copy builds; default target/mutants), MUTANTS_BASELINE (`run` or `skip`; default `run`: the
# unmutated tests first), MUTANTS_QUICK_CAP (default 240), MUTANTS_RE (only mutants whose name
# matches this regex, e.g. 'is_region|poll_ready'), MUTANTS_BASE (with --quick: the diff is
# `git diff $MUTANTS_BASE HEAD`, default HEAD~1).
# Results: target/mutants-out/<group>/mutants.out/{caught,missed,unviable,timeout}.txt and
# outcomes.json (per-mutant build and test times). Exit status is cargo-mutants' (0 all caught,
# 2 some missed, 3 timeouts) of the last group that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0
TOOLS="$PWD/.tools/cargo-mutants"
MUTANTS="$TOOLS/bin/cargo-mutants"
if ! "$MUTANTS" mutants --version 2>/dev/null | grep -q " $VERSION\$"; then
  cargo install --locked --root "$TOOLS" "cargo-mutants@$VERSION"
fi

# group | package | files (space-separated) | test targets | test-name filters (substrings; empty:
# all tests of those targets). The filters keep each mutant's test run to the tests about its
# file; a mutant missed under a filter is re-run without it (MUTANTS_NO_FILTER=1) before it is
# counted as missed.
GROUPS_TABLE="
cidr|guard-core|guard-core/src/verify/cidr.rs|--lib --test verify|
hmac|guard-core|guard-core/src/verify/hmac.rs|--lib --test verify|verify:: signatures
sns-cert-url|guard-aws|guard-aws/src/sns/cert_url.rs|--lib --test sns|
jwt|guard-core|guard-core/src/verify/jwt.rs|--lib --test verify|verify:: tokens
ingress|guard-core|guard-core/src/ingress.rs|--lib --test foundation|
jwks|guard-core|guard-core/src/verify/jwks.rs|--lib --test verify|verify:: tokens
sns-time|guard-aws|guard-aws/src/sns/verify.rs|--lib|sns::verify::
sns-verify|guard-aws|guard-aws/src/sns/verify.rs|--lib --test sns|
rate-key|guard-core|guard-core/src/rate_limit/key.rs|--lib --test rate_limit_memory|
secrets-store|guard-core|guard-core/src/secrets/store.rs|--lib --test secrets|
replay|guard-core|guard-core/src/verify/replay.rs guard-core/src/replay.rs|--lib --test verify|
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

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
TIMEOUT="${MUTANTS_TIMEOUT:-120}"
BASELINE="${MUTANTS_BASELINE:-run}"
OUT="${MUTANTS_OUT:-$PWD/target/mutants-out}"
mkdir -p "$OUT"

if $quick; then
  # In place, in the target dir the test step just built (same features): a mutant rebuilds only
  # the mutated crate. The tests just passed, so no baseline.
  TREE="$PWD"
  BASELINE=skip
  FEATURES=(--all-features)
  if ! git diff --quiet HEAD -- '*.rs'; then
    echo "--quick mutates this tree in place: commit or stash the .rs changes first" >&2
    exit 64
  fi
elif ! $list; then
  # A stable copy of the tracked (and untracked, not ignored) files: unchanged files keep their
  # times, so cargo rebuilds only what changed since the last run.
  TREE="$PWD/target/mutants-tree"
  mkdir -p "$TREE"
  git ls-files -z --cached --others --exclude-standard | sort -z >"$OUT/files"
  tar --null -T "$OUT/files" -cf - | tar -xf - -C "$TREE"
  (cd "$TREE" && find . -type f -print0 | sed -z 's|^\./||' | sort -z) \
    | comm -z -23 - "$OUT/files" | (cd "$TREE" && xargs -0r rm -f --)
  export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants}"
  # No debuginfo: linking the test binaries is most of an incremental build.
  export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
  FEATURES=()
else
  TREE="$PWD"
  FEATURES=()
fi

diff_file=""
if $quick; then
  diff_file="$OUT/last-commit.diff"
  git diff "${MUTANTS_BASE:-HEAD~1}" HEAD -- '*.rs' >"$diff_file"
fi

status=0
deadline=$((SECONDS + ${MUTANTS_QUICK_CAP:-240}))
while IFS='|' read -r group package files tests filters; do
  [ -n "$group" ] || continue
  if [ "${#wanted[@]}" -gt 0 ] && [[ " ${wanted[*]} " != *" $group "* ]]; then
    continue
  fi
  args=(mutants --dir "$TREE" --package "$package" --timeout "$TIMEOUT" --build-timeout 900
        --colors never --no-times --caught --unviable "${FEATURES[@]}")
  touched=false
  for f in $files; do
    args+=(--file "$f")
    if $quick && grep -q "^+++ b/$f\$" "$diff_file"; then touched=true; fi
  done
  if $quick; then
    $touched || continue
    args+=(--in-diff "$diff_file")
  fi
  # --cargo-arg, not --cargo-test-arg: the build phase (`cargo test --no-run`) must also build
  # only these targets, not every test binary of the package.
  for t in $tests; do
    args+=(--cargo-arg "$t")
  done
  if [ -n "$filters" ] && [ -z "${MUTANTS_NO_FILTER:-}" ]; then
    args+=(--cargo-test-arg --)
    for f in $filters; do
      args+=(--cargo-test-arg "$f")
    done
  fi
  # sns-time is the date arithmetic of sns-verify's file, which its unit tests cover on their own.
  case "$group" in
    sns-time) args+=(--re 'in (parse_timestamp|days_from_civil|secs|unix)$|replace (parse_timestamp|days_from_civil|secs|unix) ->') ;;
    sns-verify) args+=(--exclude-re 'in (parse_timestamp|days_from_civil|secs|unix)$|replace (parse_timestamp|days_from_civil|secs|unix) ->') ;;
  esac
  if [ -n "${MUTANTS_RE:-}" ]; then
    args+=(--re "$MUTANTS_RE")
  fi
  if $list; then
    "$MUTANTS" "${args[@]}" --list
    continue
  fi
  args+=(--in-place --baseline "$BASELINE")
  echo "== $group ($files; tests: $tests)"
  rc=0
  if $quick; then
    left=$((deadline - SECONDS))
    if [ "$left" -le 0 ]; then
      echo "   quick cap reached: $group not run"
      continue
    fi
    # SIGTERM at the cap: cargo-mutants stops and reverts the mutant it was testing.
    timeout --kill-after=30 "$left" "$MUTANTS" "${args[@]}" --output "$OUT/$group" || rc=$?
    # Whatever happened, leave no mutant behind (the tree was clean before).
    git diff --quiet -- $files || git checkout -- $files
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
