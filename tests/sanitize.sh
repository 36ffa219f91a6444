#!/usr/bin/env bash
# The C extensions under AddressSanitizer + UndefinedBehaviorSanitizer.
#
# Builds lossctl/io/_fastcsv.c, lossctl/core/_exactsum.c, lossctl/core/_kernels.c and
# lossctl/engine/_keyindex.c
# with -fsanitize=address,undefined into a temporary copy of the source tree, then
# runs, against that copy, the tests that exercise them (the CSV fast path and the
# block cutter's scan, the C and NumPy twins of the exact sums, the intervals, the
# log-softmax, the key joins' hash index) and a short fuzz of the CSV parser's entry points
# (tests/fuzz_fastcsv.py).  Python itself
# is not instrumented: libasan is preloaded, leak detection is off (the
# interpreter keeps memory until exit by design).
#
# Fails loudly (exit 1, the reports printed) if any sanitizer reports anything, in
# this process or in any lossctl process the tests start; the reports are also
# kept in files so that none is lost in a subprocess's captured stderr.
#
# Usage: tests/sanitize.sh [FUZZ_SECONDS]   (from an activated venv with the test extras)
set -euo pipefail

fuzz_seconds="${1:-20}"
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

libasan="$(gcc -print-file-name=libasan.so)"
libubsan="$(gcc -print-file-name=libubsan.so)"
for lib in "$libasan" "$libubsan"; do
    if [[ ! -e "$lib" ]]; then
        echo "sanitize.sh: $lib not found (apt-get install libasan8 libubsan1, or gcc's own)" >&2
        exit 1
    fi
done

echo "sanitize.sh: building the C extensions with ASan + UBSan in $work/src"
mkdir "$work/src" "$work/reports"
(cd "$src" && git ls-files -z --cached --others --exclude-standard | grep -zv '\.so$' \
    | xargs -0 cp --parents -t "$work/src")
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -O1 -g"
# built as pip builds it (setup.py's flags, pyproject's build requirements), then the
# extensions are put beside the copied sources
CFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" python -m pip wheel -v --no-deps \
    --no-cache-dir -w "$work/wheel" "$work/src" > "$work/build.log" 2>&1 || {
    cat "$work/build.log" >&2; echo "sanitize.sh: build failed" >&2; exit 1; }
python -m zipfile -e "$work"/wheel/*.whl "$work/wheel/unpacked"
(cd "$work/wheel/unpacked" && find lossctl -name '*.so' -exec cp {} "$work/src/{}" \;)
for ext in io/_fastcsv core/_exactsum core/_kernels engine/_keyindex; do
    so=$(ls "$work"/src/lossctl/$ext.*.so 2>/dev/null || true)
    # an optional extension that fails to build is skipped by setup.py: here that is an error
    if [[ -z "$so" ]] || ! ldd "$so" | grep libasan > /dev/null; then  # (not -q: with pipefail, ldd could die of SIGPIPE)
        cat "$work/build.log" >&2
        echo "sanitize.sh: $ext was not built with the sanitizers" >&2
        exit 1
    fi
done

export PYTHONPATH="$work/src${PYTHONPATH:+:$PYTHONPATH}"
export LD_PRELOAD="$libasan:$libubsan"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:exitcode=86:log_path=$work/reports/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87:log_path=$work/reports/ubsan"
export LOSSCTL_NATIVE=1

# the tests must load the sanitized copies, not the installed ones
cd "$work/src"
python - "$work/src" <<'EOF'
import sys
from lossctl import native
for name in native.EXTENSIONS:
    module = native.load(name)
    assert module is not None and module.__file__.startswith(sys.argv[1]), (name, module)
print("sanitize.sh:", native.status(), "(sanitized)")
EOF

status=0
# --capture=sys: pytest captures Python's output only, so a sanitizer's report (written to
# file descriptor 2 when its log_path is not honoured) reaches this log even when it ends the process
python -m pytest -q -p no:cacheprovider --capture=sys tests/test_fastcsv.py tests/test_intervals.py \
    tests/test_inputs_hardening.py tests/test_sources_engine.py tests/test_keyindex.py \
    "tests/test_fuzz_inputs.py::test_record_end_c_and_twins_agree" \
    "tests/test_core_exactness.py::test_c_binning_gives_the_numpy_sums" \
    "tests/test_core_exactness.py::test_c_group_sums_give_the_numpy_sums" \
    tests/test_core_reference.py -k "not test_core_reference or log_softmax" \
    --deselect tests/test_intervals.py::test_95_percent_intervals_cover_the_true_mse_and_paired_difference \
    || status=1
python tests/fuzz_fastcsv.py "$fuzz_seconds" || status=1

if compgen -G "$work/reports/*" > /dev/null; then
    echo "sanitize.sh: SANITIZER REPORTS:" >&2
    cat "$work"/reports/* >&2
    status=1
fi
if [[ $status -ne 0 ]]; then
    echo "sanitize.sh: FAILED" >&2
else
    echo "sanitize.sh: no sanitizer report"
fi
exit $status
