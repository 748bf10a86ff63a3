#!/usr/bin/env python3
"""Binary and runtime-image size, computed without docker.

    python3 bench/image.py [--bin build/argowait]
    python3 bench/image.py --rootfs build-static/rootfs   (FROM scratch image)

Binary: `strip -o` of the release build (what `cmake --install --strip` does).

Image (the Dockerfile's runtime stage): debian:bookworm-slim plus
`apt-get install --no-install-recommends libuv1 libcurl4 libcjson1
ca-certificates`. Method: the dependency closure of those four packages
(`apt-cache depends`, followed breadth-first over Depends/PreDepends only,
which is what --no-install-recommends installs; first alternative of a
group; a virtual package's first provider), minus the packages the slim base already
holds (Debian's minbase: every package with `Essential: yes` or `Priority:
required`, and their dependencies); the size of what is added is the sum of
the `Installed-Size` fields (`apt-cache show`, KiB). The base's own size is
the same sum over the base set. Both are upper bounds for the image: the
slim image excludes /usr/share/doc, man pages and locales that
Installed-Size counts.

Static estimate: the sizes of the shared objects a minimal build needs
(argowait, libuv, cJSON, libcurl, libssl, libcrypto, libc) measured on this
machine; see BENCHMARKS.md for the reasoning."""

import argparse
import os
import re
import subprocess
import tempfile

from common import DEFAULT_BIN

PKGS = ["libuv1", "libcurl4", "libcjson1", "ca-certificates"]


def run(*cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout


def closure(pkgs, max_rounds=50):
    """Depends/PreDepends closure as apt resolves it: of an alternative
    group (a | b) the first is taken unless one is already chosen; a virtual
    package is satisfied by its first provider."""
    chosen = set(pkgs)
    todo = list(pkgs)
    for _ in range(max_rounds):
        if not todo:
            break
        out = run("apt-cache", "depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks",
                  "--no-replaces", "--no-enhances", *todo)
        todo = []
        groups = []          # list of alternative groups (each a list of candidates)
        group = []
        lines = out.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            m = re.match(r"\s+(\|?)(?:Pre)?Depends: (\S+)", line)
            if m:
                name = m.group(2).split(":")[0]
                if name.startswith("<"):          # virtual: providers follow, more indented
                    j = i + 1
                    while j < len(lines) and re.match(r"\s{4,}\S", lines[j]) and "Depends:" not in lines[j]:
                        group.append(lines[j].strip().split(":")[0])
                        j += 1
                    i = j - 1
                else:
                    group.append(name)
                if not m.group(1):                # the group ends here
                    groups.append(group)
                    group = []
            i += 1
        for g in groups:
            if not g or any(c in chosen for c in g):
                continue
            chosen.add(g[0])
            todo.append(g[0])
    return chosen


def show(pkgs):
    """name -> (installed size KiB, priority, essential) for the candidate version."""
    info = {}
    out = run("apt-cache", "show", "--no-all-versions", *sorted(pkgs))
    for block in out.split("\n\n"):
        f = {}
        for line in block.splitlines():
            if ":" in line and not line.startswith(" "):
                k, v = line.split(":", 1)
                f[k] = v.strip()
        if "Package" in f:
            info[f["Package"]] = (int(f.get("Installed-Size", 0)), f.get("Priority", ""),
                                  f.get("Essential", "no") == "yes")
    return info


def base_set():
    """Packages with Essential: yes or Priority: required (debootstrap minbase)."""
    out = run("apt-cache", "dumpavail")
    base = set()
    for block in out.split("\n\n"):
        name = ess = prio = None
        for line in block.splitlines():
            if line.startswith("Package: "):
                name = line[9:].strip()
            elif line.startswith("Essential: "):
                ess = line[11:].strip() == "yes"
            elif line.startswith("Priority: "):
                prio = line[10:].strip()
            elif line.startswith("Architecture: "):
                arch = line[14:].strip()
                if arch not in ("amd64", "all"):
                    name = None
        if name and (ess or prio == "required"):
            base.add(name)
    return closure(sorted(base))


def binary(bin_path):
    out = tempfile.mktemp(prefix="argowait-stripped-")
    subprocess.run(["strip", "-o", out, bin_path], check=True)
    try:
        return os.path.getsize(bin_path), os.path.getsize(out)
    finally:
        os.unlink(out)


def lib_size(name):
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return os.path.getsize(os.path.realpath(p))
    return 0


def measure(bin_path):
    res = {}
    res["bin_unstripped"], res["bin_stripped"] = binary(bin_path)
    libs = run("ldd", bin_path)
    res["shared_libs"] = sum(1 for line in libs.splitlines() if "=>" in line)
    need = closure(PKGS)
    base = base_set()
    added = sorted(need - base)
    info = show(need | base)
    res["added"] = [(p, info.get(p, (0,))[0]) for p in added]
    res["added_kib"] = sum(s for _, s in res["added"])
    res["base_kib"] = sum(info[p][0] for p in base if p in info)
    res["base_pkgs"] = len(base)
    minimal = ["libuv.so.1", "libcjson.so.1", "libcurl.so.4", "libssl.so.3", "libcrypto.so.3", "libc.so.6",
               "libm.so.6", "ld-linux-x86-64.so.2"]
    res["minimal_libs"] = [(n, lib_size(n)) for n in minimal]
    return res


def report(r):
    mib = 1024.0 * 1024.0
    lines = ["binary: %d bytes unstripped, %d bytes stripped (%.0f KiB); %d shared libraries (ldd)"
             % (r["bin_unstripped"], r["bin_stripped"], r["bin_stripped"] / 1024.0, r["shared_libs"])]
    lines.append("base (Essential/required closure, %d packages): %.1f MiB installed"
                 % (r["base_pkgs"], r["base_kib"] / 1024.0))
    lines.append("added by the runtime stage: %d packages, %.1f MiB installed"
                 % (len(r["added"]), r["added_kib"] / 1024.0))
    for p, s in sorted(r["added"], key=lambda x: -x[1]):
        lines.append("  %7d KiB  %s" % (s, p))
    lines.append("runtime image estimate: %.1f MiB (base) + %.1f MiB (added) + %.2f MiB (argowait) = %.1f MiB"
                 % (r["base_kib"] / 1024.0, r["added_kib"] / 1024.0, r["bin_stripped"] / mib,
                    (r["base_kib"] + r["added_kib"]) / 1024.0 + r["bin_stripped"] / mib))
    tot = sum(s for _, s in r["minimal_libs"])
    lines.append("shared objects a minimal build needs (this machine's, as shipped): %.1f MiB: %s"
                 % (tot / mib, ", ".join("%s %.0f KiB" % (n, s / 1024.0) for n, s in r["minimal_libs"])))
    return "\n".join(lines)


def rootfs(path):
    """The FROM scratch image: every file of the rootfs scripts/build-static.sh
    assembles (what the Dockerfile copies), sizes as the layer tar holds them."""
    lines, total = [], 0
    for d, _, files in os.walk(path):
        for f in sorted(files):
            p = os.path.join(d, f)
            st = os.lstat(p)
            total += st.st_size
            lines.append("  %9d B  %s%s" % (st.st_size, os.path.relpath(p, path),
                                           " -> " + os.readlink(p) if os.path.islink(p) else ""))
    ldd = run("ldd", os.path.join(path, "usr/local/bin/argowait")).strip()
    lines.append("runtime image (FROM scratch): %d bytes = %.2f MiB (ldd: %s)" % (total, total / 1048576.0, ldd))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--rootfs", default=None, help="report the FROM scratch image of this rootfs instead")
    args = ap.parse_args()
    if args.rootfs:
        print(rootfs(args.rootfs))
        return None
    r = measure(args.bin)
    print(report(r))
    return r


if __name__ == "__main__":
    main()
