#!/usr/bin/env bash
# Mutation testing of the security-critical files with a pinned cargo-mutants: each file's
# mutants are built and tested against only the test targets that cover it (no doctests, no
# other test binaries, no other crates).
#
#   scripts/mutants.sh                  every group below (about 20-30 s a mutant on 2 busy cores)
#   scripts/mutants.sh hmac jwt         some groups
#   scripts/mutants.sh --quick          only the mutants on lines of the security files that the
#                                       last commit changed (`git diff HEAD~1 HEAD`), no baseline,
#                                       capped in time; seconds when no security file changed
#   scripts/mutants.sh --list [GROUP]   the mutants, without running them
#
# Runs mutate a copy of the tracked (and untracked, not ignored) files kept at
# target/mutants-tree, refreshed from this tree at each run (unchanged files keep their times, so
# only what changed recompiles; the working tree is never mutated), built in target/mutants
# without debuginfo (linking the test binaries is most of an incremental build). A mutant costs
# one incremental build of its crate's library and the group's test targets, then their tests.
#
# Environment: MUTANTS_TIMEOUT (seconds per test run, default 120), MUTANTS_TARGET_DIR (where the
# copy builds; default target/mutants, with --quick the caller's target directory and build settings), MUTANTS_TREE (the copy; default target/mutants-tree; a
# second runner at the same time needs its own MUTANTS_TREE *and* MUTANTS_TARGET_DIR: two copies
# of the workspace in one target directory build the same artifact names, so each run would test
# the other's mutant),
# MUTANTS_BASELINE (`run` or `skip`; default `run`: the
# unmutated tests first), MUTANTS_QUICK_CAP (seconds, default 240), MUTANTS_RE (only mutants whose
# name matches this regex, e.g. 'is_region|poll_ready'), MUTANTS_NO_FILTER=1 (every test of the
# group's targets, not only those named by its filters), MUTANTS_BASE (with --quick: the diff is
# `git diff $MUTANTS_BASE HEAD`, default HEAD~1), MUTANTS_OUT (results, default target/mutants-out).
# Results: $MUTANTS_OUT/<group>/mutants.out/{caught,missed,unviable,timeout}.txt (--quick:
# $MUTANTS_OUT/quick/<group>/mutants.out/) and
# outcomes.json (per-mutant build and test times). Exit status is cargo-mutants' (0 all caught,
# 2 some missed, 3 timeouts) of the last group that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0

# group | package | files (space-separated) | test targets | test-name filters (substrings; empty:
# all tests of those targets). The filters keep each mutant's test run to the tests about its
# file; a mutant missed under a filter is re-run without it (MUTANTS_NO_FILTER=1) before it is
# counted as missed. sns-time is the date arithmetic of the SNS verifier, which its unit tests
# cover on their own; sns-verify is the rest of that file.
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
secrets-store|guard-secrets|guard-secrets/src/store.rs|--lib --test store|
replay|guard-core|guard-core/src/verify/replay.rs guard-core/src/replay.rs|--lib --test verify|verify:: replay:: signatures
"
SNS_TIME='in (parse_timestamp|days_from_civil|secs|unix)$|replace (parse_timestamp|days_from_civil|secs|unix) ->'

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

diff_file=""
if $quick; then
  # Before anything is installed or built: which security files did the commit change?
  diff_file="$OUT/last-commit.diff"
  if ! git rev-parse -q --verify "${MUTANTS_BASE:-HEAD~1}^{commit}" >/dev/null; then
    echo "mutants --quick: ${MUTANTS_BASE:-HEAD~1} is not in this clone (shallow?), so no change to mutate"
    exit 0
  fi
  git diff "${MUTANTS_BASE:-HEAD~1}" HEAD -- '*.rs' >"$diff_file"
  security_files=$(cut -d'|' -f3 <<<"$GROUPS_TABLE" | tr ' ' '\n' | sed '/^$/d' | sort -u)
  if ! grep -qxF -f <(sed 's|^|+++ b/|' <<<"$security_files") "$diff_file"; then
    echo "mutants --quick: the last commit changes no security file"
    exit 0
  fi
  BASELINE=skip
fi

TOOLS="$PWD/.tools/cargo-mutants"
MUTANTS="$TOOLS/bin/cargo-mutants"
if ! "$MUTANTS" mutants --version 2>/dev/null | grep -q " $VERSION\$"; then
  cargo install --locked --root "$TOOLS" "cargo-mutants@$VERSION"
fi

TREE="$PWD"
if ! $list; then
  TREE="${MUTANTS_TREE:-$PWD/target/mutants-tree}"
  mkdir -p "$TREE"
  git ls-files -z --cached --others --exclude-standard | sort -z >"$OUT/files"
  tar --null -T "$OUT/files" -cf - | tar -xf - -C "$TREE"
  (cd "$TREE" && find . -type f -print0 | sed -z 's|^\./||' | sort -z) \
    | comm -z -23 - "$OUT/files" | (cd "$TREE" && xargs -0r rm -f --)
  if $quick; then
    # The quick run builds where the caller's last build did and with its settings, so after the
    # test step of CI only the mutated crate and its test targets compile (the copy's artifacts
    # take the same names as the checkout's: run it after any other build that needs them).
    export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}}"
    # Each mutant rebuilds one crate: incremental compilation (only workspace crates use it)
    # turns that into seconds, even where the caller turned it off to save disk.
    export CARGO_INCREMENTAL=1
  else
    export CARGO_TARGET_DIR="${MUTANTS_TARGET_DIR:-$PWD/target/mutants}"
    export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
  fi
fi

status=0
deadline=$((SECONDS + ${MUTANTS_QUICK_CAP:-240}))
while IFS='|' read -r group package files tests filters; do
  [ -n "$group" ] || continue
  if [ "${#wanted[@]}" -gt 0 ] && [[ " ${wanted[*]} " != *" $group "* ]]; then
    continue
  fi
  args=(mutants --dir "$TREE" --package "$package" --timeout "$TIMEOUT" --build-timeout 900
        --colors never --no-times --caught --unviable)
  touched=false
  for f in $files; do
    # The last run's final mutant was built after this file's (restored) text was last written,
    # so cargo would take its artifacts as fresh and the baseline would test that mutant. A new
    # time on the mutated files makes every run start from a build of the real source.
    $list || touch "$TREE/$f"
    args+=(--file "$f")
    if $quick && grep -qxF "+++ b/$f" "$diff_file"; then touched=true; fi
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
  case "$group" in
    sns-time) args+=(--re "$SNS_TIME") ;;
    sns-verify) args+=(--exclude-re "$SNS_TIME") ;;
  esac
  if [ -n "${MUTANTS_RE:-}" ]; then
    args+=(--re "$MUTANTS_RE")
  fi
  if $list; then
    "$MUTANTS" "${args[@]}" --list
    continue
  fi
  # A quick run writes apart ($OUT/quick/<group>), so it neither replaces a full run's results
  # nor, when the diff holds no mutant, reports them as its own.
  out_group="$OUT/$group"
  if $quick; then
    out_group="$OUT/quick/$group"
    rm -rf "$out_group/mutants.out"
    mkdir -p "$out_group"
  fi
  args+=(--in-place --baseline "$BASELINE" --output "$out_group")
  echo "== $group ($files; tests: $tests${filters:+ -- $filters})"
  rc=0
  if $quick; then
    left=$((deadline - SECONDS))
    if [ "$left" -le 0 ]; then
      echo "   quick cap reached: $group not run"
      continue
    fi
    # SIGTERM at the cap: cargo-mutants stops and reverts the mutant it was testing (and the
    # copy is refreshed at the next run anyway).
    timeout --kill-after=30 "$left" "$MUTANTS" "${args[@]}" || rc=$?
  else
    "$MUTANTS" "${args[@]}" || rc=$?
  fi
  dir="$out_group/mutants.out"
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
