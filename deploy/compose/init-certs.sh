#!/bin/sh
# A throwaway development CA with a server certificate for routing-engine and
# a client certificate for sms-orchestrator, in the layout the service and
# its client read. Made on first start, kept in named volumes, valid 30 days
# (remove the volumes to renew: docker compose down -v). Writes:
#   /out/server/{ca.crt,tls.crt,tls.key}        for routing-engine (uid 65532)
#   /out/client/{ca.crt,client.crt,client.key}  for `routing-engine route`
set -eu

server=/out/server
client=/out/client
if [ -s "$server/tls.crt" ] && [ -s "$client/client.crt" ]; then
    echo "development certificates already present"
    exit 0
fi

umask 077
work=$(mktemp -d)
cd "$work"
days=30

# P-256 keys in PKCS#8, as cert-manager issues them in the cluster.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -days "$days" -subj "/CN=routing-engine development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout ca.key -out ca.crt 2>/dev/null

leaf() {
    name=$1
    usage=$2
    sans=$3
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=$name" -keyout "$name.key" -out "$name.csr" 2>/dev/null
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=$usage" \
        "subjectAltName=$sans" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key \
        -CAcreateserial -days "$days" -extfile "$name.ext" -out "$name.crt" 2>/dev/null
}

leaf routing-engine serverAuth \
    "DNS:routing-engine,DNS:localhost,IP:127.0.0.1"
# The identity routing-engine admits by default (ALLOWED_CLIENT_IDS).
leaf sms-orchestrator clientAuth \
    "DNS:sms-orchestrator.sms-gateway.svc,URI:spiffe://cluster.local/ns/sms-gateway/sa/sms-orchestrator"

openssl verify -CAfile ca.crt routing-engine.crt sms-orchestrator.crt

mkdir -p "$server" "$client"
chmod 0755 "$server" "$client"
cp ca.crt "$server/ca.crt"
cp routing-engine.crt "$server/tls.crt"
cp routing-engine.key "$server/tls.key"
chown 65532:65532 "$server/ca.crt" "$server/tls.crt" "$server/tls.key"
chmod 0444 "$server/ca.crt" "$server/tls.crt"
chmod 0400 "$server/tls.key"

cp ca.crt "$client/ca.crt"
cp sms-orchestrator.crt "$client/client.crt"
cp sms-orchestrator.key "$client/client.key"
chmod 0444 "$client/ca.crt" "$client/client.crt"
chmod 0444 "$client/client.key"

cd /
rm -rf "$work"
echo "development certificates written"
