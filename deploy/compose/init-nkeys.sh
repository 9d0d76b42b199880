#!/bin/sh
# Throwaway development NKeys for the compose stack, made on first start and
# kept in named volumes; never used outside it. Writes:
#   /out/nats-env/nkeys.env        public keys, sourced by the NATS server
#   /out/routing-engine/nkey.creds routing-engine's seed (uid 65532, 0400)
#   /out/clients/admin.nk          seed of the stream administrator
#   /out/clients/operator-management.nk  seed that may publish health events
#                                  (directory owned by uid 65532, 0700)
set -eu

if [ -s /out/nats-env/nkeys.env ] && [ -s /out/routing-engine/nkey.creds ]; then
    echo "development NKeys already present"
    exit 0
fi

umask 077
work=$(mktemp -d)
for user in routing-engine operator-management admin; do
    nk -gen user -pubout > "$work/$user"
done

seed() { sed -n 1p "$work/$1"; }
public() { sed -n 2p "$work/$1"; }

mkdir -p /out/nats-env /out/routing-engine /out/clients
chmod 0755 /out/nats-env /out/routing-engine
chmod 0700 /out/clients
{
    echo "export ROUTING_ENGINE_NKEY=$(public routing-engine)"
    echo "export OPERATOR_MANAGEMENT_NKEY=$(public operator-management)"
    echo "export JETSTREAM_ADMIN_NKEY=$(public admin)"
} > /out/nats-env/nkeys.env
chmod 0444 /out/nats-env/nkeys.env

seed routing-engine > /out/routing-engine/nkey.creds
chown 65532:65532 /out/routing-engine/nkey.creds
chmod 0400 /out/routing-engine/nkey.creds

seed admin > /out/clients/admin.nk
seed operator-management > /out/clients/operator-management.nk
chown -R 65532:65532 /out/clients

rm -rf "$work"
echo "development NKeys written"
