#!/bin/sh
# make_cifar_folder.sh: unpacks CIFAR-10 (../shared/data/cifar10_jpg) into the ImageNet-style
# folder ./bin/pretrain reads: OUT_DIR/train/<class>/*.jpg (50000) and OUT_DIR/val/<class>/*.jpg
# (10000, CIFAR-10's test split serving as val).
#
#   tools/make_cifar_folder.sh OUT_DIR            (CIFAR_SRC=... to read another copy)
#
# The source may be read-only. From cifar10_jpg.tar.gz (checked against the sha256 in its
# SOURCE.md) the files are extracted, test/ renamed to val/ on the way; from an already
# unpacked copy (train/ and test/ folders) OUT_DIR gets symlinks to its files. Re-running on a
# complete OUT_DIR does nothing.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR   (unpacks CIFAR-10 into OUT_DIR/train/<class>/ and OUT_DIR/val/<class>/)" >&2
    exit 2
fi
OUT=${1%/}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${CIFAR_SRC:-$ROOT/../shared/data/cifar10_jpg}
[ -d "$SRC" ] && SRC=$(cd "$SRC" && pwd)
start=$(date +%s.%N)

count() { find "$1" -name '*.jpg' | wc -l | tr -d ' '; }

if [ -d "$OUT/train" ] || [ -d "$OUT/val" ]; then
    if [ -d "$OUT/train" ] && [ -d "$OUT/val" ] && [ "$(count "$OUT/train")" = 50000 ] && [ "$(count "$OUT/val")" = 10000 ]; then
        echo "make_cifar_folder: '$OUT' already holds CIFAR-10 (50000 train, 10000 val images); nothing to do"
        exit 0
    fi
    echo "error: '$OUT' already has a train/ or val/ folder that is not a complete CIFAR-10 copy" \
         "(expected a new or empty OUT_DIR; remove '$OUT/train' and '$OUT/val' first)" >&2
    exit 1
fi
if [ ! -f "$SRC/cifar10_jpg.tar.gz" ] && { [ ! -d "$SRC/train" ] || [ ! -d "$SRC/test" ]; }; then
    echo "error: '$SRC' holds neither cifar10_jpg.tar.gz nor train/ and test/ folders" \
         "(expected ../shared/data/cifar10_jpg beside the checkout, or set CIFAR_SRC)" >&2
    exit 1
fi
TAR=$SRC/cifar10_jpg.tar.gz
if [ -f "$TAR" ]; then
    want=$(sed -n 's/^sha256 \([0-9a-f]\{64\}\).*/\1/p' "$SRC/SOURCE.md" 2>/dev/null || true)
    if [ -n "$want" ] && command -v sha256sum >/dev/null; then
        got=$(sha256sum "$TAR" | cut -d' ' -f1)
        if [ "$got" != "$want" ]; then
            echo "error: '$TAR' has sha256 $got, but $SRC/SOURCE.md expects $want (a damaged or different copy)" >&2
            exit 1
        fi
    fi
fi
# from here on a failure removes what this run made (OUT itself if it made it)
made_out=0; [ -d "$OUT" ] || made_out=1
mkdir -p "$OUT"
done_ok=0
cleanup() {
    rm -rf "$OUT/.unpack.$$"
    if [ "$done_ok" = 0 ]; then
        rm -rf "$OUT/train" "$OUT/val"
        [ "$made_out" = 1 ] && rmdir "$OUT" 2>/dev/null
    fi
    return 0
}
trap cleanup EXIT

if [ -f "$TAR" ]; then
    TMP=$OUT/.unpack.$$
    mkdir -p "$TMP"
    tar -xzf "$TAR" -C "$TMP" --transform 's,^test/,val/,;s,^test$,val,' train test
    mv "$TMP/train" "$TMP/val" "$OUT/"
    how="extracted from $TAR"
else
    cp -rs "$SRC/train" "$OUT/train"
    cp -rs "$SRC/test" "$OUT/val"
    how="symlinked to $SRC"
fi

ntrain=$(count "$OUT/train")
nval=$(count "$OUT/val")
if [ "$ntrain" != 50000 ] || [ "$nval" != 10000 ]; then
    echo "error: '$SRC' gave $ntrain train and $nval val images (expected 50000 and 10000; nothing kept in '$OUT')" >&2
    exit 1
fi
done_ok=1
secs=$(echo "$(date +%s.%N) $start" | awk '{printf "%.1f", $1 - $2}')
echo "make_cifar_folder: '$OUT': $ntrain train and $nval val images in $(ls "$OUT/train" | wc -l) classes," \
     "$how, in ${secs}s"
