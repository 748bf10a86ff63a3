#!/usr/bin/env bash
# Static argowait: libcurl (HTTP(S) over OpenSSL + AWS SigV4 only), libarchive
# (tar/zip, gzip via zlib only) and cJSON built from Debian's source packages;
# libuv, libyaml, OpenSSL and zlib from Debian's own static archives
# (libuv1-dev, libyaml-dev, libssl-dev, zlib1g-dev); glibc linked statically
# (-static-pie).
#
#   scripts/build-static.sh [OUT_DIR]     (default build-static)
#
# The dependencies are built once into OUT_DIR/deps/prefix (a stamp per
# library, named after the Debian source version); reruns only rebuild argowait.
# As root it enables deb-src and installs what it needs (Debian 12 bookworm).
# Env: ARGOWAIT_STATIC_JOBS (default nproc); ARGOWAIT_TLS=openssl (default) or
# mbedtls (an experiment, not for clusters): libcurl over Debian's mbedTLS 2.28
# static archives gives 2.3 MiB peak RSS instead of 5.9, but mbedTLS 2.28
# cannot verify a certificate's IP-address names (every in-cluster API server
# is reached by IP: verification fails, closed) and has no TLS 1.3. See
# BENCHMARKS.md section 8. Use a separate OUT_DIR for it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-build-static}
mkdir -p "$out"
out=$(cd "$out" && pwd)
deps=$out/deps
prefix=$deps/prefix
jobs=${ARGOWAIT_STATIC_JOBS:-$(nproc)}
tls=${ARGOWAIT_TLS:-openssl}
case $tls in
  openssl) tls_pkg=libssl-dev; tls_flags=(--with-openssl) ;;
  mbedtls) tls_pkg=libmbedtls-dev; tls_flags=(--with-mbedtls --without-openssl) ;;
  *) echo "ARGOWAIT_TLS must be openssl or mbedtls, not $tls" >&2; exit 2 ;;
esac
log() { printf '== build-static: %s\n' "$*" >&2; }

# --- 1. packages and deb-src (root only; idempotent) -----------------------
need_pkgs=(build-essential cmake pkg-config dpkg-dev ca-certificates
           "$tls_pkg" zlib1g-dev libuv1-dev libyaml-dev)
src_list=/etc/apt/sources.list.d/argowait-deb-src.sources
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
has_deb_src() { grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; }
if [ "$(id -u)" = 0 ]; then
  updated=0
  if ! has_deb_src; then
    log "enabling deb-src in $src_list"
    cat >"$src_list" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq; updated=1
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    [ $updated = 1 ] || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
elif [ ${#missing[@]} -gt 0 ]; then
  echo "missing packages (run as root, or install them): ${missing[*]}" >&2; exit 1
fi

# --- 2. sources --------------------------------------------------------------
mkdir -p "$deps/src" "$prefix"
# fetch SRCPKG: apt-get source into deps/src once per Debian version; prints the
# tree. The newest version apt knows is tried first, then older ones (a mirror
# may list a security update whose source files it does not hold yet).
fetch() {
  local pkg=$1 vers ver dir
  srcvers() { apt-cache showsrc --only-source "$pkg" 2>/dev/null | awk '/^Version:/{print $2}' | sort -Vru; }
  vers=$(srcvers)
  if [ -z "$vers" ] && [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; vers=$(srcvers); fi
  [ -n "$vers" ] || { echo "no source package $pkg: is deb-src enabled (apt-get update)?" >&2; exit 1; }
  for ver in $vers; do
    dir=$deps/src/$pkg-$ver
    [ -f "$dir/.fetched" ] && { echo "$dir"; return; }
  done
  for ver in $vers; do
    dir=$deps/src/$pkg-$ver
    log "apt-get source $pkg ($ver)"
    rm -rf "$dir" && mkdir -p "$dir"
    if (cd "$dir" && apt-get source -qq --only-source "$pkg=$ver" >"$dir.log" 2>&1); then
      touch "$dir/.fetched"; echo "$dir"; return
    fi
    tail -3 "$dir.log" >&2; rm -rf "$dir"
  done
  echo "apt-get source $pkg failed for every version: $vers" >&2; exit 1
}
tree() { find "$1" -mindepth 1 -maxdepth 1 -type d | head -1; }
stamp() { echo "$prefix/.stamp-$1-$(basename "$2")"; }

export CFLAGS="-O2 -g0 -fPIE -ffunction-sections -fdata-sections"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig

# cJSON: Debian's libcjson-dev has no static archive.
d=$(fetch cjson); s=$(stamp cjson "$d")
if [ ! -f "$s" ]; then
  log "building cJSON"
  rm -rf "$deps/b-cjson"
  cmake -S "$(tree "$d")" -B "$deps/b-cjson" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_SHARED_LIBS=OFF -DENABLE_CJSON_TEST=OFF -DENABLE_CJSON_UTILS=OFF \
    -DENABLE_CUSTOM_COMPILER_FLAGS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON >/dev/null
  cmake --build "$deps/b-cjson" -j"$jobs" >/dev/null
  cmake --install "$deps/b-cjson" >/dev/null
  touch "$s"
fi

# libarchive: Debian's libarchive.a needs nettle, acl, lzma, zstd, lz4, bz2,
# xml2. argowait reads/writes tar+gzip and writes zip (deflate): zlib only.
d=$(fetch libarchive); s=$(stamp libarchive "$d")
if [ ! -f "$s" ]; then
  log "building libarchive (zlib only)"
  rm -rf "$deps/b-archive"
  off=()
  for o in OPENSSL MBEDTLS NETTLE LIBB2 LZ4 LZO LZMA ZSTD BZip2 LIBXML2 EXPAT PCREPOSIX PCRE2POSIX LIBGCC CNG \
           TAR CPIO CAT XATTR ACL ICONV TEST COVERAGE WERROR; do off+=("-DENABLE_$o=OFF"); done
  cmake -S "$(tree "$d")" -B "$deps/b-archive" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
    -DCMAKE_INSTALL_LIBDIR=lib -DENABLE_ZLIB=ON "${off[@]}" -DCMAKE_POSITION_INDEPENDENT_CODE=ON >/dev/null
  cmake --build "$deps/b-archive" -j"$jobs" --target archive_static >/dev/null
  install -d "$prefix/lib/pkgconfig" "$prefix/include"
  install -m644 "$deps/b-archive/libarchive/libarchive.a" "$prefix/lib/"
  install -m644 "$(tree "$d")"/libarchive/archive.h "$(tree "$d")"/libarchive/archive_entry.h "$prefix/include/"
  ver=$(sed -n 's/^#define[[:space:]]*ARCHIVE_VERSION_ONLY_STRING "\(.*\)"/\1/p' "$(tree "$d")/libarchive/archive.h")
  cat >"$prefix/lib/pkgconfig/libarchive.pc" <<EOF
prefix=$prefix
Name: libarchive
Description: library that can create and read several streaming archive formats (zlib only)
Version: $ver
Cflags: -I\${prefix}/include -DLIBARCHIVE_STATIC
Libs: -L\${prefix}/lib -larchive
Requires.private: zlib
EOF
  touch "$s"
fi

# libcurl: HTTP(S) over OpenSSL (or mbedTLS); crypto-auth stays on (it is what keeps
# CURLOPT_AWS_SIGV4 in 7.88); everything else off.
d=$(fetch curl); s=$(stamp "curl-$tls" "$d")
if [ ! -f "$s" ]; then
  log "building libcurl (HTTP/HTTPS, $tls, SigV4)"
  t=$(tree "$d")
  # Debian's patches touch configure.ac/Makefile.am; keep the shipped generated
  # files (the patches only concern LDAP/GSSAPI link flags, both off here).
  find "$t" -name configure -o -name Makefile.in -o -name aclocal.m4 -o -name curl_config.h.in | xargs touch
  rm -rf "$deps/b-curl" && mkdir -p "$deps/b-curl"
  (cd "$deps/b-curl" && "$t/configure" --prefix="$prefix" --libdir="$prefix/lib" \
      --disable-shared --enable-static --with-pic --disable-dependency-tracking \
      "${tls_flags[@]}" --with-zlib --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt --without-ca-path \
      --enable-http --enable-crypto-auth --enable-threaded-resolver --enable-ipv6 --disable-cookies \
      --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
      --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp \
      --disable-gopher --disable-mqtt --disable-manual --disable-docs --disable-netrc --disable-ntlm \
      --disable-ntlm-wb --disable-kerberos-auth --disable-negotiate-auth --disable-alt-svc --disable-hsts \
      --disable-doh --disable-unix-sockets --disable-dateparse --disable-progress-meter \
      --disable-socketpair --disable-tls-srp --disable-websockets --disable-headers-api --disable-libcurl-option \
      --without-brotli --without-zstd --without-libidn2 --without-libpsl --without-librtmp --without-libssh2 \
      --without-libssh --without-wolfssh --without-nghttp2 --without-nghttp3 --without-ngtcp2 --without-quiche \
      --without-msh3 --without-gssapi --without-libgsasl --without-hyper --without-gnutls --without-nss \
      --disable-verbose >configure.log 2>&1) \
    || { tail -30 "$deps/b-curl/configure.log"; exit 1; }
  make -C "$deps/b-curl/lib" -j"$jobs" >/dev/null
  make -C "$deps/b-curl/lib" install >/dev/null
  make -C "$deps/b-curl/include" install >/dev/null
  make -C "$deps/b-curl" install-pkgconfigDATA >/dev/null
  touch "$s"
fi

# --- 3. argowait ---------------------------------------------------------------
log "building argowait"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DARGOWAIT_WERROR=ON -DARGOWAIT_STATIC=ON \
  -DARGOWAIT_TESTS=OFF -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$out" -j"$jobs" --target argowait

# --- 4. rootfs: exactly what the Dockerfile's FROM scratch stage copies --------
# The CA bundle is used only when no CA is given: the API server's CA comes
# from the service account's ca.crt (or the kubeconfig); the bundle serves S3
# over HTTPS without caSecret. passwd/group only name uid/gid 8737.
rootfs=$out/rootfs
rm -rf "$rootfs"
install -d "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
strip -o "$rootfs/usr/local/bin/argowait" "$out/argowait"
ln -s argowait "$rootfs/usr/local/bin/argoexec"
install -m644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\nargo:x:8737:8737:argo:/:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nargo:x:8737:\n' >"$rootfs/etc/group"
ls -l "$out/argowait" "$rootfs/usr/local/bin/argowait"
du -sb "$rootfs" | awk '{printf "rootfs %s: %d bytes\n", $2, $1}'
