#!/usr/bin/env python3
"""Build the throughput corpus: real text already on this machine, copied into one tree.

usage: corpus.py OUT_DIR MIN_MB

Sources, in order: the cargo registry sources, Python's standard library (every installed
interpreter), C headers, Perl modules, /usr/share/doc. Hidden files and directories, symlinks,
files with a NUL byte in their first 8 KiB (binary) and files over 16 MiB are left out, so
every tool measured reads exactly the same bytes (some tools skip hidden files, some skip
binaries). Copying stops once MIN_MB megabytes (10^6 bytes) are in.
"""
import glob
import os
import shutil
import sys

SOURCES = (
    sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*")))
    + sorted(glob.glob("/root/.pyenv/versions/*/lib/python3*"))
    + sorted(glob.glob("/usr/lib/python3*"))
    + ["/usr/include", "/usr/share/perl", "/usr/share/perl5", "/usr/share/doc", "/usr/share/javascript",
       "/usr/lib/node_modules", "/usr/share/gtk-doc", "/usr/share/man"]
)
MAX_FILE = 16 << 20


def text_file(path):
    try:
        with open(path, "rb") as f:
            return b"\0" not in f.read(8192)
    except OSError:
        return False


def main():
    out, min_mb = sys.argv[1], float(sys.argv[2])
    target = int(min_mb * 1e6)
    total = files = 0
    os.makedirs(out, exist_ok=True)
    for index, source in enumerate(SOURCES):
        if not os.path.isdir(source):
            continue
        for root, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__"
                             and not os.path.islink(os.path.join(root, d)))
            for name in sorted(names):
                if name.startswith("."):
                    continue
                path = os.path.join(root, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
                if size == 0 or size > MAX_FILE or not text_file(path):
                    continue
                rel = os.path.relpath(path, source)
                dest = os.path.join(out, f"{index:02d}-{os.path.basename(source)}", rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(path, dest)
                total += size
                files += 1
                if total >= target:
                    print(f"{files} files, {total / 1e6:.1f} MB in {out}")
                    return
    print(f"{files} files, {total / 1e6:.1f} MB in {out} (all sources used; below {min_mb} MB)")


if __name__ == "__main__":
    main()
