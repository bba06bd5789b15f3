#!/bin/sh
# Makes a test certificate authority and one certificate for each side of a migration, in the
# layout of QEMU's tls-creds-x509 directory, which pagewire's tls-creds=DIR option reads:
#
#   DIR/ca-cert.pem                       the CA both sides trust (ca-key.pem signs; keep it elsewhere in production)
#   DIR/server-cert.pem DIR/server-key.pem   the destination's (pagewire receive) identity
#   DIR/client-cert.pem DIR/client-key.pem   the source's (pagewire migrate) identity
#
# Usage: scripts/make-test-ca.sh DIR [SERVER_CN [CLIENT_CN [DAYS]]]
#   SERVER_CN defaults to pagewire-destination, CLIENT_CN to pagewire-source, DAYS to 30.
# Keys are EC P-256 in PKCS#8 PEM ("BEGIN PRIVATE KEY"), readable by the owner only.
# The CN is also put in a DNS subjectAltName, so tls-authz=NAME matches either.
set -eu
dir=${1:?usage: make-test-ca.sh DIR [SERVER_CN [CLIENT_CN [DAYS]]]}
server_cn=${2:-pagewire-destination}
client_cn=${3:-pagewire-source}
days=${4:-30}
command -v openssl >/dev/null || { echo "make-test-ca.sh: openssl not found" >&2; exit 2; }
mkdir -p "$dir"
umask 077
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca-key.pem
openssl req -x509 -new -key ca-key.pem -sha256 -days "$days" -subj "/CN=pagewire test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca-cert.pem 2>/dev/null

issue() { # name cn
    key "$1-key.pem"
    openssl req -new -key "$1-key.pem" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:%s\n' "$2" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days "$days" \
        -extfile "$1.ext" -out "$1-cert.pem" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}
issue server "$server_cn"
issue client "$client_cn"
rm -f ca-cert.srl
chmod 644 ca-cert.pem server-cert.pem client-cert.pem
echo "made $dir: ca-cert.pem, server-cert.pem/-key.pem (CN=$server_cn), client-cert.pem/-key.pem (CN=$client_cn)"
